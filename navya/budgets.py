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

    [classes.avx2.variants.int8-ptq]  # per CPU class (navya.cpuclass): overrides the above
    min_speedup = 1.5             # on that class only

    required_classes = ["avx512_vnni"]  # optional: a run on another class is a usage error

A budget holds on every class unless a class overrides it. A budget that only some classes set
(the figures that depend on the CPU's kernels: INT8 and half-precision speed and accuracy) is
``NO BUDGET FOR CLASS <class>`` on the others: loud, with the measured value, never a failure.

Unknown sections, keys, variants or classes are errors that name the file and the key.

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
from navya.cpuclass import CLASSES
from navya.errors import NavyaError
from navya.figures import BASELINE_FIGURES, BUDGET_KEYS, BUDGETS

DEFAULT_TOLERANCES: dict[str, float] = {
    "map_abs": 0.002,  # mAP (0..1) absolute
    "ap_abs": 0.01,  # per-class AP (0..1) absolute
    "size_rel": 0.01,  # serialized size, relative
    "macs_rel": 0.0,  # MACs, relative (exact)
    "sparsity_abs": 1e-4,  # sparsity fractions, absolute
    "params_rel": 0.0,  # parameter counts, relative (exact)
}

#: What a baseline's figures depend on: a baseline whose provenance differs in any of these is
#: not comparable (another checkpoint, data set, split, image count, variant config or, for a
#: variant whose figures depend on the CPU's kernels, CPU class).
PROVENANCE_FIELDS = ("checkpoint_sha256", "data_fingerprint", "eval_images", "split", "config",
                     "cpu_class")


class BudgetError(NavyaError, ValueError):
    """A budgets file that cannot be used; the message names the file and the problem."""


class BaselineError(NavyaError, ValueError):
    """A baseline file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Budgets:
    """A budgets file: per-variant budgets, their per-CPU-class overrides (``classes``: class
    -> variant -> budgets), the classes a run must be on (``required_classes``; empty: any),
    and the baseline tolerances (``trained``: those of variants whose transform trains, tagged
    ``trains``, whose figures move with the CPU's kernels and the seed)."""

    path: Path | None
    variants: dict[str, dict[str, float]]
    tolerances: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    trained_tolerances: dict[str, float] | None = None
    classes: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    required_classes: tuple[str, ...] = ()

    def for_variant(self, name: str, cpu_class: str | None = None) -> dict[str, float]:
        """The variant's budgets on ``cpu_class``: the default section's, overridden by the
        class's (None: the default section's alone)."""
        out = dict(self.variants.get(name, {}))
        if cpu_class is not None:
            out.update(self.classes.get(cpu_class, {}).get(name, {}))
        return out

    def classes_with(self, name: str, key: str) -> list[str]:
        """The classes whose own section sets budget ``key`` of variant ``name``."""
        return [c for c, table in self.classes.items() if key in table.get(name, {})]

    def lookup(self, name: str, key: str, cpu_class: str | None) -> tuple[float | None, str]:
        """``(limit, where)`` of budget ``key`` of variant ``name`` on ``cpu_class``: ``where``
        is ``"class"`` (its class section), ``"default"``, ``"no budget for class"`` (only
        other classes set it: :meth:`classes_with`) or ``"no budget"``."""
        own = self.classes.get(cpu_class, {}).get(name, {}) if cpu_class is not None else {}
        if key in own:
            return own[key], "class"
        if key in self.variants.get(name, {}):
            return self.variants[name][key], "default"
        if self.classes_with(name, key):
            return None, "no budget for class"
        return None, "no budget"

    def tolerances_for(self, trains: bool) -> dict[str, float]:
        if trains and self.trained_tolerances is not None:
            return self.trained_tolerances
        return self.tolerances


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


#: The meaningful range of each budget: (lowest, lowest allowed?, highest, highest allowed?),
#: from :data:`navya.figures.BUDGETS`.
BUDGET_RANGES: dict[str, tuple[float, bool, float, bool]] = {
    k: (f.low, f.low_ok, f.high, f.high_ok) for k, f in BUDGETS.items()}


def _range_text(low: float, low_ok: bool, high: float, high_ok: bool) -> str:
    left = f"{'>=' if low_ok else '>'} {low:g}"
    return left + ("" if math.isinf(high) else f" and {'<=' if high_ok else '<'} {high:g}")


def _number(path: Path, where: str, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value)):
        raise BudgetError(f"{path}: {where} must be a finite number, got {value!r}")
    return float(value)


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BudgetError(f"{path}: budgets file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise BudgetError(f"{path}: not valid TOML: {exc}") from exc


def budget_models(path: str | os.PathLike) -> list[str]:
    """The models with a section of their own (``[models.<name>]``) in a budgets file."""
    path = Path(path)
    models = _read_toml(path).get("models", {})
    if not isinstance(models, dict):
        raise BudgetError(f"{path}: [models] must hold tables [models.<name>]")
    return list(models)


def load_budgets(path: str | os.PathLike, known_variants: Iterable[str] | None = None, *,
                 require: Iterable[str] = (), model: str | None = None) -> Budgets:
    """Read and validate a budgets file. ``known_variants`` (the registry) makes an entry for an
    unregistered variant an error; every variant in ``require`` (the run's variants besides the
    reference) must have at least one budget: a run that gates nothing is an error, not a
    green run. Each budget must lie in its meaningful range (:data:`BUDGET_RANGES`).

    ``model``: the budgets of a model's own section ``[models.<model>]`` (its ``variants``,
    and tolerances that default to the file's); None: the top-level section, the default
    model's. Every model section is validated either way."""
    path = Path(path)
    data = _read_toml(path)
    unknown = set(data) - {"tolerances", "trained_tolerances", "variants", "models", "classes",
                           "required_classes"}
    if unknown:
        raise BudgetError(f"{path}: unknown section(s) {sorted(unknown)}; expected "
                          "[tolerances], [trained_tolerances], [variants.<name>], "
                          "[classes.<cpu class>.variants.<name>], required_classes and "
                          "[models.<model>...]")
    top = _section(path, "", data, known_variants, DEFAULT_TOLERANCES, None, ())
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise BudgetError(f"{path}: [models] must hold tables [models.<name>]")
    sections = {}
    for name, table in models.items():
        if not isinstance(table, dict):
            raise BudgetError(f"{path}: [models.{name}] must be a table")
        extra = set(table) - {"tolerances", "trained_tolerances", "variants", "classes",
                              "required_classes"}
        if extra:
            raise BudgetError(f"{path}: unknown section(s) {sorted(extra)} in [models.{name}]; "
                              "expected tolerances, trained_tolerances, variants.<name>, "
                              "classes.<cpu class>.variants.<name> and required_classes")
        sections[name] = _section(path, f"models.{name}.", table, known_variants,
                                  top.tolerances, top.trained_tolerances,
                                  top.required_classes)
    if model is None:
        chosen = top
    elif model in sections:
        chosen = sections[model]
    else:
        raise BudgetError(f"{path}: no section [models.{model}] (budgets of model {model!r}); "
                          f"sections: {', '.join(sections) or 'none'}")
    ungated = [name for name in require if not chosen.variants.get(name)
               and not any(table.get(name) for table in chosen.classes.values())]
    if ungated:
        where = f"[models.{model}.variants.<name>]" if model else "[variants.<name>]"
        raise BudgetError(f"{path}: no budget for variant(s) {', '.join(ungated)}"
                          f"{f' of model {model}' if model else ''}: this run would gate "
                          f"nothing for them; add a {where} table with at least one of "
                          f"{', '.join(BUDGET_KEYS)}")
    return chosen


def _section(path: Path, prefix: str, data: Mapping, known_variants: Iterable[str] | None,
             default_tolerances: Mapping[str, float],
             default_trained: Mapping[str, float] | None,
             default_required: tuple[str, ...]) -> Budgets:
    tolerances = _tolerances(path, f"{prefix}tolerances", data.get("tolerances", {}),
                             default_tolerances)
    trained = None if default_trained is None else dict(default_trained)
    if "trained_tolerances" in data:
        trained = _tolerances(path, f"{prefix}trained_tolerances", data["trained_tolerances"],
                              tolerances)
    required = default_required
    if "required_classes" in data:
        value = data["required_classes"]
        if (not isinstance(value, list) or not value
                or not all(isinstance(c, str) for c in value)):
            raise BudgetError(f"{path}: {prefix}required_classes must be a non-empty list of "
                              f"CPU class names, got {value!r}")
        for cls in value:
            if cls not in CLASSES:
                raise BudgetError(f"{path}: {prefix}required_classes: unknown CPU class "
                                  f"{cls!r}; known: {', '.join(CLASSES)}")
        required = tuple(value)
    classes_table = data.get("classes", {})
    if not isinstance(classes_table, dict):
        raise BudgetError(f"{path}: [{prefix}classes] must hold tables "
                          f"[{prefix}classes.<cpu class>.variants.<name>]")
    classes: dict[str, dict[str, dict[str, float]]] = {}
    for cls, table in classes_table.items():
        if cls not in CLASSES:
            raise BudgetError(f"{path}: [{prefix}classes.{cls}]: unknown CPU class {cls!r}; "
                              f"known: {', '.join(CLASSES)}")
        if not isinstance(table, dict) or set(table) - {"variants"}:
            raise BudgetError(f"{path}: [{prefix}classes.{cls}] holds only "
                              f"[{prefix}classes.{cls}.variants.<name>] tables")
        classes[cls] = _variant_tables(path, f"{prefix}classes.{cls}.", table,
                                       known_variants)
    variants = _variant_tables(path, prefix, data, known_variants)
    return Budgets(path, variants, tolerances, trained, classes, required)


def _variant_tables(path: Path, prefix: str, data: Mapping,
                    known_variants: Iterable[str] | None) -> dict[str, dict[str, float]]:
    """The validated ``[<prefix>variants.<name>]`` tables of ``data``."""
    known = set(known_variants) if known_variants is not None else None
    variants: dict[str, dict[str, float]] = {}
    if not isinstance(data.get("variants", {}), dict):
        raise BudgetError(f"{path}: [{prefix}variants] must hold tables "
                          f"[{prefix}variants.<name>]")
    for name, entry in data.get("variants", {}).items():
        where = f"{prefix}variants.{name}"
        if known is not None and name not in known:
            raise BudgetError(f"{path}: budgets for unknown variant {name!r} ([{where}]); "
                              f"registered: {', '.join(sorted(known))}")
        if not isinstance(entry, dict):
            raise BudgetError(f"{path}: [{where}] must be a table")
        checked = {}
        for key, value in entry.items():
            if key not in BUDGET_KEYS:
                raise BudgetError(f"{path}: {where}: unknown budget {key!r}; known: "
                                  f"{', '.join(BUDGET_KEYS)}")
            checked[key] = _number(path, f"{where}.{key}", value)
            low, low_ok, high, high_ok = BUDGET_RANGES[key]
            if not ((checked[key] >= low if low_ok else checked[key] > low)
                    and (checked[key] <= high if high_ok else checked[key] < high)):
                raise BudgetError(f"{path}: {where}.{key} = {value!r} is outside its "
                                  f"meaningful range ({_range_text(*BUDGET_RANGES[key])})")
        variants[name] = checked
    return variants


def _tolerances(path: Path, section: str, table: Any, defaults: Mapping[str, float]
                ) -> dict[str, float]:
    if not isinstance(table, dict):
        raise BudgetError(f"{path}: [{section}] must be a table")
    out = dict(defaults)
    for key, value in table.items():
        if key not in DEFAULT_TOLERANCES:
            raise BudgetError(f"{path}: unknown tolerance {key!r} in [{section}]; known: "
                              f"{', '.join(DEFAULT_TOLERANCES)}")
        out[key] = _number(path, f"{section}.{key}", value)
        if out[key] < 0:
            raise BudgetError(f"{path}: {section}.{key} must be >= 0")
    return out


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


#: Where the baselines of kernel-dependent variants live, one folder per CPU class:
#: ``<baselines>/classes/<class>/<variant>.json``.
CLASSES_SUBDIR = "classes"


def baseline_path(directory: str | os.PathLike, variant: str,
                  cpu_class: str | None = None) -> Path:
    """A variant's baseline file: ``<directory>/<variant>.json``, or with ``cpu_class`` (a
    variant whose figures depend on the CPU's kernels)
    ``<directory>/classes/<cpu_class>/<variant>.json``."""
    if cpu_class is None:
        return Path(directory) / f"{variant}.json"
    return Path(directory) / CLASSES_SUBDIR / cpu_class / f"{variant}.json"


def class_baselines(directory: str | os.PathLike, variant: str) -> list[str]:
    """The CPU classes that have a baseline of ``variant`` in ``directory``, sorted."""
    root = Path(directory) / CLASSES_SUBDIR
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / f"{variant}.json").is_file())


