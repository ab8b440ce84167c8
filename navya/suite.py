"""pytest plugin behind ``pytest benchmarks/``: options, hooks, fixtures, and the translation of
the engine's verdicts into pytest outcomes.

Loaded by the repository's ``conftest.py`` (``pytest_plugins = ["navya.suite"]``) and, for a
project that installs navya, through the ``pytest11`` entry point of the same name. All the
measuring is :class:`navya.bench.Bench`'s; this module only:

- adds the ``--navya-*`` options and the ``navya_budget`` marker;
- parametrizes navya's own benchmark tests (those that request the ``navya_suite`` fixture)
  over the selected variants (``variant``) and thread counts (``threads``), nothing else;
- lets a project add variants from its ``conftest.py`` (the ``pytest_navya_variants`` hook);
- turns each :class:`~navya.bench.Verdict` into a pass, a failure or a loud skip;
- releases a variant's models once its last test has run (memory stays flat);
- prints the summary and writes the reports at the end.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from navya.bench import Bench, Verdict

DEFAULT_DATA = "data/synth"  # relative to the rootdir; generated on first use
DEFAULT_EVAL_IMAGES = 500
#: What ``--navya-update-despite`` may name: a refresh is otherwise refused when the run left a
#: selected variant out or had a failing/erroring test ("incomplete"), or when its provenance
#: differs from the baselines' in one of the others.
UPDATE_OVERRIDES = ("incomplete", "checkpoint_sha256", "data_fingerprint", "eval_images", "split")
STATE_KEY = pytest.StashKey["SuiteSession"]()


class NavyaHookSpecs:
    """Hooks a project can implement in its ``conftest.py``."""

    @pytest.hookspec
    def pytest_navya_variants(self, config: pytest.Config) -> Any:
        """Return an iterable of :class:`navya.catalogue.Variant` to measure beside the
        built-in ones (registered for this session, removed at its end). The config's type
        selects the transform: register one with
        :func:`navya.compress.base.register_transform`."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(NavyaHookSpecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("navya", "navya regression suite (pytest benchmarks/)")
    g.addoption("--navya-data", default=None,
                help=f"VOC root to evaluate on (default: the embedded synthetic set, generated "
                     f"into <rootdir>/{DEFAULT_DATA} on first use)")
    g.addoption("--navya-checkpoint", default=None,
                help="fp32 reference checkpoint: gates this one model (default: the shipped "
                     "checkpoint of every model of --navya-models)")
    g.addoption("--navya-models", default=None,
                help="comma-separated models, or 'all' (default: every model with a shipped "
                     "checkpoint and a budgets section; with --navya-checkpoint, the default "
                     "model only): mobilenet_v2 (the default), mobilenet_v3_large")
    g.addoption("--navya-variants", default=None,
                help="comma-separated variant names, or 'all' (default: every registered "
                     "variant not tagged 'slow')")
    g.addoption("--navya-threads", default="1,all",
                help="thread counts for the latency benchmarks, e.g. '1,all' (default)")
    g.addoption("--navya-eval-images", type=int, default=DEFAULT_EVAL_IMAGES,
                help="evaluate mAP on the first N images of the split (default 500)")
    g.addoption("--navya-split", default="val", help="evaluation split (default val)")
    g.addoption("--navya-size-policy", default="image", choices=["image", "annotation", "error"],
                help="a missing, zero or wrong <size> in an annotation: use the image's own "
                     "size (default, one warning), trust the XML, or fail")
    g.addoption("--navya-rounds", type=int, default=30,
                help="timed rounds per latency measurement (default 30)")
    g.addoption("--navya-report-dir", default="reports/latest",
                help="where summary.csv, summary.md and tradeoff.png go")
    g.addoption("--navya-budgets", default=None,
                help="budgets file (default <rootdir>/benchmarks/budgets.toml)")
    g.addoption("--navya-baselines", default=None,
                help="baselines folder (default <rootdir>/benchmarks/baselines)")
    g.addoption("--navya-update-baselines", action="store_true",
                help="rewrite the deterministic baselines from this run (explicit refresh); "
                     "written together at the end, and only from a complete, comparable run")
    g.addoption("--navya-update-despite", default="", metavar="WHAT",
                help="refresh baselines even though the run differs from them in WHAT "
                     f"(comma-separated: {', '.join(UPDATE_OVERRIDES)})")
    g.addoption("--navya-no-rss", action="store_true",
                help="skip the per-variant subprocess peak-RSS measurement")
    g.addoption("--navya-speed-rounds", type=int, default=60,
                help="timed ABBA pairs per fresh-process speed run (default 60; a speed "
                     "baseline recorded with another value is not comparable)")
    g.addoption("--navya-speed-confirm", type=int, default=None, metavar="N",
                help="fresh-process runs a speed figure outside its tolerance is judged on, "
                     "the first included (default 5: the median of five)")
    g.addoption("--navya-record-speed", type=int, default=0, metavar="N",
                help="record this machine's speed baselines from N fresh-process runs per "
                     "variant (10 recommended) into <baselines>/speed/<machine>.json")
    g.addoption("--navya-seed", type=int, default=0,
                help="seed of the transforms that sample or train (calibration subsets, "
                     "fine-tunes); baselines are recorded with 0, other seeds show the "
                     "seed-to-seed spread that [trained_tolerances] must cover")
    g.addoption("--navya-speed-baselines", default=None, metavar="DIR",
                help="per-machine speed baselines (default <baselines>/speed)")
    g.addoption("--navya-cache", default=None, metavar="DIR",
                help="the artifact and evaluation cache: built variants and their evaluations "
                     "kept by a hash of everything they depend on (default $NAVYA_CACHE_DIR, "
                     "else <rootdir>/.navya-cache; 'off': build and evaluate everything)")
    g.addoption("--navya-rebuild", default=None, metavar="WHAT",
                help="ignore (and replace) the cache entries of 'all' variants or of the "
                     "named ones (comma-separated)")
    g.addoption("--navya-remeasure", action="store_true",
                help="time and measure memory afresh even where the cache holds figures "
                     "measured on the same inputs in an earlier passing run")
    g.addoption("--navya-inject-slowdown", default=None, metavar="SPEC",
                help="gate self-test: make the timed models slower, e.g. "
                     "'int8-ptq:network:0.10' or 'postprocess:0.05' (comma-separated)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "navya_budget: a budget check of a compression variant")
    parse_slowdowns(config.getoption("navya_inject_slowdown"))  # a bad spec: usage error now
    record = config.getoption("navya_record_speed")
    if record and record < 3:
        raise pytest.UsageError(f"--navya-record-speed: at least 3 runs give a spread, got "
                                f"{record}")
    for option, low in (("eval_images", 1), ("rounds", 3), ("speed_rounds", 3)):
        value = config.getoption(f"navya_{option}")
        if value < low:
            raise pytest.UsageError(f"--navya-{option.replace('_', '-')}: must be >= {low}, "
                                    f"got {value}")
    confirm = config.getoption("navya_speed_confirm")
    if confirm is not None and (confirm < 1 or confirm % 2 == 0):
        raise pytest.UsageError(f"--navya-speed-confirm: an odd number of runs >= 1 (the "
                                f"median is one of them), got {confirm}")
    _thread_counts(config.getoption("navya_threads"))  # a bad spec: usage error now
    _update_despite(config.getoption("navya_update_despite"))
    session = SuiteSession(config)
    config.stash[STATE_KEY] = session
    session.register_project_variants()
    session.selected_models()  # an unknown model is a usage error before collection
    if config.getoption("navya_variants") is not None:
        session.selected_variants()  # an unknown name is a usage error before collection
    session.rebuild_spec()  # an unknown name is a usage error too


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(STATE_KEY, None)
    if session is not None:
        session.unregister_project_variants()


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
        raise pytest.UsageError(f"--navya-inject-slowdown: {item!r} is not "
                                "'VARIANT:network:FRACTION' or 'postprocess:FRACTION'")
    return out


def _update_despite(spec: str) -> set[str]:
    names = {s.strip() for s in (spec or "").split(",") if s.strip()}
    unknown = names - set(UPDATE_OVERRIDES)
    if unknown:
        raise pytest.UsageError(f"--navya-update-despite: unknown {sorted(unknown)}; known: "
                                f"{', '.join(UPDATE_OVERRIDES)}")
    return names


def _thread_counts(spec: str) -> list[int]:
    from navya.runtime import usable_cpus

    out = []
    for part in spec.split(","):
        part = part.strip()
        try:
            n = usable_cpus() if part == "all" else int(part)
        except ValueError:
            raise pytest.UsageError(f"--navya-threads: {part!r} is not a thread count "
                                    "(an integer or 'all')") from None
        if n < 1:
            raise pytest.UsageError(f"--navya-threads: thread counts must be >= 1, got {part}")
        if n not in out:
            out.append(n)
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "navya_suite" not in metafunc.fixturenames:
        return  # not a navya benchmark: a project's own `variant` argument is left alone
    session: SuiteSession = metafunc.config.stash[STATE_KEY]
    if "variant" in metafunc.fixturenames:
        names = session.cases()  # the default model's variants by name, others' as model:name
        metafunc.parametrize("variant", names, ids=names)
    if "threads" in metafunc.fixturenames:
        counts = _thread_counts(metafunc.config.getoption("navya_threads"))
        metafunc.parametrize("threads", counts, ids=[f"threads={n}" for n in counts])


def _variant_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("variant")


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Run navya's tests variant by variant (in selection order, each variant's tests in file
    order), so that a variant's models can be released after its last test: memory stays flat
    however many variants a run has."""
    state: SuiteSession = config.stash[STATE_KEY]
    order = {v: i for i, v in enumerate(state._cases or [])}
    keyed = [(order.get(_variant_of(item), -1), i, item) for i, item in enumerate(items)]
    items[:] = [item for _, _, item in sorted(keyed, key=lambda k: (k[0], k[1]))]
    state.remaining = Counter(v for v in map(_variant_of, items) if v is not None)
    if state.remaining and not config.option.collectonly:
        state.validate()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A navya test that crashed (an exception other than a verdict's failure or skip) makes
    its variant's status ERROR; any failing navya test makes the run incomplete for a
    baseline refresh."""
    outcome = yield
    report = outcome.get_result()
    state: SuiteSession | None = item.config.stash.get(STATE_KEY, None)
    variant = _variant_of(item)
    if state is None or variant is None or not report.failed:
        return
    state.problems.append(f"{item.nodeid} ({report.when})")
    excinfo = call.excinfo
    if (state.benches and excinfo is not None
            and not excinfo.errisinstance((pytest.fail.Exception, pytest.skip.Exception))):
        bench, name = state.case(variant)
        bench.errors.setdefault(
            name, f"{item.name} {report.when}: {excinfo.typename}: {excinfo.value}")


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    state: SuiteSession | None = item.config.stash.get(STATE_KEY, None)
    variant = _variant_of(item)
    if state is None or variant is None or not state.remaining.get(variant):
        return
    state.remaining[variant] -= 1
    if state.remaining[variant] == 0 and state.benches:
        bench, name = state.case(variant)
        bench.release(name)


