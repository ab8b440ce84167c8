"""Pruning sweeps: mAP (and per-class AP) against the pruning ratio, the original study's table.

:func:`sweep` prunes one float model at each ratio with one method, scores every result on an
evaluation split and returns one :class:`SweepRow` per ratio; :func:`write_sweep_csv` writes
the table and :func:`plot_sweep` the curve (mAP against pruning %, one line per method).

Units: in this API, **ratios are fractions** in ``[0, 1)`` (0.3 = 30%); the CLI's
``--ratios 0,2,4,5,8,10,15,20,25,30`` is in **percent** (:func:`ratios_from_percent`
converts). ``map`` and ``ap_per_class`` are fractions in ``[0, 1]`` (VOC all-point AP at IoU
0.5); ``drop_points`` is in mAP percentage points (``100 * (map(ratio 0) - map)``); the CSV
writes percents.

Methods (:data:`METHODS`): ``"l1-unstructured"`` and ``"random-unstructured"`` (conv weights,
per layer, no fine-tune: :func:`navya.compress.prune.prune_unstructured`), and
``"l1-structured"`` (channels removed, then the fine-tune of
:class:`~navya.compress.prune.StructuredConfig` on ``context.train_dataset``: slow, one
fine-tune per ratio). Ratio 0 is the unpruned model itself (no transform, no fine-tune): the
reference every drop is measured from; it is evaluated even when 0 is not in ``ratios``, once
per context (``context.cache``) when several methods are swept.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from navya._io import atomic_write_bytes
from navya.compress.base import CompressContext
from navya.compress.prune import (
    PruningError,
    StructuredConfig,
    UnstructuredConfig,
    check_prunable,
    prune_structured,
    prune_unstructured,
)
from navya.models.checkpoint import state_fingerprint

__all__ = ["METHODS", "SweepRow", "plot_sweep", "ratios_from_percent", "sweep", "write_sweep_csv"]

METHODS = ("l1-unstructured", "random-unstructured", "l1-structured")


@dataclass(frozen=True)
class SweepRow:
    """One pruned model of a sweep.

    Attributes:
        method: one of :data:`METHODS`.
        ratio: pruning ratio, a fraction in ``[0, 1)``.
        map: mAP@0.5 (VOC all-point), a fraction.
        ap_per_class: AP per class name, fractions (NaN for a class without ground truth).
        drop_points: ``100 * (map at ratio 0 - map)``, mAP percentage points (positive = worse).
        sparsity: fraction of zero conv/linear weights in ``core`` (unstructured pruning).
        macs: multiply-accumulates of one ``core`` forward at the model's input size (dense:
            structured pruning lowers it, zeros do not).
        effective_macs: ``macs`` scaled by each layer's weight density (what the zeros could save).
        params: parameters of the model (structured pruning lowers it).
    """

    method: str
    ratio: float
    map: float
    ap_per_class: dict[str, float] = field(hash=False)
    drop_points: float
    sparsity: float
    macs: int
    effective_macs: int = 0
    params: int = 0


def ratios_from_percent(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0,2,4,5,8"`` (percent, the CLI's form) -> ``(0.0, 0.02, 0.04, 0.05, 0.08)``.

    Raises:
        PruningError: an entry that is not a number, or outside ``[0, 100)``.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            pct = float(item)
        except (TypeError, ValueError):
            raise PruningError(f"ratios are percents separated by commas (e.g. 0,2,4,5,8,10), "
                               f"got {item!r}") from None
        if math.isnan(pct) or not 0 <= pct < 100:
            raise PruningError(f"a pruning percentage must be in [0, 100), got {item!r}")
        out.append(pct / 100)
    if not out:
        raise PruningError("no pruning ratio given")
    return tuple(out)


def _transform_for(method: str, overrides: dict | None
                   ) -> Callable[[nn.Module, float, CompressContext], nn.Module]:
    if method not in METHODS:
        raise PruningError(f"unknown pruning method {method!r}; known: {', '.join(METHODS)}")
    overrides = dict(overrides or {})
    if method == "l1-structured":
        def structured(model: nn.Module, ratio: float, context: CompressContext) -> nn.Module:
            return prune_structured(model, StructuredConfig(ratio=ratio, **overrides), context)
        return structured
    kind = method.split("-")[0]

    def unstructured(model: nn.Module, ratio: float, context: CompressContext) -> nn.Module:
        return prune_unstructured(model, UnstructuredConfig(amount=ratio, method=kind, **overrides),
                                  context)
    return unstructured


def _stats(model: nn.Module) -> tuple[float, int, int, int]:
    from navya.metrics.model_stats import count_macs, param_stats

    core = getattr(model, "core", model)
    size = int(getattr(model, "image_size", 320))
    x = model.preprocess([torch.zeros(3, size, size)]) if hasattr(model, "preprocess") \
        else torch.zeros(1, 3, size, size)
    macs = count_macs(core, (x,))
    stats = param_stats(core)
    return stats.prunable_sparsity, macs.macs, macs.effective_macs, param_stats(model).params


def sweep(model: nn.Module, eval_dataset: Dataset, *, method: str, ratios: Sequence[float],
          eval_images: int | None = None, context: CompressContext | None = None,
          progress: bool = False, config_overrides: dict | None = None,
          class_names: Sequence[str] | None = None) -> list[SweepRow]:
    """Prune ``model`` at each ratio with ``method`` and score each result on ``eval_dataset``.

    Args:
        model: the float detector (not changed).
        eval_dataset: the evaluation split (never the fine-tune data).
        method: one of :data:`METHODS`.
        ratios: fractions in ``[0, 1)`` (**not percents**: use :func:`ratios_from_percent` for
            the CLI's ``0,2,4,...``); rows come back in this order.
        eval_images: score only the first N images (None: all).
        context: training data for the structured fine-tune, seed, cache.
        progress: progress bars while evaluating (and fine-tuning).
        config_overrides: extra fields of the method's config (``UnstructuredConfig`` for the
            unstructured methods, e.g. ``{"scope": "global"}``; ``StructuredConfig`` for
            ``l1-structured``, e.g. ``{"finetune_iters": 50}``).
        class_names: defaults to ``eval_dataset.class_names``.

    Returns one :class:`SweepRow` per ratio. Raises :class:`PruningError` for an unknown
    method, a ratio outside ``[0, 1)`` or a quantized model.
    """
    from navya.metrics.evaluate import evaluate_model

    transform = _transform_for(method, config_overrides)
    ratios = [float(r) for r in ratios]
    if not ratios:
        raise PruningError("no pruning ratio given")
    for r in ratios:
        if math.isnan(r) or not 0.0 <= r < 1.0:
            raise PruningError(f"pruning ratios are fractions in [0, 1) (0.3 = 30%; the CLI takes "
                               f"percents), got {r!r}")
    check_prunable(model)
    context = context or CompressContext()
    names = class_names if class_names is not None else eval_dataset.class_names

    def score(m: nn.Module) -> tuple[float, dict[str, float]]:
        ev = evaluate_model(m, eval_dataset, class_names=names, limit=eval_images,
                            progress=progress, methods=("all-point",))
        return ev.map("all-point"), dict(ev.ap["all-point"])

    reference = model  # evaluate_model restores its train/eval mode
    # the unpruned score is shared by the sweeps of several methods run with one context
    key = ("navya.sweep.reference", state_fingerprint(model), id(eval_dataset), eval_images,
           tuple(names))
    if key not in context.cache:
        context.cache[key] = score(reference)
    base_map, base_ap = context.cache[key]
    rows = []
    for r in ratios:
        if r == 0:
            pruned, (m_ap, ap) = reference, (base_map, base_ap)
        else:
            pruned = transform(model, r, context)
            m_ap, ap = score(pruned)
        sparsity, macs, eff, params = _stats(pruned)
        rows.append(SweepRow(method=method, ratio=r, map=m_ap, ap_per_class=ap,
                             drop_points=100.0 * (base_map - m_ap), sparsity=sparsity,
                             macs=macs, effective_macs=eff, params=params))
    return rows


# -- output --------------------------------------------------------------------------------------


def _pct(x: float, digits: int = 2) -> str:
    return "" if x is None or math.isnan(x) else f"{100.0 * x:.{digits}f}"


def write_sweep_csv(rows: Sequence[SweepRow], path: str | os.PathLike) -> None:
    """Write the study's table atomically: one line per row with ``method, pruning_pct,
    map_pct, drop_points, sparsity_pct, params, macs, effective_macs`` and one
    ``ap_pct_<class>`` column per class (empty for a class without ground truth)."""
    classes: list[str] = []
    for row in rows:
        classes += [c for c in row.ap_per_class if c not in classes]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "pruning_pct", "map_pct", "drop_points", "sparsity_pct", "params",
                "macs", "effective_macs", *(f"ap_pct_{c}" for c in classes)])
    for row in rows:
        w.writerow([row.method, f"{100.0 * row.ratio:g}", _pct(row.map),
                    "" if math.isnan(row.drop_points) else f"{row.drop_points:.2f}",
                    _pct(row.sparsity), row.params, row.macs, row.effective_macs,
                    *(_pct(row.ap_per_class.get(c, math.nan)) for c in classes)])
    atomic_write_bytes(path, buf.getvalue().encode())


def plot_sweep(rows: Sequence[SweepRow], path: str | os.PathLike, *,
               title: str = "mAP against pruning ratio") -> None:
    """Plot mAP (%) against pruning (%), one line per method, to a PNG written atomically.

    Draws on a matplotlib ``Figure`` with the Agg canvas directly: no pyplot, no global
    backend change."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("no sweep rows to plot")
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    methods: dict[str, list[SweepRow]] = {}
    for row in rows:
        methods.setdefault(row.method, []).append(row)
    for method, rs in methods.items():
        rs = sorted(rs, key=lambda r: r.ratio)
        ax.plot([100 * r.ratio for r in rs], [100 * r.map for r in rs], marker="o", label=method)
    ax.set_xlabel("pruning (%)")
    ax.set_ylabel("mAP@0.5 (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def rows_as_dicts(rows: Sequence[SweepRow]) -> list[dict]:
    """Rows as plain dicts (JSON output)."""
    return [dataclasses.asdict(r) for r in rows]
