"""Budgets (what each variant must achieve) and deterministic baselines (what it achieved).

Budgets file (TOML, ``benchmarks/budgets.toml``)::

    [tolerances]                  # how far a deterministic figure may move from its baseline
    map_abs = 0.002               # mAP, absolute (fraction, 0..1)
    ...

    [variants.int8-ptq]
    max_map_drop_points = 0.5     # mAP drop vs fp32 in the same run, absolute, in points (%)
    min_size_ratio = 3.8          # size(fp32) / size(variant), serialized artifact
    min_speedup = 3.0             # t(fp32) / t(variant), threads=1, interleaved, same run
    max_peak_mem_mb = 40          # peak bytes allocated during one inference call, MB

Unknown sections, keys or variants are errors that name the file and the key.

Baselines (``benchmarks/baselines/<variant>.json``) hold the deterministic figures of a variant
(mAP, AP per class, size, MACs, sparsity, parameters) with the provenance they depend on
(checkpoint sha256, data fingerprint, number of evaluation images). They are compared with the
tolerances above; only an explicit update (``--navya-update-baselines``) rewrites them, atomically.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from navya._io import atomic_write_text

BUDGET_KEYS: dict[str, str] = {
    "max_map_drop_points": "max",  # fp32 mAP - variant mAP, in points (percent)
    "min_size_ratio": "min",  # size_mb(fp32) / size_mb(variant)
    "min_zip_size_ratio": "min",  # size_zip_mb(fp32) / size_zip_mb(variant)
    "min_speedup": "min",  # t(fp32) / t(variant), threads=1, same run
    "max_peak_mem_mb": "max",  # memray peak during one inference, MB
    "min_macs_reduction": "min",  # 1 - macs(variant) / macs(fp32), fraction
}

DEFAULT_TOLERANCES: dict[str, float] = {
    "map_abs": 0.002,  # mAP (0..1) absolute
    "ap_abs": 0.01,  # per-class AP (0..1) absolute
    "size_rel": 0.01,  # serialized size, relative
    "macs_rel": 0.0,  # MACs, relative (exact)
    "sparsity_abs": 1e-4,  # sparsity fractions, absolute
    "params_rel": 0.0,  # parameter counts, relative (exact)
}

# baseline field -> tolerance key
BASELINE_FIELDS: dict[str, str] = {
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
PROVENANCE_FIELDS = ("checkpoint_sha256", "data_fingerprint", "eval_images")


class BudgetError(ValueError):
    """A budgets file that cannot be used; the message names the file and the problem."""


class BaselineError(ValueError):
    """A baseline file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Budgets:
    path: Path | None
    variants: dict[str, dict[str, float]]
    tolerances: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))

    def for_variant(self, name: str) -> dict[str, float]:
        return self.variants.get(name, {})


@dataclass(frozen=True)
class BudgetCheck:
    variant: str
    key: str
    measured: float
    limit: float

    @property
    def passed(self) -> bool:
        if math.isnan(self.measured):
            return False
        if BUDGET_KEYS[self.key] == "min":
            return self.measured >= self.limit
        return self.measured <= self.limit

    def message(self) -> str:
        op = ">=" if BUDGET_KEYS[self.key] == "min" else "<="
        verdict = "within" if self.passed else "BROKE"
        return (f"variant {self.variant!r} {verdict} budget {self.key}: measured "
                f"{self.measured:.4g}, budget {op} {self.limit:.4g}")


