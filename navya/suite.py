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
from typing import Any

import pytest

from navya.session import SuiteSession, refresh_baselines, write_reports
from navya.spec import (
    DEFAULT_DATA,
    DEFAULT_EVAL_IMAGES,
    UPDATE_OVERRIDES,
    SpecError,
    check_inputs,
    check_options,
    parse_slowdowns,
    thread_counts,
)

__all__ = ["UPDATE_OVERRIDES", "SuiteSession", "parse_slowdowns"]

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
    g.addoption("--navya-build-workers", default=None, metavar="N",
                help="build and evaluate what the cache lacks in N worker processes sharing "
                     "the cores, before anything is timed; 'auto' (default, or "
                     "$NAVYA_BUILD_WORKERS): 2 on two cores or more; 0 or 1: in the suite's "
                     "process as each variant's tests need them. Needs the cache")
    g.addoption("--navya-rebuild", default=None, metavar="WHAT",
                help="ignore (and replace) the cache entries of 'all' variants or of the "
                     "named ones (comma-separated)")
    g.addoption("--navya-remeasure", action="store_true",
                help="time and measure memory afresh even where the cache holds figures "
                     "measured on the same inputs in an earlier passing run")
    g.addoption("--navya-shard", default=None, metavar="K/N",
                help="run shard K of N of the (model, variant) cases (each model's fp32 in "
                     "every shard); `navya merge` joins the shards' report folders")
    g.addoption("--navya-shard-costs", default=None, metavar="RUN_JSON",
                help="balance the shards by the seconds each case took in this run.json "
                     "(default: the report folder's; none: a stable hash)")
    g.addoption("--navya-inject-slowdown", default=None, metavar="SPEC",
                help="gate self-test: make the timed models slower, e.g. "
                     "'int8-ptq:network:0.10' or 'postprocess:0.05' (comma-separated)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "navya_budget: a budget check of a compression variant")
    try:
        _configure(config)
    except SpecError as exc:
        raise pytest.UsageError(str(exc)) from None


def _configure(config: pytest.Config) -> None:
    check_options(config.getoption)  # a bad value: a usage error before anything runs
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "navya_suite" not in metafunc.fixturenames:
        return  # not a navya benchmark: a project's own `variant` argument is left alone
    session: SuiteSession = metafunc.config.stash[STATE_KEY]
    if "variant" in metafunc.fixturenames:
        names = session.cases()  # the default model's variants by name, others' as model:name
        metafunc.parametrize("variant", names, ids=names)
    if "threads" in metafunc.fixturenames:
        counts = thread_counts(metafunc.config.getoption("navya_threads"))
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
        try:
            check_inputs(state)
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None


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
    if not refresh_baselines(state, exitstatus) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    session: SuiteSession | None = config.stash.get(STATE_KEY, None)
    if session is None or not any(b.order for b in session.benches.values()):
        return
    from navya.reporting.tables import summary_text

    rows = session.rows()
    session.notes.extend(session.run_notes())
    tr = terminalreporter
    tr.write_sep("=", "navya summary")
    for line in session.notes:
        tr.write_line(line, yellow=True, bold=True)
    tr.write_line(summary_text(rows))
    paths = write_reports(session, rows, session.incomplete(exitstatus))
    if paths:
        tr.write_line("reports: " + ", ".join(str(p) for p in paths))
