"""navya.bench, the measurement engine: one run, each variant built once, each figure computed once.

A :class:`Bench` holds one run over one :class:`Workload` (the fp32 reference, the evaluation
images, the train split for calibration and fine-tunes). Ask it for a figure of a variant
(:meth:`Bench.evaluation`, :meth:`Bench.stats`, :meth:`Bench.speedup`, ...) and it builds the
variant (through :mod:`navya.catalogue`) and computes the figure the first time, then answers
from its cache: the key is a typed :class:`Fig` and the variant name, never a string. Rows
(:meth:`Bench.row`) have one schema, the :class:`~navya.metrics.measure.Measurement` fields
followed by the same-run figures of :data:`SAME_RUN_FIELDS`; budget and baseline comparisons
return :class:`Verdict` values. Nothing here imports pytest: :mod:`navya.suite` turns verdicts
into test outcomes, ``navya measure`` prints rows, :mod:`navya.reporting` writes them.

Protocol (docs/DESIGN.md, "Measurement protocol"):

- **Accuracy**: VOC AP at IoU 0.5 per class (all-point) and mAP (all-point and VOC07
  11-point) on the workload's evaluation images, with all cores (it is not timed).
- **Cost figures** use the first ``batch_size`` evaluation images as a list (the detector's
  input); MACs, latency and memory of the network alone use ``model.preprocess(images)``.
- **Latency** at ``settings.threads`` intra-op threads: a never-run copy of the model
  (:func:`~navya.runtime.timing_copy`) first called at that thread count, ``warmup`` untimed
  calls, ``rounds`` timed ones. A variant's **speedup** is timed interleaved with the
  reference in this process (:func:`~navya.metrics.latency.compare_latency`); its latency
  row comes from that same comparison.
- **Memory**: memray peak of one call; peak RSS of a fresh subprocess (optional).
"""

from navya.bench.core import Fig
from navya.bench.engine import Bench, measure
from navya.bench.settings import (
    REFERENCE,
    SPEED_CONFIRM_RUNS,
    BenchError,
    BenchSettings,
    Workload,
    load_workload,
)
from navya.figures import SAME_RUN_FIELDS, SAME_RUN_TEXT_FIELDS
from navya.metrics.measure import row_columns
from navya.verdicts import Outcome, Verdict

__all__ = [
    "REFERENCE",
    "SAME_RUN_FIELDS",
    "SAME_RUN_TEXT_FIELDS",
    "SPEED_CONFIRM_RUNS",
    "Bench",
    "BenchError",
    "BenchSettings",
    "Fig",
    "Outcome",
    "Verdict",
    "Workload",
    "load_workload",
    "measure",
    "row_columns",
]
