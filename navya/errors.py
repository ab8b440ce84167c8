"""The one base class of navya's own errors.

Every error navya raises on purpose (a bad checkpoint, data set, budgets file, configuration or
command line) is a :class:`NavyaError`; each class also keeps the built-in error it has always
been (``BudgetError(NavyaError, ValueError)``, ``UnknownVariantError(NavyaError, KeyError)``),
so ``except ValueError`` still catches it. The command line prints a ``NavyaError`` as one line
and exits 2; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

__all__ = ["NavyaError"]


class NavyaError(Exception):
    """Base class of every navya error; the message says what is wrong and what would work."""
