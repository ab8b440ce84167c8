"""navya's errors share one base class, NavyaError; the command line shows those as one line
and lets anything else raise with its traceback."""

from __future__ import annotations

import pytest

from navya import cli, commands
from navya.analysis.sweep import ratios_from_percent
from navya.budgets import BaselineError, BudgetError
from navya.catalogue import UnknownVariantError
from navya.compress.base import UnknownConfigError
from navya.compress.prune import PruningError
from navya.compress.quantize import QuantizationError
from navya.data.voc import VOCFormatError
from navya.errors import NavyaError
from navya.models import CheckpointError


@pytest.mark.parametrize("error, builtin", [
    (BudgetError, ValueError), (BaselineError, ValueError), (CheckpointError, ValueError),
    (QuantizationError, ValueError), (PruningError, ValueError), (VOCFormatError, ValueError),
    (UnknownVariantError, KeyError), (UnknownConfigError, TypeError), (cli.CLIError, Exception),
])
def test_every_navya_error_is_a_navya_error_and_keeps_its_builtin(error, builtin):
    assert issubclass(error, NavyaError) and issubclass(error, builtin)


def test_cli_prints_a_navya_error_as_one_line(monkeypatch, capsys):
    def fail(args):
        ratios_from_percent("x")  # a PruningError

    monkeypatch.setattr(commands, "evaluate", fail)
    assert cli.main(["evaluate", "--data", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("navya: error: ratios are percents") and len(err.splitlines()) == 1


def test_cli_lets_other_exceptions_raise(monkeypatch):
    def bug(args):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(commands, "evaluate", bug)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["evaluate", "--data", "unused"])
