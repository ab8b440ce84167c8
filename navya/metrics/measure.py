"""The row schema of one measurement of one detector, and where its figures come from.

:class:`Measurement` is the frozen row that ``navya measure`` prints, the suite's summary
extends (:data:`navya.figures.SAME_RUN_FIELDS`) and :mod:`navya.reporting.rows` writes to CSV. The
engine (:mod:`navya.bench`) fills it; the protocol behind each field is documented there.
:func:`cpu_model`, :func:`git_commit` and :func:`utc_now` give its provenance fields.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from navya.figures import AP_PREFIX, SAME_RUN_FIELDS

__all__ = ["AP_PREFIX", "FIELD_TYPES", "ROW_FIELDS", "Measurement", "cpu_model", "git_commit",
           "parse_value", "row_columns", "utc_now"]



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
            row[AP_PREFIX + cls] = ap
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
            kwargs[name] = parse_value(name, row[name], FIELD_TYPES[name])
        if class_names is None:
            class_names = [k[len(AP_PREFIX):] for k in row if k.startswith(AP_PREFIX)]
        ap: dict[str, float] = {}
        for c in class_names:
            key = AP_PREFIX + c
            if key not in row:
                raise ValueError(f"measurement row lacks the column {key!r}")
            ap[c] = parse_value(key, row[key], (float,))
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


FIELD_TYPES = _field_types()
#: The scalar fields of a :class:`Measurement`, in row (CSV column) order.
ROW_FIELDS: tuple[str, ...] = tuple(FIELD_TYPES)


def row_columns(class_names: Sequence[str]) -> list[str]:
    """The header of a row: the Measurement fields, the same-run fields
    (:data:`navya.figures.SAME_RUN_FIELDS`), ``ap_<class>``."""
    return [*ROW_FIELDS, *SAME_RUN_FIELDS, *(AP_PREFIX + c for c in class_names)]


def parse_value(name: str, value: Any, kinds: tuple[type, ...]) -> Any:
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
    """The CPU's model name (:func:`navya.runtime.cpu_model`; imported when called, so that
    reading and writing rows needs no torch)."""
    from navya.runtime import cpu_model as _cpu_model

    return _cpu_model()


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


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
