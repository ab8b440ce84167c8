"""One ``pytest benchmarks/`` session: the selection (:class:`navya.spec.Selection`), one
engine per model (:class:`navya.bench.Bench`), the verdicts turned into pytest outcomes, the
notes a person reads, the baseline refresh and the reports.

The pytest hooks (:mod:`navya.suite`) forward to a :class:`SuiteSession`; this is the only
place that turns a :class:`~navya.verdicts.Verdict` into a pass, a failure or a loud skip.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from navya.spec import (
    DEFAULT_DATA,
    DEFAULT_EVAL_IMAGES,
    Selection,
    build_workers_spec,
    parse_slowdowns,
    update_despite,
)

if TYPE_CHECKING:
    from navya.bench import Bench
    from navya.verdicts import Verdict

__all__ = ["SuiteSession"]


def _user_model(given: str | None, shipped: Path, sha256: str) -> str | None:
    """Why the checkpoint a run gates is not the shipped one its budgets were written for
    (None: it is the shipped one)."""
    if not given:
        return None
    from navya.models.checkpoint import sha256_file

    if shipped.is_file() and sha256_file(shipped) == sha256:
        return None
    return (f"{shipped.name}, sha256 {sha256_file(shipped)[:12] if shipped.is_file() else '?'}"
            f"; this run gates {given}, sha256 {sha256[:12]}")


def _budgets_note(user_model: str | None, path: Path) -> str:
    """Which budgets of ``path`` this run holds its model to."""
    from navya.figures import BUDGETS, relative_budgets

    if user_model is None:
        return f"budgets: every budget of {path} (written for the shipped checkpoint)"
    absolute = [k for k in BUDGETS if k not in relative_budgets()]
    return (f"budgets: your checkpoint is not the shipped one ({user_model}): it is held to "
            f"the budgets of {path} that are relative to its own fp32 in this run ("
            + ", ".join(relative_budgets()) + "); the absolute ones, written for the shipped "
            f"checkpoint, are measured and shown, NOT APPLICABLE ({', '.join(absolute)})")


class SuiteSession(Selection):
    """One ``pytest benchmarks/`` session: the selection, the engines and the verdicts."""

    def __init__(self, config: pytest.Config):
        super().__init__(config.getoption, Path(config.rootpath), notes=[],
                         project_variants=lambda: config.hook.pytest_navya_variants(
                             config=config))
        self.config = config
        #: model -> its engine, the default model (or the first selected) first
        self.benches: dict[str, Bench] = {}
        self.remaining: Counter[str] = Counter()
        self._speed_missing: dict[str, list[str]] = {}  # speed file -> cases it lacks
        #: navya tests that failed or errored in this run (node id and phase)
        self.problems: list[str] = []
        self._unavailable: dict[str, str | None] = {}
        #: parallel build workers, and how each loads a model's workload (set up with the
        #: engines; navya.bench.parallel)
        self._workers = 1
        self._recipes: dict[str, Any] = {}

    def case(self, case_id: str) -> tuple[Bench, str]:
        """The engine and the variant name of a test's ``variant`` (a case id)."""
        model, variant = self.lookup(case_id)
        self.setup()
        return self.benches[model], variant

    @property
    def bench(self) -> Bench | None:
        """The first model's engine (None before setup)."""
        return next(iter(self.benches.values()), None)

    def unavailable(self, variant: str) -> str | None:
        """Why case ``variant`` cannot be built here (None: it can); the first time, a note."""
        if variant not in self._unavailable:
            bench, name = self.case(variant)
            reason = bench.unavailable(name)
            self._unavailable[variant] = reason
            if reason:
                self.notes.append(f"SKIPPED {variant}: unavailable on this machine: {reason}")
        return self._unavailable[variant]

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
        self._prebuild()

    def _prebuild(self) -> None:
        """Build and evaluate what the cache lacks in parallel worker processes before the
        first test times anything (:mod:`navya.bench.parallel`). A failure here costs time,
        never a result: the tests build whatever is missing themselves."""
        from navya.bench import REFERENCE
        from navya.bench.parallel import prebuild
        from navya.sharding import costs_from_run

        if self._workers <= 1 or not self.remaining or self.config.option.collectonly:
            return
        variants: dict[str, list[str]] = {}
        for case in self.remaining:
            model, name = self.lookup(case)
            if (name in self._project_variants or self.unavailable(case)
                    or (name in self.benches[model]._models and name != REFERENCE)):
                continue  # a worker cannot build it (its hook ran here only) or no one can
            variants.setdefault(model, []).append(name)
        seconds = costs_from_run(Path(self.opt("navya_report_dir"), "run.json"))
        costs = {m: {v: seconds[self.case_id(m, v)] for v in vs if self.case_id(m, v) in seconds}
                 for m, vs in variants.items()}
        try:
            summary = prebuild(self.benches, variants, self._recipes, self._workers,
                               costs=costs, say=self._say)
        except Exception as exc:  # noqa: BLE001 - e.g. a worker killed: the tests build it
            self.notes.append(f"parallel builds stopped ({type(exc).__name__}: {exc}); the "
                              "suite built what was missing itself")
            return
        if summary is not None:
            self.notes.append(summary.note())

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
        from navya._cache import ResultStore
        from navya.bench.parallel import recipe_settings, resolve_workers
        from navya.runtime import usable_cpus

        cache_dir = self.cache_dir()
        store = None if cache_dir is None else ResultStore(cache_dir)
        self.notes.append(f"artifact cache: {cache_dir}" if store is not None else
                          "artifact cache: off (every variant built and evaluated in this run)")
        # workers hand their builds to the suite through the cache: none without one
        self._workers = (resolve_workers(build_workers_spec(self.opt), usable_cpus())
                         if store is not None else 1)
        settings = BenchSettings(threads=1, rounds=self.opt("navya_rounds"),
                                 rss=not self.opt("navya_no_rss"),
                                 speed_rounds=self.opt("navya_speed_rounds"),
                                 seed=self.opt("navya_seed"),
                                 inject=parse_slowdowns(self.opt("navya_inject_slowdown")))
        self.notes.append(
            f"builds and evaluations: first, in {self._workers} parallel worker processes "
            "sharing the cores (--navya-build-workers)"
            if self._workers > 1 else
            "builds and evaluations: in the suite's process, as each variant's tests need them"
            + ("" if store is not None else " (parallel workers need the artifact cache)"))
        from navya.cpuclass import host_class, kernel_class, restrictions_in_force

        host, kernel = host_class(), kernel_class()
        self.notes.append(
            f"CPU class {host}" + (f", torch's kernels restricted to {kernel} ("
                                   + ", ".join(f"{k}={v}" for k, v in
                                               restrictions_in_force().items()) + ")"
                                   if kernel != host else "")
            + ": INT8 and half-precision figures are compared with this class's baselines "
              "and budgets only (`navya doctor` says what applies)")
        from navya.bench.parallel import WorkloadRecipe

        models = self.selected_models()
        for model in models:
            own = model != DEFAULT_MODEL  # a model with its own budgets section and baselines
            spec = MODELS[model]
            checkpoint = str(self.opt("navya_checkpoint") or spec.checkpoint_path)
            folder = str(spec.data_folder(self.rootdir) or data)
            load_kwargs = dict(
                split=self.opt("navya_split"), eval_images=self.opt("navya_eval_images"),
                size_policy=self.opt("navya_size_policy"), other_classes=spec.other_classes,
                classes=spec.classes, source_package=spec.source_package,
                intervals=spec.intervals, content_fingerprint=spec.data is not None,
                min_calibration_images=spec.min_calibration_images)
            workload = load_workload(checkpoint, folder, **load_kwargs)
            self.notes.extend(n if len(models) == 1 else f"{model}: {n}" for n in workload.notes)
            user_model = _user_model(self.opt("navya_checkpoint"), spec.checkpoint_path,
                                     workload.provenance["checkpoint_sha256"])
            self.notes.append((f"{model}: " if len(models) > 1 else "")
                              + _budgets_note(user_model, self._budgets_path()))
            baselines = self._path_opt("navya_baselines", "benchmarks/baselines")
            speed = self.opt("navya_speed_baselines")
            self.benches[model] = Bench(
                workload, settings,
                budgets=load_budgets(self._budgets_path(), variant_names(),
                                     model=model if own else None),
                baselines_dir=baselines / model if own else baselines,
                speed_dir=None if not speed else Path(speed) / model if own else speed,
                cache=store, rebuild=self.rebuild_spec(),
                remeasure=bool(self.opt("navya_remeasure") or self.opt("navya_record_speed")),
                user_model=user_model)
            rebuild = self.rebuild_spec()
            self._recipes[model] = WorkloadRecipe(
                checkpoint, folder, load_kwargs, recipe_settings(settings),
                str(Path(cache_dir).resolve()) if cache_dir is not None else "",
                rebuild if isinstance(rebuild, bool) else tuple(rebuild))

    def _say(self, line: str) -> None:
        """A line on the terminal now, also from inside a test (output capture suspended)."""
        import contextlib

        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        with (capman.global_and_fixture_disabled() if capman is not None
              else contextlib.nullcontext()):
            tr.write_line(line)

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

    # -- what a benchmark test records beside its verdict --

    def properties(self, variant: str, *names: str) -> dict[str, Any]:
        """Figures a benchmark test records (``record_property``) beside its verdict:
        ``map``, ``per_class_drop_points`` (AP drop per class against the reference),
        ``speedup_ci``, ``speed_runs``, ``rss_mb``, ``net_latency_ms_median``. Those that do
        not apply (the reference against itself) are left out."""
        bench, name = self.case(variant)
        is_ref = name == bench.reference
        out: dict[str, Any] = {}
        for key in names:
            if key == "map":
                out[key] = bench.map(name)
            elif key == "per_class_drop_points" and not is_ref:
                ref, own = bench.class_ap(bench.reference), bench.class_ap(name)
                out[key] = {c: None if ref[c] is None or own[c] is None
                            else round((ref[c] - own[c]) * 100, 3) for c in ref}
            elif key == "speedup_ci" and not is_ref:
                run = bench.speedup(name)
                out[key] = (run.ci_low, run.ci_high)
            elif key == "speed_runs":
                out[key] = [round(r.speedup, 4) for r in bench.speed_runs(name, 1)]
            elif key == "rss_mb":
                out[key] = bench.rss_mb(name)
            elif key == "net_latency_ms_median":
                out[key] = bench.net_latency(name).median_ms
            elif key not in ("per_class_drop_points", "speedup_ci"):
                raise KeyError(f"unknown property {key!r}")
        return out

    def timed_call(self, variant: str, threads: int) -> tuple[Any, list, int, dict[str, Any]]:
        """What pytest-benchmark times for ``variant`` at ``threads``: the model (a copy first
        called at that thread count), its input, the rounds, and the extra information its
        JSON keeps (deterministic figures, config, model, threads)."""
        bench, name = self.case(variant)
        info = {**bench.deterministic_figures(name), "config": bench.config_dict(name),
                "model": self.model_of(variant), "threads": threads}
        return bench.timed_model(name, threads), bench.images, bench.settings.rounds, info

    # -- summary --

    def run_notes(self) -> list[str]:
        """Where the run's time went and what it reused: the cache line, the engine's time
        per kind of figure, the suite process's peak RSS."""
        import resource

        out = []
        for model, bench in self.benches.items():
            who = "" if len(self.benches) == 1 else f"{model}: "
            out += [who + line for line in (bench.cache_summary(),) if line]
            profile = {fig: s for fig, s in bench.profile().items() if s >= 0.5}
            if profile:
                out.append(who + "engine time by figure: " + ", ".join(
                    f"{fig} {seconds:.0f} s" for fig, seconds in profile.items()))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        count = sum(len(b.order) for b in self.benches.values())
        out.append(f"suite process peak RSS {peak_mb:.0f} MB ({count} variants"
                   + (f" of {len(self.benches)} models)" if len(self.benches) > 1 else ")"))
        return out

    def rows(self) -> list[dict]:
        """Every measured case's row, in run order, with its ``model``; another model's rows
        are named by their case id (``mobilenet_v3_large:int8-ptq``)."""
        out = []
        for model, bench in self.benches.items():
            order = [v for v in self.model_variants(model) if v in bench.order]
            order += [v for v in bench.order if v not in order]
            for row in bench.rows(order):
                row["name"] = self.case_id(model, row["name"])
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


