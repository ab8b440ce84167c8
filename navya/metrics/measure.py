"""One measurement of one detector: accuracy, cost, size, memory, latency and provenance.

:func:`measure` runs every metric of :mod:`navya.metrics` on a model and a data set and
returns one frozen :class:`Measurement`, the row the suite compares against its budgets and
the report writes to CSV. It prints nothing (progress bars only when ``progress=True``).

Protocol (DESIGN.md, "Measurement protocol"):

- **Accuracy**: VOC AP at IoU 0.5 per class (all-point) and mAP (all-point and VOC07
  11-point) on the first ``eval_images`` items of the data set. Not timed, so it runs with
  the process's current intra-op thread count (all cores by default).
- **Inputs of the cost figures**: the first ``batch_size`` images of the data set, as a
  list (the detector's input); ``x = model.preprocess(images)`` (``[N, 3, S, S]``) for the
  network alone.
- **MACs**: of ``model.core(x)`` (fvcore, quantized ops included); ``effective_macs``
  scales each conv/linear by its weight density (unstructured sparsity).
- **Latency**: end to end, ``model(images)`` (pre-processing, network, decoding and NMS),
  ``warmup`` untimed calls then ``latency_rounds`` timed ones at ``threads`` intra-op
  threads (restored afterwards); the network alone (``model.core(x)``) the same way.
- **Memory**: peak bytes allocated during one ``model(images)`` call (memray), and the
  peak RSS of a fresh subprocess running it (optional: it costs a Python start-up).
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
import subprocess
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["ROW_FIELDS", "Measurement", "measure"]

_AP_PREFIX = "ap_"


@dataclass(frozen=True)
class Measurement:
    """Everything measured about one model (variant) in one run.

    Units are in the names: ``*_mb`` are 10**6 bytes, ``*_ms`` milliseconds, ``macs``
    multiply-accumulates (not FLOPs). Accuracy figures are fractions in ``[0, 1]`` (NaN
    when nothing could be scored, e.g. an AP of a class without ground truth).

    Attributes:
        name: the model or variant name (``fp32``, ``int8-ptq``, ...).
        map: VOC mAP at IoU 0.5, all-point interpolation.
        map_voc07: the same with VOC2007's 11-point interpolation.
        eval_images: number of images the accuracy was computed on.
        macs: multiply-accumulates of ``model.core`` on one preprocessed batch of
            ``batch_size`` images.
        effective_macs: ``macs`` with each conv/linear scaled by its weight density.
        params, nonzero_params: parameter counts (packed quantized weights unpacked).
        sparsity: fraction of zero parameters over all parameters.
        prunable_sparsity: fraction of zero weights among conv/linear weights.
        size_mb, size_zip_mb: serialized state dict, raw and zlib-compressed.
        peak_mem_mb: peak bytes allocated during one end-to-end inference call (memray).
        rss_mb: peak RSS of a fresh process running the model (None when not measured).
        latency_ms_*: end-to-end latency of ``model(images)`` (post-processing included)
            at ``threads`` threads: median, mean, sample std, 95th percentile, minimum.
        fps: images per second at the median end-to-end latency
            (``batch_size * 1000 / latency_ms_median``).
        net_latency_ms_median: median latency of the network alone, ``model.core(x)``.
        latency_rounds: timed calls behind each latency figure.
        threads: intra-op threads of the latency and memory measurements.
        batch_size: images per inference call.
        quantized_engine: the engine an INT8 model runs with (``model.quantized_engine``), else
            ``torch.backends.quantized.engine`` during the measurement.
        torch_version, cpu_model, git_commit (None outside a git checkout), timestamp
            (UTC, ISO 8601): where the figures come from.
        ap_per_class: AP per class name (all-point), in class order.
    """

    name: str
    map: float
    map_voc07: float
    eval_images: int
    macs: int
    effective_macs: int
    params: int
    nonzero_params: int
    sparsity: float
    prunable_sparsity: float
    size_mb: float
    size_zip_mb: float
    peak_mem_mb: float
    rss_mb: float | None
    latency_ms_median: float
    latency_ms_mean: float
    latency_ms_std: float
    latency_ms_p95: float
    latency_ms_min: float
    fps: float
    net_latency_ms_median: float
    latency_rounds: int
    threads: int
    batch_size: int
    quantized_engine: str
    torch_version: str
    cpu_model: str
    git_commit: str | None
    timestamp: str
    ap_per_class: dict[str, float] = field(default_factory=dict, hash=False)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.ap_per_class)

    def to_row(self) -> dict[str, Any]:
        """Flat dict for one CSV row: the scalar fields in :data:`ROW_FIELDS` order, then
        ``ap_<class>`` per class in class order. Values keep their Python types."""
        row: dict[str, Any] = {name: getattr(self, name) for name in ROW_FIELDS}
        for cls, ap in self.ap_per_class.items():
            row[_AP_PREFIX + cls] = ap
        return row

    @classmethod
    def from_row(
        cls, row: Mapping[str, Any], class_names: Sequence[str] | None = None
    ) -> Measurement:
        """Rebuild a measurement from :meth:`to_row`'s dict or a CSV row of strings.

        ``class_names`` gives the order (and the set) of the ``ap_<class>`` columns; None
        takes every ``ap_`` column in the row's order. Strings are converted to each field's
        type; ``""`` or None is None for the optional fields (``rss_mb``, ``git_commit``).

        Raises:
            ValueError: a missing column or a value that does not parse, naming the column.
        """
        kwargs: dict[str, Any] = {}
        for name in ROW_FIELDS:
            if name not in row:
                raise ValueError(f"measurement row lacks the column {name!r}")
            kwargs[name] = _parse_value(name, row[name], _FIELD_TYPES[name])
        if class_names is None:
            class_names = [k[len(_AP_PREFIX):] for k in row if k.startswith(_AP_PREFIX)]
        ap: dict[str, float] = {}
        for c in class_names:
            key = _AP_PREFIX + c
            if key not in row:
                raise ValueError(f"measurement row lacks the column {key!r}")
            ap[c] = _parse_value(key, row[key], (float,))
        return cls(**kwargs, ap_per_class=ap)


def _field_types() -> dict[str, tuple[type, ...]]:
    """Each scalar field's accepted types, from the annotations (``X | None`` -> (X, None))."""
    hints = typing.get_type_hints(Measurement)
    out: dict[str, tuple[type, ...]] = {}
    for f in fields(Measurement):
        if f.name == "ap_per_class":
            continue
        hint = hints[f.name]
        if isinstance(hint, types.UnionType):
            out[f.name] = tuple(type(None) if a is type(None) else a for a in hint.__args__)
        else:
            out[f.name] = (hint,)
    return out


