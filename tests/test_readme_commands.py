"""Every ``navya ...`` command the README shows in a code block parses with navya's own parser
(the options it names exist and take the values shown), so the README cannot drift from the
command line. Placeholders in square brackets (``[--a | --b]``) are the README's notation for
alternatives and are not parsed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from navya.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[tuple[int, str]]:
    out, block, pending = [], False, ""
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            block = not block
            continue
        if not block:
            continue
        text = pending + line.split("  #")[0].split(" # ")[0].strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text.startswith("navya ") and "[" not in text:
            out.append((number, text))
    return out


def test_the_readme_shows_the_bring_your_own_path():
    commands = [c for _, c in readme_commands()]
    assert any(c.startswith("navya train") and "--preset finetune" in c for c in commands)
    assert any(c.startswith("navya data split") for c in commands)


@pytest.mark.parametrize("line,command", readme_commands(),
                         ids=lambda v: str(v) if isinstance(v, int) else "")
def test_each_readme_command_parses(line, command):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        pytest.fail(f"README.md:{line}: `{command}` does not parse (exit {exc.code})")
    assert re.match(r"navya [a-z]", command)
