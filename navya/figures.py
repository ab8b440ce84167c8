"""The figures of a run, each declared once.

Torch-free (layer 0): the engine, the budgets, the reports and the pytest plugin read these
tables; none of them declares a figure of its own.

- :data:`BUDGETS`: every figure a budget can limit (``benchmarks/budgets.toml``). Per figure:
  its budget key, the direction of the limit, the meaningful
  range of a limit, its unit and label, its format (the reports show it with them), and how the engine measures it
  (``measure(bench, variant) -> float``; ``bench`` is a :class:`navya.bench.Bench`).
- :data:`BASELINE_FIGURES`: the deterministic figures a committed baseline holds, each with
  its tolerance key (:data:`navya.budgets.DEFAULT_TOLERANCES`).
- :data:`SAME_RUN_FIELDS`: the columns of a row that compare a variant with the reference in
  the same run, after the :class:`~navya.metrics.measure.Measurement` fields.

Adding a budgeted figure (README, "Add a figure"): one entry in :data:`BUDGETS`, its limits in
``benchmarks/budgets.toml``, and a one-line test in the ``benchmarks/`` module of its kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AP_PREFIX", "BASELINE_FIGURES", "BUDGETS", "BUDGET_KEYS", "RUNTIME_PAIRS",
           "SAME_RUN_FIELDS", "SAME_RUN_TEXT_FIELDS", "BudgetFigure", "format_value"]

#: the prefix of a row's per-class AP columns (``ap_<class>``): the one definition
AP_PREFIX = "ap_"


@dataclass(frozen=True)
class BudgetFigure:
    """A figure a budget limits. ``direction``: ``"max"`` (the figure must stay at or below
    the limit) or ``"min"``. ``low``/``high`` and their ``*_ok`` flags: the meaningful range
    of a limit (a limit outside it is a budgets-file error). ``measure``: how the engine
    measures it. ``unit``, ``label`` and ``fmt``: how the reports show a measured value and a
    limit (:func:`format_value`)."""

    key: str
    direction: str
    unit: str
    label: str
    fmt: str
    measure: Callable[[Any, str], float]
    low: float = 0.0
    low_ok: bool = False
    high: float = math.inf
    high_ok: bool = False
    #: measured against the reference (the reference itself has nothing to compare)
    relative: bool = True
    #: a speed figure, from the speed runs: a value on the wrong side of its limit is judged
    #: again on the median run of ``confirm`` fresh runs (one noisy run is not a regression)
    timed: bool = False

    def format(self, value: float) -> str:
        """A value of this figure as the reports show it (``2.84x``, ``0.08 points``,
        ``12.3 MB``, ``45.0%``)."""
        text = f"{value:{self.fmt}}"
        if self.unit in ("x", "fraction"):
            return text + ("x" if self.unit == "x" else "")
        return f"{text}\u00a0{self.unit}"  # no break between a number and its unit

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"{self.key}: direction is 'max' or 'min', got {self.direction!r}")
        if not self.key.startswith(self.direction + "_"):
            raise ValueError(f"{self.key}: a budget key starts with its direction "
                             f"({self.direction}_)")


#: Every budgeted figure, in the order a report shows them.
BUDGETS: dict[str, BudgetFigure] = {f.key: f for f in (
    BudgetFigure("max_map_drop_points", "max", "points", "mAP drop", "+.2f",
                 lambda b, v: b.map_drop_points(v),
                 low=0.0, low_ok=True, high=100.0, high_ok=True),
    BudgetFigure("min_size_ratio", "min", "x", "size ratio", ".2f",
                 lambda b, v: b.size_ratio(v)),
    BudgetFigure("min_zip_size_ratio", "min", "x", "zipped size ratio", ".2f",
                 lambda b, v: b.zip_size_ratio(v)),
    BudgetFigure("min_speedup", "min", "x", "speedup", ".2f",
                 lambda b, v: b.speedup(v).speedup, timed=True),
    # the tail: p95(reference) / p95(variant) in the median speed run (same ABBA pairs)
    BudgetFigure("min_p95_speedup", "min", "x", "p95 speedup", ".2f",
                 lambda b, v: b.speedup(v).a.p95_ms / b.speedup(v).b.p95_ms, timed=True),
    BudgetFigure("max_peak_mem_mb", "max", "MB", "peak memory", ".1f",
                 lambda b, v: b.peak_mem_mb(v), relative=False),
    BudgetFigure("min_macs_reduction", "min", "fraction", "MACs reduction", ".1%",
                 lambda b, v: b.macs_reduction(v),
                 low=0.0, low_ok=True, high=1.0, high_ok=False),
)}

def format_value(key: str, value: float | None) -> str | None:
    """``value`` of budget figure ``key`` as the reports show it; None for another key or no
    value (the caller formats it its own way)."""
    figure = BUDGETS.get(key)
    if figure is None or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return figure.format(float(value))


def relative_budgets() -> list[str]:
    """The budgets measured against the reference of the same run (a user's model is held to
    these, not to the absolute ones written for the shipped checkpoint)."""
    return [k for k, f in BUDGETS.items() if f.relative]


#: budget key -> direction, in table order (what ``budgets.toml`` may hold)
BUDGET_KEYS: dict[str, str] = {k: f.direction for k, f in BUDGETS.items()}

#: The deterministic figures of a baseline -> their tolerance key.
BASELINE_FIGURES: dict[str, str] = {
    "map": "map_abs",
    "size_bytes": "size_rel",
    "size_zip_bytes": "size_rel",
    "macs": "macs_rel",
    "effective_macs": "macs_rel",
    "params": "params_rel",
    "nonzero_params": "params_rel",
    "sparsity": "sparsity_abs",
    "prunable_sparsity": "sparsity_abs",
}

#: Figures of a row that compare a variant with the reference in the same run, and its
#: verdict; they follow the :data:`~navya.metrics.measure.ROW_FIELDS` in every row.
SAME_RUN_FIELDS: tuple[str, ...] = (
    "map_drop_points",  # (reference mAP - mAP) * 100, points
    "size_ratio",  # size(reference) / size(variant), serialized artifact
    "zip_size_ratio",  # the same, zlib-compressed
    "macs_reduction",  # 1 - macs(variant) / macs(reference)
    "speedup",  # t(reference) / t(variant), interleaved in this run
    "speedup_ci_low",
    "speedup_ci_high",
    "map_ci_low",  # bootstrap interval of mAP over the images (models gated with intervals)
    "map_ci_high",
    "map_drop_points_ci_low",  # paired bootstrap interval of the drop, points
    "map_drop_points_ci_high",
    "transform_s",  # seconds the variant's transform took (calibration, fine-tune) when built
    "reference",  # the variant this row is compared with (a row whose name it is: the reference)
    "runtime",  # what runs the network: torch / onnxruntime / openvino / executorch-xnnpack
    "artifact",  # built / cache (artifact cache hit) / uncached / prebuilt
    "evaluated",  # now / cache (evaluation cache hit)
    "measured",  # speed runs: now / reused (same inputs, from an earlier passing run)
    "status",  # PASS / FAIL: <keys> / NO BUDGET / reference / not checked
)
#: Same-run fields that hold words, not numbers.
SAME_RUN_TEXT_FIELDS = ("reference", "runtime", "artifact", "evaluated", "measured",
                        "status")

#: The INT8 gain per runtime (a report figure): per runtime, its fp32 and its INT8 variant; the
#: report shows each INT8 variant's speedup over its own runtime's fp32 beside its speedup over
#: the reference (torch eager fp32).
RUNTIME_PAIRS: dict[str, tuple[str, str]] = {
    "torch eager": ("fp32", "int8-ptq"),
    "onnxruntime": ("onnx-fp32", "onnx-int8"),
    "openvino": ("openvino-fp32", "openvino-int8"),
    "executorch-xnnpack": ("executorch-xnnpack-fp32", "executorch-xnnpack-int8"),
}
