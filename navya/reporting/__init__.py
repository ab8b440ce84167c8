"""A run's reports, from its results only (torch-free: a test imports and renders them without
torch).

- :mod:`~navya.reporting.rows`: rows as CSV (the one schema), read back typed;
- :mod:`~navya.reporting.tables`: rows as Markdown and terminal text;
- :mod:`~navya.reporting.plot`: the accuracy/speed trade-off plot;
- :mod:`~navya.reporting.summary`: summary.csv, summary.md and tradeoff.png as one set;
- :mod:`~navya.reporting.page`: index.html, verdicts.md, run.json and the speed history.
"""