# -- reports --



def write_reports(session: SuiteSession, rows: list[dict],
                  incomplete: str | None = None) -> list[Path]:
    """summary.csv/md, verdicts.md, index.html and run.json of the run (and its history row)."""
    from navya.metrics.measure import row_columns
    from navya.reporting.summary import write_summary

    out_dir = Path(session.opt("navya_report_dir"))
    if not out_dir.is_absolute():
        out_dir = Path(session.config.invocation_params.dir) / out_dir
    budgets = {}
    for model, bench in session.benches.items():
        if bench.budgets is not None:
            budgets.update({session.case_id(model, v): b
                            for v, b in bench.budgets.variants.items()})
    paths = write_summary(out_dir, rows,
                          ["model", *row_columns(session.bench.workload.class_names)],
                          notes=session.notes, incomplete=incomplete, budgets=budgets)
    return paths + _write_page(session, out_dir, rows, budgets, incomplete)


def _write_page(session: SuiteSession, out_dir: Path, rows: list[dict], budgets: dict,
                incomplete: str | None) -> list[Path]:
    """``index.html`` (:mod:`navya.reporting.page`) with ``run.json``, and this machine's speed
    history (appended to by complete runs only)."""
    from navya.metrics.measure import git_commit, utc_now
    from navya.reporting.page import append_history, page_names, write_html_report, write_run
    from navya.runtime import machine_slug

    verdicts: dict[str, dict[str, dict]] = {}
    models = {}
    for model, bench in session.benches.items():
        models[model] = dict(bench.workload.provenance)
        for variant, checks in bench.verdicts.items():
            case = session.case_id(model, variant)
            verdicts[case] = {key: {"outcome": v.outcome.value, "message": v.message,
                                    "measured": v.measured, "limit": v.limit, "model": model}
                              for key, v in checks.items()}
    machine = dict(session.bench.machine)
    slug = machine_slug(machine)
    history = out_dir.parent / "history" / f"{slug}.csv"
    created, commit = utc_now(), git_commit()
    if not incomplete:
        append_history(history, rows, timestamp=created, git_commit=commit,
                       cpu_class=machine.get("kernel_class", ""))
    bench_json = session.opt("benchmark_json") if _has_opt(session, "benchmark_json") else None
    record = {"created": created, "git_commit": commit, "incomplete": incomplete,
              "machine": machine, "machine_slug": slug, "models": models,
              "verdicts": verdicts, "budgets": budgets, "notes": list(session.notes),
              "history_path": str(history),
              "case_seconds": _case_seconds(session),
              **({"shard": {"k": part[0], "n": part[1], "cases": list(session.owned),
                            "all_cases": list(session.all_cases)}}
                 if (part := session.shard()) else {}),
              "benchmark_json": _abs(session, getattr(bench_json, "name", bench_json))}
    run = write_run(out_dir, record, page_names(bool(incomplete))["run"])
    if not incomplete:  # a complete set replaces an incomplete one
        for name in page_names(True).values():
            (out_dir / name).unlink(missing_ok=True)
    return [run, *write_html_report(out_dir, rows, record, history_path=history)]