def _number(path: Path, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise BudgetError(f"{path}: {where} must be a number, got {value!r}")
    return float(value)


def load_budgets(path: str | os.PathLike, known_variants: Iterable[str] | None = None) -> Budgets:
    """Read and validate a budgets file. ``known_variants`` (the registry) makes an entry for an
    unregistered variant an error."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BudgetError(f"{path}: budgets file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise BudgetError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"tolerances", "variants"}
    if unknown:
        raise BudgetError(f"{path}: unknown section(s) {sorted(unknown)}; "
                          "expected [tolerances] and [variants.<name>]")
    tolerances = dict(DEFAULT_TOLERANCES)
    for key, value in data.get("tolerances", {}).items():
        if key not in DEFAULT_TOLERANCES:
            raise BudgetError(f"{path}: unknown tolerance {key!r}; known: "
                              f"{', '.join(DEFAULT_TOLERANCES)}")
        tolerances[key] = _number(path, f"tolerances.{key}", value)
        if tolerances[key] < 0:
            raise BudgetError(f"{path}: tolerances.{key} must be >= 0")
    known = set(known_variants) if known_variants is not None else None
    variants: dict[str, dict[str, float]] = {}
    for name, entry in data.get("variants", {}).items():
        if known is not None and name not in known:
            raise BudgetError(f"{path}: budgets for unknown variant {name!r}; registered: "
                              f"{', '.join(sorted(known))}")
        if not isinstance(entry, dict):
            raise BudgetError(f"{path}: [variants.{name}] must be a table")
        checked = {}
        for key, value in entry.items():
            if key not in BUDGET_KEYS:
                raise BudgetError(f"{path}: variants.{name}: unknown budget {key!r}; known: "
                                  f"{', '.join(BUDGET_KEYS)}")
            checked[key] = _number(path, f"variants.{name}.{key}", value)
        variants[name] = checked
    return Budgets(path, variants, tolerances)


# -- baselines ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deviation:
    variant: str
    field: str
    old: float
    new: float
    tolerance: float
    kind: str  # "abs" or "rel"

    def message(self) -> str:
        return (f"variant {self.variant!r}: {self.field} moved from {self.old!r} to {self.new!r} "
                f"(tolerance {self.tolerance:g} {self.kind})")


def baseline_path(directory: str | os.PathLike, variant: str) -> Path:
    return Path(directory) / f"{variant}.json"


def read_baseline(path: str | os.PathLike) -> dict | None:
    """The baseline at ``path``, or None when there is none. A broken file is an error."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: baseline is not valid JSON ({exc}); restore it from git "
                            "or rewrite it with --navya-update-baselines") from exc
    if not isinstance(data, dict) or "figures" not in data or "provenance" not in data:
        raise BaselineError(f"{path}: baseline lacks 'figures'/'provenance'; rewrite it with "
                            "--navya-update-baselines")
    return data


def write_baseline(path: str | os.PathLike, variant: str, figures: Mapping[str, Any],
                   provenance: Mapping[str, Any]) -> None:
    """Write a baseline atomically (only ever called on an explicit update)."""
    payload = {"variant": variant, "figures": dict(figures), "provenance": dict(provenance)}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False,
                                       default=_json_default) + "\n")


def _json_default(value: Any):
    raise TypeError(f"baseline value {value!r} is not JSON-serializable")


def _deviates(old: float, new: float, tol: float, kind: str) -> bool:
    if old is None or new is None:
        return old is not new
    if kind == "rel":
        return abs(new - old) > tol * max(abs(old), 1e-12)
    return abs(new - old) > tol


def compare_baseline(variant: str, baseline: Mapping, figures: Mapping[str, Any],
                     tolerances: Mapping[str, float]) -> list[Deviation]:
    """Deviations of ``figures`` from ``baseline['figures']`` beyond ``tolerances``."""
    old = baseline["figures"]
    out = []
    for name, tol_key in BASELINE_FIELDS.items():
        if name not in old or name not in figures:
            continue
        kind = "rel" if tol_key.endswith("_rel") else "abs"
        tol = tolerances[tol_key]
        if _deviates(old[name], figures[name], tol, kind):
            out.append(Deviation(variant, name, old[name], figures[name], tol, kind))
    old_ap, new_ap = old.get("ap", {}), figures.get("ap", {})
    for cls in sorted(set(old_ap) | set(new_ap)):
        o, n = old_ap.get(cls), new_ap.get(cls)
        if o is None and n is None:
            continue
        if o is None or n is None or _deviates(o, n, tolerances["ap_abs"], "abs"):
            out.append(Deviation(variant, f"ap[{cls}]", o, n, tolerances["ap_abs"], "abs"))
    return out


def provenance_mismatch(baseline: Mapping, provenance: Mapping[str, Any]) -> list[str]:
    """Provenance fields that differ (a baseline of another checkpoint or data set)."""
    old = baseline["provenance"]
    return [f"{k}: baseline {old.get(k)!r}, this run {provenance.get(k)!r}"
            for k in PROVENANCE_FIELDS if old.get(k) != provenance.get(k)]
