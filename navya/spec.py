"""What a run selects: its models, their variants and its cases, from the command line.

Pytest-free: :class:`Selection` reads option values through a callable (the pytest plugin
passes ``config.getoption``) and raises :class:`SpecError` for a bad selection, which the
plugin reports as a usage error before anything is collected. A case is one (model, variant);
its id is the variant's name for the first model and :class:`~navya.verdicts.CaseId`
(``model:variant``) for the others (:meth:`Selection.case_id`, :meth:`Selection.lookup`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from navya.errors import NavyaError
from navya.verdicts import CaseId

__all__ = ["DEFAULT_DATA", "DEFAULT_EVAL_IMAGES", "UPDATE_OVERRIDES", "Selection", "SpecError",
           "check_inputs", "check_options", "parse_slowdowns", "thread_counts", "update_despite"]

DEFAULT_DATA = "data/synth"  # relative to the rootdir; generated on first use
DEFAULT_EVAL_IMAGES = 500
#: What ``--navya-update-despite`` may name: a refresh is otherwise refused when the run left a
#: selected variant out or had a failing/erroring test ("incomplete"), or when its provenance
#: differs from the baselines' in one of the others.
UPDATE_OVERRIDES = ("incomplete", "checkpoint_sha256", "data_fingerprint", "eval_images", "split")


class SpecError(NavyaError, ValueError):
    """A selection or option value that cannot run (the message names the option)."""


def parse_slowdowns(spec: str | None) -> dict[str, Any] | None:
    """``--navya-inject-slowdown``: ``VARIANT:network:F`` or ``postprocess:F`` items,
    comma-separated, to the ``inject`` mapping of :class:`navya.bench.BenchSettings`."""
    if not spec:
        return None
    out: dict[str, Any] = {"network": {}}
    for item in spec.split(","):
        parts = item.strip().split(":")
        try:
            if len(parts) == 3 and parts[1] == "network":
                out["network"][parts[0]] = float(parts[2])
                continue
            if len(parts) == 2 and parts[0] == "postprocess":
                out["postprocess"] = float(parts[1])
                continue
        except ValueError:
            pass
        raise SpecError(f"--navya-inject-slowdown: {item!r} is not "
                                "'VARIANT:network:FRACTION' or 'postprocess:FRACTION'")
    return out


def update_despite(spec: str) -> set[str]:
    names = {s.strip() for s in (spec or "").split(",") if s.strip()}
    unknown = names - set(UPDATE_OVERRIDES)
    if unknown:
        raise SpecError(f"--navya-update-despite: unknown {sorted(unknown)}; known: "
                                f"{', '.join(UPDATE_OVERRIDES)}")
    return names


def thread_counts(spec: str) -> list[int]:
    from navya.runtime import usable_cpus

    out = []
    for part in spec.split(","):
        part = part.strip()
        try:
            n = usable_cpus() if part == "all" else int(part)
        except ValueError:
            raise SpecError(f"--navya-threads: {part!r} is not a thread count "
                                    "(an integer or 'all')") from None
        if n < 1:
            raise SpecError(f"--navya-threads: thread counts must be >= 1, got {part}")
        if n not in out:
            out.append(n)
    return out



def check_options(opt: Callable[[str], Any]) -> None:
    """The option values of a run, each checked before anything is collected or built
    (a :class:`SpecError` names the option)."""
    parse_slowdowns(opt("navya_inject_slowdown"))  # a bad spec: usage error now
    record = opt("navya_record_speed")
    if record and record < 3:
        raise SpecError(f"--navya-record-speed: at least 3 runs give a spread, got {record}")
    for option, low in (("eval_images", 1), ("rounds", 3), ("speed_rounds", 3)):
        value = opt(f"navya_{option}")
        if value < low:
            raise SpecError(f"--navya-{option.replace('_', '-')}: must be >= {low}, got "
                            f"{value}")
    confirm = opt("navya_speed_confirm")
    if confirm is not None and (confirm < 1 or confirm % 2 == 0):
        raise SpecError(f"--navya-speed-confirm: an odd number of runs >= 1 (the median is "
                        f"one of them), got {confirm}")
    thread_counts(opt("navya_threads"))  # a bad spec: usage error now
    workers = build_workers_spec(opt)
    if workers != "auto" and not workers.isdigit():
        raise SpecError(f"--navya-build-workers (or ${BUILD_WORKERS_ENV}): 'auto' or a number "
                        f"of worker processes (0 or 1: none), got {workers!r}")
    update_despite(opt("navya_update_despite"))
    if opt("navya_shard") and opt("navya_update_baselines"):
        raise SpecError("--navya-update-baselines refreshes from a complete run, and a shard "
                        "is part of one: refresh from an unsharded run")


#: the default of ``--navya-build-workers`` where the option is not given
BUILD_WORKERS_ENV = "NAVYA_BUILD_WORKERS"


def build_workers_spec(opt: Callable[[str], Any]) -> str:
    """``--navya-build-workers``, else ``$NAVYA_BUILD_WORKERS``, else ``auto``."""
    value = opt("navya_build_workers") or os.environ.get(BUILD_WORKERS_ENV) or "auto"
    return str(value).strip()


class Selection:
    """The models, variants and cases of one run. ``opt(name)``: an option's value (pytest's
    ``config.getoption``); ``notes``: where to say what is left out and why;
    ``project_variants``: a callable returning iterables of the project's own variants (the
    ``pytest_navya_variants`` hook)."""

    def __init__(self, opt: Callable[[str], Any], rootdir: Path, *,
                 notes: list[str] | None = None,
                 project_variants: Callable[[], Iterable[Any]] | None = None):
        self.opt = opt
        self.rootdir = Path(rootdir)
        self.notes: list[str] = [] if notes is None else notes
        self._project_hook = project_variants
        self._selected: list[str] | None = None
        self._models: list[str] | None = None
        self._model_variants: dict[str, list[str]] = {}
        #: case id -> (model, variant), in run order (see cases)
        self._cases: dict[str, tuple[str, str]] | None = None
        self._project_variants: list[str] = []
        #: every case of the run, and those this shard reports (all without --navya-shard)
        self.all_cases: list[str] = []
        self.owned: list[str] = []

    def _path_opt(self, name: str, default: str) -> Path:
        value = self.opt(name)
        return Path(value) if value else self.rootdir / default

    def register_project_variants(self) -> None:
        from navya.catalogue import Variant, register

        for result in (self._project_hook() if self._project_hook else ()):
            for variant in result or ():
                if not isinstance(variant, Variant):
                    raise SpecError(
                        f"pytest_navya_variants returned {variant!r}, not a "
                        "navya.catalogue.Variant")
                register(variant)
                self._project_variants.append(variant.name)

    def unregister_project_variants(self) -> None:
        from navya.catalogue import unregister

        for name in self._project_variants:
            unregister(name)
        self._project_variants.clear()

    def selected_variants(self) -> list[str]:
        if self._selected is None:
            from navya.catalogue import variant_names

            spec = self.opt("navya_variants")
            known = variant_names()
            if spec is None:
                slow = set(variant_names("slow"))
                names = [n for n in known if n not in slow]
                if slow:
                    self.notes.append(
                        f"not in this run (tagged slow; --navya-variants all runs them): "
                        f"{', '.join(n for n in known if n in slow)}")
            elif spec.strip() == "all":
                names = known
            else:
                names = [s.strip() for s in spec.split(",") if s.strip()]
                unknown = [n for n in names if n not in known]
                if unknown:
                    raise SpecError(
                        f"--navya-variants: unknown variant(s) {', '.join(unknown)}; known: "
                        f"{', '.join(known)}")
            if not names:
                raise SpecError(f"--navya-variants {spec!r} selects no variant: the "
                                        "run would measure and gate nothing")
            self._selected = names
        return self._selected

    def _budgets_path(self) -> Path:
        return self._path_opt("navya_budgets", "benchmarks/budgets.toml")

    def selected_models(self) -> list[str]:
        """The models this run gates (``--navya-models``), the default model first. By default
        every model with a shipped checkpoint and a budgets section (one without is named in a
        note); with ``--navya-checkpoint``, the default model alone, with that checkpoint."""
        if self._models is None:
            from navya.budgets import BudgetError, budget_models
            from navya.catalogue import DEFAULT_MODEL, MODELS

            spec = self.opt("navya_models")
            if spec is None:
                if self.opt("navya_checkpoint"):
                    names = [DEFAULT_MODEL]
                else:
                    try:
                        sections = budget_models(self._budgets_path())
                    except BudgetError:
                        sections = []  # validate() reports the file's problem
                    names = []
                    for name, model in MODELS.items():
                        if name == DEFAULT_MODEL:
                            names.append(name)
                        elif not model.checkpoint_path.is_file():
                            self.notes.append(f"MODEL NOT GATED: {name}: no checkpoint "
                                              f"{model.checkpoint_path}")
                        elif name not in sections:
                            self.notes.append(f"MODEL NOT GATED: {name}: no [models.{name}] "
                                              f"section in {self._budgets_path()}")
                        elif model.data and model.data_folder(self.rootdir) is None:
                            self.notes.append(f"MODEL NOT GATED: {name}: "
                                              + self._missing_data(model))
                        else:
                            names.append(name)
            else:
                names = (list(MODELS) if spec.strip() == "all" else
                         list(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip())))
                unknown = [n for n in names if n not in MODELS]
                if unknown or not names:
                    raise SpecError(f"--navya-models: unknown model(s) "
                                            f"{', '.join(unknown) or repr(spec)}; known: "
                                            f"{', '.join(MODELS)}")
                names.sort(key=list(MODELS).index)
                absent = [MODELS[n] for n in names
                          if MODELS[n].data and MODELS[n].data_folder(self.rootdir) is None]
                if absent:
                    raise SpecError(f"--navya-models names {absent[0].name}, and "
                                            + self._missing_data(absent[0]))
                if self.opt("navya_checkpoint") and len(names) > 1:
                    raise SpecError(f"--navya-checkpoint gates one model, and "
                                            f"--navya-models names {len(names)}: "
                                            f"{', '.join(names)}")
            self._models = names
        return self._models

    def _missing_data(self, model) -> str:
        from navya.data.real import real_set

        return real_set(model.data).missing(self.rootdir)

    def model_variants(self, model: str) -> list[str]:
        """The variants ``model`` runs: the selection (``--navya-variants``) for the default
        model; for another, the selected variants its budgets section gates (fp32 always; those
        tagged ``slow`` only when named or with ``all``)."""
        from navya.bench import REFERENCE
        from navya.budgets import load_budgets
        from navya.catalogue import DEFAULT_MODEL, MODELS, variant_names

        if model in self._model_variants:
            return self._model_variants[model]
        from navya.catalogue import get_variant

        selected = self.selected_variants()
        if model == DEFAULT_MODEL:
            names = [n for n in selected if get_variant(n).fits(model)]
            left = [n for n in selected if n not in names]
            if left and self.opt("navya_variants"):
                self.notes.append(f"{model}: not run for {', '.join(left)} (variants of "
                                  "another model)")
            self._model_variants[model] = names
            return names
        gated = load_budgets(self._budgets_path(), variant_names(), model=model).variants
        spec = (self.opt("navya_variants") or "").strip()
        opt_in = set() if spec else set(MODELS[model].opt_in)
        slow = set() if spec else set(variant_names("slow")) | opt_in
        known = [n for n in variant_names()
                 if (n == REFERENCE or n in gated) and get_variant(n).fits(model)]
        if spec and spec != "all":
            names = [n for n in known if n in selected]
            left = [n for n in selected if n not in gated and n != REFERENCE]
            if left:
                self.notes.append(f"{model}: not gated for {', '.join(left)} (no budget in "
                                  f"[models.{model}.variants] of {self._budgets_path()})")
        else:
            names = [n for n in known if n not in slow]
            left = [n for n in known if n in opt_in]
            if left:
                self.notes.append(f"{model}: not in this run (opt-in for this model: name them "
                                  f"in --navya-variants, or all): {', '.join(left)}")
        self._model_variants[model] = names
        return names

    def cases(self) -> list[str]:
        """Every (model, variant) of the run as a test id: the first model's by the variant's
        name alone (``int8-ptq``), another model's as ``<model>:<variant>``."""
        if self._cases is None:
            models = self.selected_models()
            cases = {self.case_id(model, variant): (model, variant)
                     for model in models for variant in self.model_variants(model)}
            self.all_cases = list(cases)
            self.owned = list(cases)
            part = self.shard()
            if part is not None:
                keep, self.owned = self._shard_cases(part, models)
                cases = {c: cases[c] for c in keep}
            self._cases = cases
        return list(self._cases)

    def shard(self) -> tuple[int, int] | None:
        """``--navya-shard K/N`` as ``(K, N)``; None: the whole run."""
        from navya.sharding import MergeError, parse_shard

        spec = self.opt("navya_shard")
        if not spec:
            return None
        try:
            return parse_shard(spec)
        except MergeError as exc:
            raise SpecError(str(exc)) from None

    def _shard_cases(self, part: tuple[int, int], models: list[str]
                     ) -> tuple[list[str], list[str]]:
        """This shard's cases (each model's reference in every shard: the others are measured
        against it) and the cases it owns (reports; the references: shard 1), balanced by the
        seconds each case took in the run of ``--navya-shard-costs``."""
        from navya.bench import REFERENCE
        from navya.sharding import assign, costs_from_run

        k, n = part
        always = {self.case_id(m, REFERENCE) for m in models
                  if REFERENCE in self.model_variants(m)}
        costs_file = self.opt("navya_shard_costs") or Path(self.opt("navya_report_dir"),
                                                            "run.json")
        keep = assign(self.all_cases, n, costs_from_run(costs_file), always=always)[k - 1]
        return keep, [c for c in keep if c not in always or k == 1]

    def model_of(self, case_id: str) -> str:
        """The model of a case id."""
        return self.lookup(case_id)[0]

    def rebuild_spec(self) -> bool | list[str]:
        """``--navya-rebuild``: True (all), the named variants, or False."""
        from navya.catalogue import variant_names

        spec = self.opt("navya_rebuild")
        if spec is None:
            return False
        if spec.strip() == "all":
            return True
        names = [s.strip() for s in spec.split(",") if s.strip()]
        unknown = [n for n in names if n not in variant_names()]
        if unknown or not names:
            raise SpecError(f"--navya-rebuild: 'all' or variant names; unknown "
                                    f"{', '.join(unknown) or repr(spec)}; known: "
                                    f"{', '.join(variant_names())}")
        return names

    def cache_dir(self) -> Path | None:
        """The cache folder (None: caching off)."""
        from navya._cache import DEFAULT_DIR, ENV_DIR

        value = self.opt("navya_cache") or os.environ.get(ENV_DIR) or ""
        if value.strip().lower() == "off":
            return None
        return Path(value) if value else self.rootdir / DEFAULT_DIR

    def case_id(self, model: str, variant: str) -> str:
        """The id of a case: the variant's name for the first model, ``model:variant``
        (:class:`~navya.verdicts.CaseId`) for another."""
        models = self.selected_models()
        return variant if model == models[0] else str(CaseId(model, variant))

    def lookup(self, case_id: str) -> tuple[str, str]:
        """``(model, variant)`` of a case id of this run."""
        self.cases()
        try:
            return self._cases[case_id]
        except KeyError:
            raise SpecError(f"{case_id!r} is not a case of this run") from None