def _abs(session: SuiteSession, path: Any) -> str | None:
    """A path given on the command line, absolute (relative to the invocation folder)."""
    if not path or not isinstance(path, str | os.PathLike):
        return None
    path = Path(path)
    return str(path if path.is_absolute() else
               Path(session.config.invocation_params.dir) / path)


def _has_opt(session: SuiteSession, name: str) -> bool:
    try:
        session.config.getoption(name)
    except ValueError:
        return False
    return True


# -- the baseline refresh --


def refresh_baselines(session: SuiteSession, exitstatus: int) -> bool:
    """Write an explicit baseline refresh, all files together, only from a complete and
    comparable run. False: the refresh was refused (the notes say why; the run fails)."""
    why = [session.incomplete(exitstatus)]
    if session.problems:
        why.append(f"{len(session.problems)} test(s) failed or errored: "
                   + ", ".join(session.problems[:5]) + (", ..." if len(session.problems) > 5
                                                     else ""))
    refusals: dict[str, str] = {}
    for model, bench in session.benches.items():
        for key, text in bench.refresh_refusals(
                session.model_variants(model), incomplete="; ".join(w for w in why if w) or None,
                default_eval_images=DEFAULT_EVAL_IMAGES).items():
            text = text if len(session.benches) == 1 else f"{model}: {text}"
            refusals[key] = f"{refusals[key]}; {text}" if key in refusals else text
    despite = update_despite(session.opt("navya_update_despite"))
    blocking = {k: v for k, v in refusals.items() if k not in despite}
    if blocking:
        session.notes.append(
            "BASELINE REFRESH REFUSED, nothing written: "
            + "; ".join(f"{k}: {v}" for k, v in blocking.items())
            + f". Rerun complete, or refresh anyway with --navya-update-despite "
              f"{','.join(blocking)}")
        for bench in session.benches.values():
            bench.pending_baselines.clear()
        return False
    overridden = sorted(set(refusals) & despite)
    for bench in session.benches.values():
        written = bench.commit_baselines()
        session.notes.append(f"baselines rewritten ({len(written)} files) in "
                          f"{bench.baselines_dir}"
                          + (f", despite {', '.join(overridden)}" if overridden else ""))
    return True


def _case_seconds(session: SuiteSession) -> dict[str, float]:
    """Seconds the engine spent on each case (building, evaluating, timing): what the next
    sharded run balances its shards by (:func:`navya.sharding.assign`)."""
    out: dict[str, float] = {}
    for model, bench in session.benches.items():
        spent = [*((v, s) for (_fig, v), s in bench.timings.items()),
                 *bench.worker_seconds.items()]  # a build worker's time counts too
        for variant, seconds in spent:
            case = session.case_id(model, variant)
            out[case] = round(out.get(case, 0.0) + seconds, 3)
    return out
