"""Metrics: VOC AP, model statistics, latency, memory, and :func:`measure` (one row).

``navya.metrics.measure`` is the function (it shadows its submodule of the same name, which
stays importable as ``from navya.metrics.measure import ...``).
"""

from navya.metrics.measure import Measurement, measure

__all__ = ["Measurement", "measure"]
