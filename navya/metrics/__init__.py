"""Metrics: pure functions returning dataclasses. VOC AP (``detection``, ``evaluate``), model
statistics (``model_stats``), latency (``latency``), memory (``memory``), and the row schema
of one measurement (``measure.Measurement``; the engine, :mod:`navya.bench`, fills it)."""

from navya.metrics.measure import Measurement

__all__ = ["Measurement"]