@pytest.fixture(autouse=True)
def _navya_variant_available(request: pytest.FixtureRequest) -> None:
    """A variant that cannot be built on this machine (its runtime is not installed, or the
    CPU lacks what it needs) is skipped loudly in each of its tests, before anything is
    measured; the summary lists it."""
    variant = _variant_of(request.node)
    if variant is None or "navya_suite" not in request.fixturenames:
        return
    reason = request.getfixturevalue("navya_suite").unavailable(variant)
    if reason:
        pytest.skip(f"VARIANT UNAVAILABLE on this machine: {variant}: {reason}")


@pytest.fixture(scope="session")
def navya_suite(pytestconfig: pytest.Config) -> SuiteSession:
    """The session's suite (data, checkpoint, budgets and the engine, set up on first use)."""
    session: SuiteSession = pytestconfig.stash[STATE_KEY]
    session.setup()
    return session


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import torch

    from navya.cpuclass import host_class, kernel_class, restrictions_in_force
    from navya.runtime import steady_allocator

    machine_info["navya"] = {
        "cpu_class": host_class(),
        "kernel_class": kernel_class(),
        "kernel_restrictions": restrictions_in_force(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "navya_threads": config.getoption("navya_threads"),
        "cpu_count": os.cpu_count(),
        "allocator": steady_allocator(),
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write an explicit baseline refresh, all files together, only from a complete and
    comparable run; a refused refresh fails the run and says why."""
    state: SuiteSession | None = session.config.stash.get(STATE_KEY, None)
    if state is None or not state.benches or not state.opt("navya_update_baselines"):
        return
    why = [state.incomplete(exitstatus)]
    if state.problems:
        why.append(f"{len(state.problems)} test(s) failed or errored: "
                   + ", ".join(state.problems[:5]) + (", ..." if len(state.problems) > 5 else ""))
    refusals: dict[str, str] = {}
    for model, bench in state.benches.items():
        for key, text in bench.refresh_refusals(
                state.model_variants(model), incomplete="; ".join(w for w in why if w) or None,
                default_eval_images=DEFAULT_EVAL_IMAGES).items():
            text = text if len(state.benches) == 1 else f"{model}: {text}"
            refusals[key] = f"{refusals[key]}; {text}" if key in refusals else text
    despite = _update_despite(state.opt("navya_update_despite"))
    blocking = {k: v for k, v in refusals.items() if k not in despite}
    if blocking:
        state.notes.append(
            "BASELINE REFRESH REFUSED, nothing written: "
            + "; ".join(f"{k}: {v}" for k, v in blocking.items())
            + f". Rerun complete, or refresh anyway with --navya-update-despite "
              f"{','.join(blocking)}")
        for bench in state.benches.values():
            bench.pending_baselines.clear()
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    overridden = sorted(set(refusals) & despite)
    for bench in state.benches.values():
        written = bench.commit_baselines()
        state.notes.append(f"baselines rewritten ({len(written)} files) in {bench.baselines_dir}"
                           + (f", despite {', '.join(overridden)}" if overridden else ""))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    session: SuiteSession | None = config.stash.get(STATE_KEY, None)
    if session is None or not any(b.order for b in session.benches.values()):
        return
    from navya.report import summary_text

    rows = session.rows()
    session.notes.extend(session.run_notes())
    tr = terminalreporter
    tr.write_sep("=", "navya summary")
    for line in session.notes:
        tr.write_line(line, yellow=True, bold=True)
    tr.write_line(summary_text(rows))
    paths = session.write_reports(rows, session.incomplete(exitstatus))
    if paths:
        tr.write_line("reports: " + ", ".join(str(p) for p in paths))


class SuiteSession:
    """One ``pytest benchmarks/`` session: option values, the selection and the engine."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.rootdir = Path(config.rootpath)
        self.notes: list[str] = []
        #: model -> its engine, the default model (or the first selected) first
        self.benches: dict[str, Bench] = {}
        self.remaining: Counter[str] = Counter()
        self._selected: list[str] | None = None
        self._models: list[str] | None = None
        self._model_variants: dict[str, list[str]] = {}
        #: case id -> (model, variant), in run order (see cases)
        self._cases: dict[str, tuple[str, str]] | None = None
        self._project_variants: list[str] = []
        self._speed_missing: dict[str, list[str]] = {}  # speed file -> cases it lacks
        #: navya tests that failed or errored in this run (node id and phase)
        self.problems: list[str] = []
        self._unavailable: dict[str, str | None] = {}

    def opt(self, name: str):
        return self.config.getoption(name)

    def _path_opt(self, name: str, default: str) -> Path:
        value = self.opt(name)
        return Path(value) if value else self.rootdir / default

    # -- variants --

    def register_project_variants(self) -> None:
        from navya.catalogue import Variant, register

        for result in self.config.hook.pytest_navya_variants(config=self.config):
            for variant in result or ():
                if not isinstance(variant, Variant):
                    raise pytest.UsageError(
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
                    raise pytest.UsageError(
                        f"--navya-variants: unknown variant(s) {', '.join(unknown)}; known: "
                        f"{', '.join(known)}")
            if not names:
                raise pytest.UsageError(f"--navya-variants {spec!r} selects no variant: the "
                                        "run would measure and gate nothing")
            self._selected = names
        return self._selected

    # -- models and cases --

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
                    raise pytest.UsageError(f"--navya-models: unknown model(s) "
                                            f"{', '.join(unknown) or repr(spec)}; known: "
                                            f"{', '.join(MODELS)}")
                names.sort(key=list(MODELS).index)
                absent = [MODELS[n] for n in names
                          if MODELS[n].data and MODELS[n].data_folder(self.rootdir) is None]
                if absent:
                    raise pytest.UsageError(f"--navya-models names {absent[0].name}, and "
                                            + self._missing_data(absent[0]))
                if self.opt("navya_checkpoint") and len(names) > 1:
                    raise pytest.UsageError(f"--navya-checkpoint gates one model, and "
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
            cases: dict[str, tuple[str, str]] = {}
            for i, model in enumerate(models):
                for variant in self.model_variants(model):
                    cases[variant if i == 0 else f"{model}:{variant}"] = (model, variant)
            self._cases = cases
        return list(self._cases)

    def case(self, case_id: str) -> tuple[Bench, str]:
        """The engine and the variant name of a test's ``variant`` (a case id)."""
        self.cases()
        model, variant = self._cases[case_id]
        self.setup()
        return self.benches[model], variant

    def model_of(self, case_id: str) -> str:
        """The model of a case id."""
        self.cases()
        return self._cases[case_id][0]

    @property
    def bench(self) -> Bench | None:
        """The first model's engine (None before setup)."""
        return next(iter(self.benches.values()), None)

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
            raise pytest.UsageError(f"--navya-rebuild: 'all' or variant names; unknown "
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

    def unavailable(self, variant: str) -> str | None:
        """Why case ``variant`` cannot be built here (None: it can); the first time, a note."""
        if variant not in self._unavailable:
            bench, name = self.case(variant)
            reason = bench.unavailable(name)
            self._unavailable[variant] = reason
            if reason:
                self.notes.append(f"SKIPPED {variant}: unavailable on this machine: {reason}")
        return self._unavailable[variant]

    # -- setup --

    def setup(self) -> None:
        """Load the workload and build the engine once. If that fails, the run stops here
        with one message (not the same traceback once per test)."""
        if self.benches:
            return
        try:
            self._setup()
        except Exception as exc:
            pytest.exit(f"navya: the suite could not start: {type(exc).__name__}: {exc}",
                        returncode=pytest.ExitCode.TESTS_FAILED)

    def _setup(self) -> None:
        from navya.bench import Bench, BenchSettings, load_workload
        from navya.budgets import load_budgets
        from navya.catalogue import DEFAULT_MODEL, MODELS, variant_names

        data = self.opt("navya_data")
        if data is None:
            from navya.data.synthetic import SyntheticConfig, generate, verify_synthetic

            data = self.rootdir / DEFAULT_DATA
            voc = data / "VOCdevkit" / f"VOC{SyntheticConfig().year}"
            problems = verify_synthetic(voc) if voc.exists() else None
            if problems is None or problems:
                why = ("one time" if problems is None else
                       "the set there does not match its metadata: " + "; ".join(problems[:3]))
                self._say(f"navya: generating the embedded synthetic data set into {data} "
                          f"({why}; about a minute)")
                generate(data)
        settings = BenchSettings(threads=1, rounds=self.opt("navya_rounds"),
                                 rss=not self.opt("navya_no_rss"),
                                 speed_rounds=self.opt("navya_speed_rounds"),
                                 seed=self.opt("navya_seed"),
                                 inject=parse_slowdowns(self.opt("navya_inject_slowdown")))
        from navya._cache import ResultStore

        cache_dir = self.cache_dir()
        store = None if cache_dir is None else ResultStore(cache_dir)
        self.notes.append(f"artifact cache: {cache_dir}" if store is not None else
                          "artifact cache: off (every variant built and evaluated in this run)")
        from navya.cpuclass import host_class, kernel_class, restrictions_in_force

        host, kernel = host_class(), kernel_class()
        self.notes.append(
            f"CPU class {host}" + (f", torch's kernels restricted to {kernel} ("
                                   + ", ".join(f"{k}={v}" for k, v in
                                               restrictions_in_force().items()) + ")"
                                   if kernel != host else "")
            + ": INT8 and half-precision figures are compared with this class's baselines "
              "and budgets only (`navya doctor` says what applies)")
        models = self.selected_models()
        for model in models:
            own = model != DEFAULT_MODEL  # a model with its own budgets section and baselines
            spec = MODELS[model]
            workload = load_workload(
                self.opt("navya_checkpoint") or spec.checkpoint_path,
                spec.data_folder(self.rootdir) or data,
                split=self.opt("navya_split"), eval_images=self.opt("navya_eval_images"),
                size_policy=self.opt("navya_size_policy"), other_classes=spec.other_classes,
                classes=spec.classes, source_package=spec.source_package,
                intervals=spec.intervals, content_fingerprint=spec.data is not None,
                min_calibration_images=spec.min_calibration_images)
            self.notes.extend(n if len(models) == 1 else f"{model}: {n}" for n in workload.notes)
            baselines = self._path_opt("navya_baselines", "benchmarks/baselines")
            speed = self.opt("navya_speed_baselines")
            self.benches[model] = Bench(
                workload, settings,
                budgets=load_budgets(self._budgets_path(), variant_names(),
                                     model=model if own else None),
                baselines_dir=baselines / model if own else baselines,
                speed_dir=None if not speed else Path(speed) / model if own else speed,
                cache=store, rebuild=self.rebuild_spec(),
                remeasure=bool(self.opt("navya_remeasure") or self.opt("navya_record_speed")))

    def _say(self, line: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(line)

    # -- verdicts to outcomes --

    @staticmethod
    def outcome(verdict: Verdict) -> None:
        """Pass, fail (the verdict's message) or skip loudly (the message says why)."""
        if verdict.outcome.skipped:
            pytest.skip(verdict.message)
        if verdict.failed:
            pytest.fail(verdict.message, pytrace=False)

    def check(self, variant: str, key: str) -> None:
        """Assert one budget of ``variant``; skip loudly where it does not apply (a speedup
        below its floor is judged on the median of --navya-speed-confirm fresh runs)."""
        from navya.bench import SPEED_CONFIRM_RUNS

        confirm = self.opt("navya_speed_confirm")
        bench, name = self.case(variant)
        self.outcome(bench.check_budget(
            name, key, confirm=SPEED_CONFIRM_RUNS if confirm is None else confirm))

    def check_speed_baseline(self, variant: str) -> None:
        """This run's speed of ``variant`` against this machine's recorded runs (or record
        them, with ``--navya-record-speed N``)."""
        # the figures compared in a run: each variant's speedup and its A/B against its
        # stored build, and the reference's network-versus-end-to-end share
        from navya.bench import SPEED_CONFIRM_RUNS

        confirm = self.opt("navya_speed_confirm")
        bench, name = self.case(variant)
        verdict = bench.check_speed_baseline(
            name, family_size=2 * len(self.cases()) + 1,
            record=self.opt("navya_record_speed"),
            confirm=SPEED_CONFIRM_RUNS if confirm is None else confirm)
        if verdict.outcome.name == "NO_BASELINE":
            self._no_speed_baseline(bench, name, variant)
        for line in verdict.message.splitlines():
            if line.startswith("NO STORED BUILD"):
                self.notes.append(line)
        print(verdict.message)  # the figures, shown with -rP (or on failure)
        self.outcome(verdict)

    def _no_speed_baseline(self, bench: Bench, name: str, case: str) -> None:
        """The run's note on a missing speed baseline: once per machine file that does not
        exist; otherwise one note naming every case its file has no entry for (issue 28, bug
        4: the note was cut out of the verdict's message, which holds no such cut for a
        missing entry)."""
        from navya.runtime import machine_slug

        path = bench.speed_baseline_path
        hint = f"record one with `pytest benchmarks/ --navya-record-speed 10` (writes {path})"
        if path is None or not Path(path).is_file():
            note = (f"NO SPEED BASELINE for machine {machine_slug(bench.machine)} "
                    f"({bench.machine['cpu_model']}, {bench.machine['cores']} cores): speed is "
                    f"checked against the budget floors of this CPU class only, where it has "
                    f"them; {hint}")
            if note not in self.notes:
                self.notes.append(note)
            return
        missing = self._speed_missing.setdefault(str(path), [])
        if missing:
            self.notes.remove(self._speed_missing_note(path, missing))
        missing.append(case)
        self.notes.append(self._speed_missing_note(path, missing))

    @staticmethod
    def _speed_missing_note(path, cases: list[str]) -> str:
        return (f"NO SPEED BASELINE for {', '.join(cases)} in {path}: their speed is checked "
                f"against the budget floors of this CPU class only, where it has them; record "
                f"them with `pytest benchmarks/ --navya-record-speed 10`")

    def check_baseline(self, variant: str) -> None:
        bench, name = self.case(variant)
        self.outcome(bench.check_baseline(name, update=self.opt("navya_update_baselines")))

    # -- summary --

    def run_notes(self) -> list[str]:
        """Where the run's time went and what it reused: the cache line, the engine's time
        per kind of figure, the suite process's peak RSS."""
        import resource

        out = []
        for model, bench in self.benches.items():
            who = "" if len(self.benches) == 1 else f"{model}: "
            out += [who + line for line in (bench.cache_summary(),) if line]
            profile = bench.profile()
            if profile:
                out.append(who + "engine time by figure: " + ", ".join(
                    f"{fig} {seconds:.0f} s" for fig, seconds in profile.items()
                    if seconds >= 0.5))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        count = sum(len(b.order) for b in self.benches.values())
        out.append(f"suite process peak RSS {peak_mb:.0f} MB ({count} variants"
                   + (f" of {len(self.benches)} models)" if len(self.benches) > 1 else ")"))
        return out

    def rows(self) -> list[dict]:
        """Every measured case's row, in run order, with its ``model``; another model's rows
        are named by their case id (``mobilenet_v3_large:int8-ptq``)."""
        out = []
        first = next(iter(self.benches), None)
        for model, bench in self.benches.items():
            order = [v for v in self.model_variants(model) if v in bench.order]
            order += [v for v in bench.order if v not in order]
            for row in bench.rows(order):
                if model != first:
                    row["name"] = f"{model}:{row['name']}"
                out.append({"model": model, **row})
        return out

    def incomplete(self, exitstatus: int) -> str | None:
        """Why this run's results are incomplete (None when every navya test ran and none
        failed or errored): interrupted, tests not run, tests failed."""
        why = []
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            why.append("the run was interrupted")
        left = sorted(v for v, n in self.remaining.items() if n)
        if left:
            why.append(f"tests of {', '.join(left)} did not run")
        return "; ".join(why) or None

    def validate(self) -> None:
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
            raise pytest.UsageError(f"navya: {mismatch}")
        base = self._path_opt("navya_baselines", "benchmarks/baselines")
        folders = []
        here = kernel_class()
        for model in self.selected_models():
            own = model != DEFAULT_MODEL
            try:
                budgets = load_budgets(
                    self._budgets_path(), variant_names(), model=model if own else None,
                    require=[v for v in self.model_variants(model) if v != REFERENCE])
            except BudgetError as exc:
                raise pytest.UsageError(str(exc)) from None
            if budgets.required_classes and here not in budgets.required_classes:
                raise pytest.UsageError(
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
                raise pytest.UsageError(f"{path}: a baseline for unknown variant "
                                        f"{path.stem!r}; remove it or register the variant "
                                        f"(known: {', '.join(sorted(known))})")
            try:
                read_baseline(path, path.stem)
            except BaselineError as exc:
                raise pytest.UsageError(str(exc)) from None

    def write_reports(self, rows: list[dict], incomplete: str | None = None) -> list[Path]:
        from navya.bench import row_columns
        from navya.report import write_summary

        out_dir = Path(self.opt("navya_report_dir"))
        if not out_dir.is_absolute():
            out_dir = Path(self.config.invocation_params.dir) / out_dir
        first = next(iter(self.benches))
        budgets = {}
        for model, bench in self.benches.items():
            if bench.budgets is not None:
                budgets.update({v if model == first else f"{model}:{v}": b
                                for v, b in bench.budgets.variants.items()})
        paths = write_summary(out_dir, rows,
                              ["model", *row_columns(self.bench.workload.class_names)],
                              notes=self.notes, incomplete=incomplete, budgets=budgets)
        return paths + self._write_page(out_dir, rows, budgets, incomplete)

    def _write_page(self, out_dir: Path, rows: list[dict], budgets: dict,
                    incomplete: str | None) -> list[Path]:
        """``index.html`` (:mod:`navya.webreport`) with ``run.json``, and this machine's speed
        history (appended to by complete runs only)."""
        from navya.metrics.measure import git_commit, utc_now
        from navya.runtime import machine_slug
        from navya.webreport import append_history, page_names, write_html_report, write_run

        first = next(iter(self.benches))
        verdicts: dict[str, dict[str, dict]] = {}
        models = {}
        for model, bench in self.benches.items():
            models[model] = dict(bench.workload.provenance)
            for variant, checks in bench.verdicts.items():
                case = variant if model == first else f"{model}:{variant}"
                verdicts[case] = {key: {"outcome": v.outcome.value, "message": v.message,
                                        "measured": v.measured, "limit": v.limit, "model": model}
                                  for key, v in checks.items()}
        machine = dict(self.bench.machine)
        slug = machine_slug(machine)
        history = out_dir.parent / "history" / f"{slug}.csv"
        created, commit = utc_now(), git_commit()
        if not incomplete:
            append_history(history, rows, timestamp=created, git_commit=commit,
                           cpu_class=machine.get("kernel_class", ""))
        bench_json = self.opt("benchmark_json") if self._has_opt("benchmark_json") else None
        record = {"created": created, "git_commit": commit, "incomplete": incomplete,
                  "machine": machine, "machine_slug": slug, "models": models,
                  "verdicts": verdicts, "budgets": budgets, "notes": list(self.notes),
                  "history_path": str(history),
                  "benchmark_json": self._abs(getattr(bench_json, "name", bench_json))}
        run = write_run(out_dir, record, page_names(bool(incomplete))["run"])
        if not incomplete:  # a complete set replaces an incomplete one
            for name in page_names(True).values():
                (out_dir / name).unlink(missing_ok=True)
        return [run, *write_html_report(out_dir, rows, record, history_path=history)]

    def _abs(self, path: Any) -> str | None:
        """A path given on the command line, absolute (relative to the invocation folder)."""
        if not path or not isinstance(path, str | os.PathLike):
            return None
        path = Path(path)
        return str(path if path.is_absolute() else
                   Path(self.config.invocation_params.dir) / path)

    def _has_opt(self, name: str) -> bool:
        try:
            self.config.getoption(name)
        except ValueError:
            return False
        return True
