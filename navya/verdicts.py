"""Outcomes, verdicts and case ids: what the engine decides and every report reads.

Torch-free (layer 0): the reports, ``navya merge`` and the pytest plugin share these types.

- :class:`Outcome`: the result of one check, an enum end to end (run.json stores its value;
  :meth:`Outcome.parse` reads it back).
- :class:`Verdict`: one check of one variant (a budget key, ``baseline`` or
  ``speed_baseline``) with the message a person reads.
- :class:`CaseId`: the ``model:variant`` id of one benchmark case, built and parsed here only.
- :class:`Status`: a variant's overall status in a row (``PASS``, ``FAIL: keys``, ...), built
  from its verdicts and parsed back by the reports.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CaseId", "Outcome", "Status", "Verdict"]


class Outcome(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # the figure could not be computed
    UPDATED = "updated"  # a baseline was rewritten (explicit --navya-update-baselines)
    NOT_APPLICABLE = "not applicable"  # e.g. the reference against itself
    NO_BUDGET = "no budget"
    NO_BASELINE = "no baseline"
    NOT_COMPARABLE = "not comparable"  # a baseline of another provenance or machine

    @property
    def skipped(self) -> bool:
        return self in (Outcome.NOT_APPLICABLE, Outcome.NO_BUDGET, Outcome.NO_BASELINE,
                        Outcome.NOT_COMPARABLE)

    @property
    def failed(self) -> bool:
        return self in (Outcome.FAIL, Outcome.ERROR)

    @classmethod
    def parse(cls, value: str) -> Outcome:
        """The outcome of a stored value (run.json); a ValueError names the known ones."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown outcome {value!r}; known: "
                             f"{', '.join(o.value for o in cls)}") from None


@dataclass(frozen=True)
class Verdict:
    """The result of one check of one variant: a budget key, or ``baseline``.

    ``measured``/``limit`` are set for budget checks. ``message`` is what a person reads (the
    suite shows it as the failure or skip reason).
    """

    variant: str
    key: str
    outcome: Outcome
    message: str
    measured: float | None = None
    limit: float | None = None

    @property
    def passed(self) -> bool:
        return self.outcome in (Outcome.PASS, Outcome.UPDATED)

    @property
    def failed(self) -> bool:
        return self.outcome.failed


@dataclass(frozen=True, order=True)
class CaseId:
    """One benchmark case: a variant of a gated model, written ``model:variant``."""

    model: str
    variant: str

    SEPARATOR = ":"

    def __post_init__(self) -> None:
        for part in (self.model, self.variant):
            if not part or self.SEPARATOR in part:
                raise ValueError(f"a case's model and variant are non-empty and hold no "
                                 f"{self.SEPARATOR!r}: got {self.model!r}, {self.variant!r}")

    def __str__(self) -> str:
        return f"{self.model}{self.SEPARATOR}{self.variant}"

    @classmethod
    def variant_of(cls, text: str) -> str:
        """The variant of a test's case id: ``model:variant`` or a first model's bare name."""
        return cls.parse(text).variant if cls.SEPARATOR in str(text) else str(text)

    @classmethod
    def parse(cls, text: str) -> CaseId:
        """``"mobilenet_v2:int8-ptq"`` -> ``CaseId("mobilenet_v2", "int8-ptq")``."""
        model, sep, variant = str(text).partition(cls.SEPARATOR)
        if not sep:
            raise ValueError(f"{text!r} is not a case id (model{cls.SEPARATOR}variant)")
        return cls(model, variant)


class Status(enum.Enum):
    """A variant's status in a row, from its verdicts; the row holds :meth:`text`."""

    ERROR = "ERROR"
    FAIL = "FAIL"
    PASS = "PASS"
    REFERENCE = "reference"
    NO_BUDGET = "NO BUDGET"
    NOT_CHECKED = "not checked"

    @classmethod
    def of(cls, text: str | None) -> Status | None:
        """The status a row's text holds (``FAIL: min_speedup`` -> FAIL); None: no status."""
        if not text:
            return None
        head = str(text).split(":", 1)[0].strip()
        for status in cls:
            if head == status.value:
                return status
        raise ValueError(f"unknown status {text!r}; known: {', '.join(s.value for s in cls)}")

    @staticmethod
    def text(verdicts: Iterable[Verdict], *, error: str | None = None,
             reference: bool = False) -> str:
        """``ERROR: <what>`` (a figure could not be measured or a test crashed; any failures
        follow) / ``FAIL: <keys>`` / ``PASS`` / ``reference`` / ``NO BUDGET`` /
        ``not checked``."""
        verdicts = list(verdicts)
        failed = [v.key for v in verdicts if v.outcome is Outcome.FAIL]
        errored = [v.key for v in verdicts if v.outcome is Outcome.ERROR]
        if error or errored:
            what = error or ", ".join(errored)
            return "ERROR: " + what + (f"; FAIL: {','.join(failed)}" if failed else "")
        if failed:
            return "FAIL: " + ",".join(failed)
        if any(v.outcome is Outcome.PASS and v.limit is not None for v in verdicts):
            return "PASS"
        if reference:
            return "reference"
        return "NO BUDGET" if verdicts else "not checked"