_FIELD_TYPES = _field_types()
#: The scalar fields of a :class:`Measurement`, in row (CSV column) order.
ROW_FIELDS: tuple[str, ...] = tuple(_FIELD_TYPES)


def _parse_value(name: str, value: Any, kinds: tuple[type, ...]) -> Any:
    optional = type(None) in kinds
    kind = next(k for k in kinds if k is not type(None))
    if value is None or (isinstance(value, str) and value == "" and kind is not str):
        if optional:
            return None
        raise ValueError(f"column {name!r} is empty; it needs a {kind.__name__}")
    if value == "" and kind is str and optional:
        return None
    try:
        if kind is int:
            if isinstance(value, float) or isinstance(value, bool):
                raise ValueError(f"not an integer: {value!r}")
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name!r}: cannot read {value!r} as {kind.__name__}") from exc


# -- provenance ------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's ``model name`` from /proc/cpuinfo, else ``platform.processor()``/machine."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout holding the navya package, or None (no git,
    not a checkout, or the package lives outside the repository git finds)."""
    package_dir = Path(__file__).resolve().parents[1]
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=package_dir.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) != 2:
        return None
    toplevel, commit = Path(lines[0]).resolve(), lines[1]
    if not package_dir.is_relative_to(toplevel) or len(commit) < 7:
        return None
    return commit


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# -- measure ---------------------------------------------------------------------------------


def _stage_bar(progress: bool, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="measure", disable=not progress, dynamic_ncols=True,
                bar_format="{desc}: {n}/{total}{postfix}")


def measure(
    model: nn.Module,
    dataset: Dataset,
    *,
    name: str,
    threads: int = 1,
    batch_size: int = 1,
    eval_images: int | None = None,
    latency_rounds: int = 30,
    warmup: int = 5,
    rss: bool = True,
    class_names: Sequence[str] | None = None,
    progress: bool = False,
) -> Measurement:
    """Measure ``model`` (an :class:`~navya.models.SSDLite`, float or quantized) on ``dataset``.

    Args:
        model: the detector; used in eval mode (its previous mode is restored), not changed.
        dataset: items ``(image [3, H, W] in [0, 1], target)``; the accuracy is scored on
            its first ``eval_images`` items (all when None), the cost figures use its first
            ``batch_size`` images.
        name: the row's name (variant).
        threads: intra-op threads for latency and memory (accuracy uses the current setting).
        batch_size: images per inference call for MACs, latency and memory.
        latency_rounds, warmup: timed and untimed calls per latency figure.
        rss: also measure the peak RSS in a subprocess (a few seconds).
        class_names: names of the labels (default: ``dataset.class_names``).
        progress: show progress bars (evaluation and stages) on stderr.

    Raises:
        ValueError: invalid arguments, or fewer than ``batch_size`` images in the data set.
    """
    from navya.metrics.evaluate import evaluate_model
    from navya.metrics.latency import measure_latency, num_threads, timing_copy
    from navya.metrics.memory import peak_alloc_mb, subprocess_peak_rss_mb
    from navya.metrics.model_stats import count_macs, param_stats, serialized_size

    if not name or not isinstance(name, str):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    for label, value, low in (("threads", threads, 1), ("batch_size", batch_size, 1),
                              ("latency_rounds", latency_rounds, 3), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if eval_images is not None and (isinstance(eval_images, bool)
                                    or not isinstance(eval_images, int) or eval_images < 1):
        raise ValueError(f"eval_images must be a positive integer or None, got {eval_images!r}")
    if len(dataset) < batch_size:
        raise ValueError(f"the data set has {len(dataset)} images, fewer than batch_size "
                         f"{batch_size}")
    names = tuple(class_names if class_names is not None else dataset.class_names)

    was_training = model.training
    model.eval()
    try:
        with _stage_bar(progress, 6) as bar:
            bar.set_postfix_str("accuracy")
            ev = evaluate_model(model, dataset, class_names=names, limit=eval_images,
                                progress=progress)
            n_eval = len(dataset) if eval_images is None else min(eval_images, len(dataset))
            bar.update()

            images = [dataset[i][0] for i in range(batch_size)]
            with torch.inference_mode():
                x = model.preprocess(images)

            bar.set_postfix_str("MACs, params, size")
            macs = count_macs(model.core, x)
            params = param_stats(model)
            size = serialized_size(model)
            bar.update()

            bar.set_postfix_str(f"latency ({threads} thread{'s' * (threads > 1)})")
            # a never-run copy: its first call (the warm-up) is at the timing thread count
            timed = timing_copy(model)
            e2e = measure_latency(lambda: timed(images), threads=threads, warmup=warmup,
                                  rounds=latency_rounds)
            bar.update()
            bar.set_postfix_str("network latency")
            net = measure_latency(lambda: timed.core(x), threads=threads, warmup=warmup,
                                  rounds=latency_rounds)
            bar.update()

            bar.set_postfix_str("peak memory (memray)")
            with num_threads(threads), torch.inference_mode():
                peak_mb = peak_alloc_mb(lambda: model(images))
            bar.update()

            rss_mb = None
            if rss:
                bar.set_postfix_str("peak RSS (subprocess)")
                rss_mb = subprocess_peak_rss_mb(model, (images,), threads=threads)
            bar.update()
            bar.set_postfix_str("done")
    finally:
        model.train(was_training)

    ap = ev.ap["all-point"]
    return Measurement(
        name=name,
        map=float(ev.map("all-point")),
        map_voc07=float(ev.map("voc07")),
        eval_images=n_eval,
        macs=int(macs.macs),
        effective_macs=int(macs.effective_macs),
        params=params.params,
        nonzero_params=params.nonzero_params,
        sparsity=float(params.sparsity),
        prunable_sparsity=float(params.prunable_sparsity),
        size_mb=size.size_mb,
        size_zip_mb=size.size_zip_mb,
        peak_mem_mb=float(peak_mb),
        rss_mb=None if rss_mb is None else float(rss_mb),
        latency_ms_median=e2e.median_ms,
        latency_ms_mean=e2e.mean_ms,
        latency_ms_std=e2e.std_ms,
        latency_ms_p95=e2e.p95_ms,
        latency_ms_min=e2e.min_ms,
        fps=batch_size * 1000.0 / e2e.median_ms if e2e.median_ms > 0 else math.inf,
        net_latency_ms_median=net.median_ms,
        latency_rounds=latency_rounds,
        threads=threads,
        batch_size=batch_size,
        quantized_engine=str(getattr(model, "quantized_engine", None)
                             or torch.backends.quantized.engine),
        torch_version=str(torch.__version__),
        cpu_model=cpu_model(),
        git_commit=git_commit(),
        timestamp=_utc_now(),
        ap_per_class={c: float(ap[c]) for c in names},
    )