def check_inputs(sel: Selection) -> None:
    """Before any test runs: the budgets gate every selected variant within meaningful
    ranges, and every baseline file is of a known variant and well formed (each error
    names the file and the key)."""
    from navya.bench import REFERENCE
    from navya.budgets import (
        CLASSES_SUBDIR,
        BaselineError,
        BudgetError,
        load_budgets,
        read_baseline,
    )
    from navya.catalogue import DEFAULT_MODEL, variant_names
    from navya.cpuclass import kernel_class
    from navya.runtime import cpu_class_mismatch

    mismatch = cpu_class_mismatch()
    if mismatch:  # every class-keyed figure would be compared with another class's
        raise SpecError(f"navya: {mismatch}")
    base = sel._path_opt("navya_baselines", "benchmarks/baselines")
    folders = []
    here = kernel_class()
    for model in sel.selected_models():
        own = model != DEFAULT_MODEL
        try:
            budgets = load_budgets(
                sel._budgets_path(), variant_names(), model=model if own else None,
                require=[v for v in sel.model_variants(model) if v != REFERENCE])
        except BudgetError as exc:
            raise SpecError(str(exc)) from None
        if budgets.required_classes and here not in budgets.required_classes:
            raise SpecError(
                f"{budgets.path}: the budgets{f' of model {model}' if own else ''} require "
                f"CPU class {' or '.join(budgets.required_classes)} (required_classes), "
                f"and this machine is {here}: its verdict would say nothing about the "
                f"deployment target. Run on a runner of class "
                f"{' or '.join(budgets.required_classes)} (`navya doctor` prints a "
                f"machine's class)")
        folders.append(base / model if own else base)
    known = set(variant_names())
    paths = [p for folder in folders if folder.is_dir()
             for p in (sorted(folder.glob("*.json"))
                       + sorted(folder.glob(f"{CLASSES_SUBDIR}/*/*.json")))]
    for path in paths:
        if path.stem not in known:
            raise SpecError(f"{path}: a baseline for unknown variant "
                                    f"{path.stem!r}; remove it or register the variant "
                                    f"(known: {', '.join(sorted(known))})")
        try:
            read_baseline(path, path.stem)
        except BaselineError as exc:
            raise SpecError(str(exc)) from None