def _read_json(path: Path, what: str, fix: str) -> Any:
    """The JSON at ``path`` (None when there is no file); unreadable JSON is a
    :class:`BaselineError` naming the file, the problem and ``fix``."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: {what} is not valid JSON ({exc}); restore it from git "
                            f"or {fix}") from exc


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def read_baseline(path: str | os.PathLike, variant: str | None = None) -> dict | None:
    """The baseline at ``path``, or None when there is none. A broken file is a
    :class:`BaselineError` naming the file and the key: invalid JSON, a missing section or
    guarded figure (every key of :data:`BASELINE_FIGURES`, ``map_voc07`` and ``ap``), a value
    of the wrong type, or (with ``variant``) a file of another variant. (A provenance that
    lacks a field of :data:`PROVENANCE_FIELDS` makes the baseline not comparable, loudly.)"""
    path = Path(path)
    fix = "rewrite it with --navya-update-baselines or restore it from git"
    data = _read_json(path, "baseline", "rewrite it with --navya-update-baselines")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BaselineError(f"{path}: a baseline is a JSON object, got {type(data).__name__}; "
                            f"{fix}")
    for section in ("figures", "provenance"):
        if not isinstance(data.get(section), dict):
            raise BaselineError(f"{path}: baseline key {section!r} must be an object, got "
                                f"{data.get(section)!r}; {fix}")
    if variant is not None and data.get("variant") != variant:
        raise BaselineError(f"{path}: baseline of variant {data.get('variant')!r}, expected "
                            f"{variant!r}; {fix}")
    figures = data["figures"]
    for key in (*BASELINE_FIGURES, "map_voc07"):
        if key not in figures:
            raise BaselineError(f"{path}: baseline lacks the guarded figure figures.{key}; "
                                f"{fix}")
        if not _is_number(figures[key]):
            raise BaselineError(f"{path}: figures.{key} must be a finite number, got "
                                f"{figures[key]!r}; {fix}")
    ap = figures.get("ap")
    if not isinstance(ap, dict) or not ap:
        raise BaselineError(f"{path}: figures.ap must be an object of per-class AP, got "
                            f"{ap!r}; {fix}")
    for cls, value in ap.items():
        if value is not None and not _is_number(value):
            raise BaselineError(f"{path}: figures.ap.{cls} must be a number or null, got "
                                f"{value!r}; {fix}")
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
    for name, tol_key in BASELINE_FIGURES.items():
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
