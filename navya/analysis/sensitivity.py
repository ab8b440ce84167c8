"""Per-block INT8 sensitivity: quantize one block at a time, measure the mAP drop of each.

For every block of :func:`~navya.compress.quantize.sensitivity_blocks` (backbone layers, extra
blocks, heads), :func:`layer_sensitivity` builds a model where *only that block* runs in INT8
(a :class:`~navya.compress.quantize.QuantIsland`: quantize its input, run it quantized,
dequantize its output; everything else float) and evaluates its mAP. The blocks whose
quantization costs the most are the candidates to keep in float (mixed precision, as AIMET's
and NNCF's per-layer analyses do): ``PTQConfig(keep_float=keep_most_sensitive(rows, k))``.

Only that block is quantized, with no extra quantize/dequantize at the boundaries of the other
blocks, so each drop is the cost of that block alone (the ``keep_float`` mechanism, which
re-quantizes at every float island's output, would add the boundary noise of all the others).

Cost: one calibration (``config``'s image count) and one evaluation (``eval_images``) per
block: about 40 of each for SSD-Lite MobileNetV2.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from navya._io import atomic_write_bytes, atomic_write_text
from navya.compress.base import CompressContext
from navya.compress.quantize import (
    PTQConfig,
    QuantizationError,
    quantize_static,
    sensitivity_blocks,
)

__all__ = [
    "SensitivityRow",
    "keep_most_sensitive",
    "layer_sensitivity",
    "plot_sensitivity",
    "write_sensitivity_csv",
]


@dataclass(frozen=True)
class SensitivityRow:
    """One block's sensitivity. mAPs are fractions in [0, 1] (VOC all-point AP at IoU 0.5 by
    default); ``drop_points = 100 * (map_fp32 - map_quant_block_only)``, in mAP points
    (positive: quantizing the block costs accuracy)."""

    block: str
    map_fp32: float
    map_quant_block_only: float
    drop_points: float


def _map(model: nn.Module, dataset: Dataset, limit: int | None, method: str) -> float:
    from navya.metrics.evaluate import evaluate_model

    return evaluate_model(model, dataset, limit=limit, methods=(method,)).map(method)


def layer_sensitivity(
    model: nn.Module,
    eval_dataset: Dataset,
    calib_dataset: Dataset,
    *,
    blocks: Sequence[str] | None = None,
    eval_images: int | None = None,
    config: PTQConfig | None = None,
    method: str = "all-point",
    progress: bool = False,
) -> list[SensitivityRow]:
    """mAP drop of quantizing each block alone, most sensitive first.

    Args:
        model: the float detector (not modified).
        eval_dataset: the evaluation split; its first ``eval_images`` items are used (all if
            None).
        calib_dataset: calibration data (the train split), sampled as ``config`` says.
        blocks: names from :func:`sensitivity_blocks` (default: all of them).
        config: the PTQ settings of each one-block model (engine, observers, calibration);
            its ``keep_float`` is ignored.
        method: the AP method (``all-point`` or ``voc07``).
        progress: a progress bar over the blocks.

    Returns:
        One :class:`SensitivityRow` per block, sorted by ``drop_points`` descending (ties in
        block order).

    Raises:
        QuantizationError: unknown block names (lists the valid ones), and every error of
            :func:`~navya.compress.quantize.quantize_static`.
    """
    from tqdm.auto import tqdm

    config = config or PTQConfig()
    valid = sensitivity_blocks(model)
    blocks = list(valid if blocks is None else blocks)
    unknown = [b for b in blocks if b not in valid]
    if unknown:
        raise QuantizationError(f"unknown block name(s): {', '.join(unknown)}; valid blocks: "
                                f"{', '.join(valid)}")
    context = CompressContext(train_dataset=calib_dataset)
    map_fp32 = _map(model, eval_dataset, eval_images, method)
    rows = []
    for block in tqdm(blocks, desc="sensitivity", disable=not progress, unit="block",
                      dynamic_ncols=True):
        quantized = quantize_static(model, config, context, only=(block,))
        map_q = _map(quantized, eval_dataset, eval_images, method)
        rows.append(SensitivityRow(block, map_fp32, map_q, 100.0 * (map_fp32 - map_q)))
    # NaN drops (no ground truth) last
    return sorted(rows, key=lambda r: -r.drop_points if not math.isnan(r.drop_points)
                  else math.inf)


def keep_most_sensitive(rows: Sequence[SensitivityRow], k: int) -> tuple[str, ...]:
    """The ``k`` blocks with the largest drop (for ``PTQConfig(keep_float=...)``)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    if k > len(rows):
        raise ValueError(f"k={k} but there are only {len(rows)} sensitivity rows")
    ranked = sorted(rows, key=lambda r: -r.drop_points if not math.isnan(r.drop_points)
                    else math.inf)
    return tuple(r.block for r in ranked[:k])


_COLUMNS = [f.name for f in fields(SensitivityRow)]


def write_sensitivity_csv(rows: Sequence[SensitivityRow], path: str | os.PathLike) -> Path:
    """Write the rows as CSV (``block, map_fp32, map_quant_block_only, drop_points``), in
    the given order, atomically. Returns the path."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in asdict(row).items()})
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def plot_sensitivity(rows: Sequence[SensitivityRow], path: str | os.PathLike, *,
                     title: str | None = None) -> Path:
    """Write a PNG bar chart of ``drop_points`` per block (most sensitive on top), atomically.
    Uses an Agg canvas for this figure only (no global matplotlib backend switch). Returns
    the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("no sensitivity rows to plot")
    ranked = list(rows)
    drops = [0.0 if math.isnan(r.drop_points) else r.drop_points for r in ranked]
    fig = Figure(figsize=(7.5, 1.2 + 0.24 * len(ranked)), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(ranked)))[::-1]  # first row on top
    colors = ["tab:red" if d > 0 else "tab:green" for d in drops]
    ax.barh(y, drops, color=colors, edgecolor="black", linewidth=0.4)
    ax.set_yticks(y, [r.block for r in ranked], fontsize=7)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("mAP drop when only this block is INT8 (points)")
    fp32 = ranked[0].map_fp32
    ax.set_title(title or f"Per-block INT8 sensitivity (fp32 mAP {100 * fp32:.1f}%)",
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
