"""Shared pytest configuration: the navya suite plugin (``--navya-*`` options, fixtures, summary)."""

pytest_plugins = ["navya.suite"]
