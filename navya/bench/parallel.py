"""Parallel builds: before a run times anything, the variants its cache lacks are built and
evaluated in worker processes, every core busy; the suite then reads them from the cache.

The cold run's time goes mostly to builds (training, calibration, export) and evaluations, which
time nothing. They run here, in ``workers`` spawned processes, each loading the same workload
once (:class:`WorkloadRecipe`). A worker writes the model to the artifact cache and its
evaluation to the evaluation cache, as the suite would, and measures a fresh process's peak RSS
(which times nothing, handed back); nothing else comes back
but what it did and how long it took (:class:`TaskResult`). The speed runs, the only figures
that time, start afterwards on a quiet machine, one at a time, pinned, as before.

Threads: every worker runs at torch's default, every usable core, the thread count of a build in
the suite's own process. A model's bits depend on its thread count (floating-point sums split
by thread: measured, a PTQ calibrated at 1 thread instead of 2 moved per-class APs by 0.011 and
failed three deterministic baselines), never on what else runs beside it; so the workers build
exactly the models a serial run builds, under the same cache keys, and the baselines hold. The
cores are shared (``workers`` x cores threads, OpenMP waiting passively in the workers): a
training that scales over the cores shares them with the exports, conversions and RSS runs that
use one.

Scheduling (:func:`run_tasks`):

- a variant whose config nests another selected variant's config (the structured fine-tune under
  ``prune-l1-structured-30-int8``) waits for it, so that the nested model is built once; the
  cache's per-entry lock (:meth:`navya._cache.ResultStore.lock`) makes that hold whatever the
  order;
- among the ready tasks the one on the longest remaining chain goes first (the costs of the last
  run's cases, else a prior by tag), so that a long fine-tune does not start last.

A worker that fails, or dies, loses nothing: the suite builds that variant itself and reports its
error in its tests.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from navya.bench.settings import REFERENCE, BenchSettings

__all__ = ["BuildTask", "TaskResult", "WorkloadRecipe", "plan_tasks", "prebuild",
           "recipe_settings", "resolve_workers", "run_tasks"]

#: the number of workers ``auto`` picks on a machine of two cores or more
AUTO_WORKERS = 2
#: the workers' environment: OpenMP threads that wait for work sleep instead of spinning, so
#: that two workers sharing the cores do not burn them waiting (the thread count, and so the
#: bits, are unchanged)
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
#: seconds between "still building" lines while no build finishes
HEARTBEAT_S = 60.0
#: a task's cost when no earlier run measured it: a transform that trains, or any other
_PRIOR_S = {"trains": 300.0, "other": 30.0}


def resolve_workers(spec: str | int | None, cores: int) -> int:
    """``--navya-build-workers``: ``auto`` (None) is 2 on two cores or more (measured on 2
    cores: README, "Every core during a cold run"), else 1; ``0`` and ``1`` are no workers
    (every build in the suite's process)."""
    if spec is None or spec == "auto":
        return AUTO_WORKERS if cores >= 2 else 1
    n = int(spec)
    if n < 0:
        raise ValueError(f"--navya-build-workers must be 'auto' or an integer >= 0, got {spec!r}")
    return max(1, n)


@dataclass(frozen=True)
class WorkloadRecipe:
    """How a worker loads the suite's workload of one model and sets up its engine."""

    checkpoint: str
    data: str
    load_kwargs: Mapping[str, Any]
    settings: BenchSettings
    cache_root: str
    rebuild: bool | tuple[str, ...] = False


@dataclass(frozen=True)
class BuildTask:
    """Build (unless ``variant`` is the reference) and evaluate one variant of ``model``."""

    model: str
    variant: str
    cost_s: float
    #: variants of the same model this one waits for (their configs nest in its own)
    after: tuple[str, ...] = ()


@dataclass
class TaskResult:
    """What a worker did for one task."""

    model: str
    variant: str
    build: Any = None  # the BuildInfo (None for the reference)
    build_s: float = 0.0
    eval_s: float = 0.0
    error: str | None = None
    pid: int = 0
    seconds: float = 0.0
    #: the peak RSS of a fresh process running the model, measured now (None: not measured)
    rss_mb: float | None = None


def plan_tasks(model: str, variants: Sequence[str], *, needs_build: Callable[[str], bool],
               needs_eval: Callable[[str], bool], costs: Mapping[str, float],
               tags: Callable[[str], Sequence[str]], configs: Callable[[str], Any]
               ) -> list[BuildTask]:
    """The tasks of one model: each variant that ``needs_build`` or ``needs_eval`` (the
    reference: only the latter), with its cost (``costs``, else the prior by tag) and the selected
    variants whose configs nest in its own (``after``)."""
    from navya.compress.cache import nested_configs

    todo = [v for v in variants
            if (needs_eval(v) if v == REFERENCE else needs_build(v) or needs_eval(v))]
    own = {v: configs(v) for v in todo if v != REFERENCE}
    tasks = []
    for v in todo:
        nested = nested_configs(own[v])[1:] if v in own else []
        after = tuple(o for o in own if o != v and any(c == own[o] for c in nested))
        # a variant that nests a trained one (built by that one's task) trains nothing itself
        prior = _PRIOR_S["trains" if "trains" in tags(v) and not after else "other"]
        tasks.append(BuildTask(model, v, float(costs.get(v, prior)), after))
    return tasks


def _chains(tasks: Sequence[BuildTask]) -> dict[tuple[str, str], float]:
    """Each task's cost plus the longest chain of tasks waiting on it."""
    waiting: dict[tuple[str, str], list[BuildTask]] = {}
    for t in tasks:
        for a in t.after:
            waiting.setdefault((t.model, a), []).append(t)
    memo: dict[tuple[str, str], float] = {}

    def chain(t: BuildTask) -> float:
        key = (t.model, t.variant)
        if key not in memo:
            memo[key] = t.cost_s + max((chain(w) for w in waiting.get(key, ())), default=0.0)
        return memo[key]

    return {(t.model, t.variant): chain(t) for t in tasks}


def run_tasks(recipes: Mapping[str, WorkloadRecipe], tasks: Sequence[BuildTask], workers: int,
              *, say: Callable[[str], None] = print) -> list[TaskResult]:
    """Run ``tasks`` in ``workers`` spawned processes (:data:`WORKER_ENV`); the results in the
    order they finished. A line per finished task goes to ``say``, and one a minute while none
    finishes. A task that waits for one that failed still runs (its own build then builds the
    nested one).

    Raises:
        cf.process.BrokenProcessPool: a worker died (killed, out of memory); the results so
            far are lost to the caller, the cache keeps what was written.
    """
    chains = _chains(tasks)
    pending = list(tasks)
    finished: set[tuple[str, str]] = set()
    results: list[TaskResult] = []
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with OpenMP threads
    with _environment(WORKER_ENV), cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init,
            initargs=(dict(recipes),)) as pool:
        running: dict[cf.Future, BuildTask] = {}
        started: dict[cf.Future, float] = {}
        try:
            while pending or running:
                while len(running) < workers and pending:
                    ready = [t for t in pending
                             if all((t.model, a) in finished or
                                    not any(p.model == t.model and p.variant == a
                                            for p in pending + list(running.values()))
                                    for a in t.after)]
                    if not ready and running:
                        break
                    task = max(ready or pending,  # never stalls, even on a cycle
                               key=lambda t: chains[(t.model, t.variant)])
                    pending.remove(task)
                    future = pool.submit(_run, task)
                    running[future], started[future] = task, time.perf_counter()
                done, _ = cf.wait(list(running), timeout=HEARTBEAT_S,
                                  return_when=cf.FIRST_COMPLETED)
                now = time.perf_counter()
                if not done:  # a long build: say what is running, so the run is seen alive
                    say("  ... building " + ", ".join(
                        f"{_name(t, len(recipes) > 1)} ({(now - started[f]) / 60:.1f} min)"
                        for f, t in running.items()) + f"; {len(pending)} waiting")
                for future in done:
                    task = running.pop(future)
                    started.pop(future)
                    result = future.result()
                    finished.add((task.model, task.variant))
                    results.append(result)
                    say(_line(result, len(results), len(tasks), time.perf_counter() - t0,
                              len(recipes) > 1))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in list(getattr(pool, "_processes", {}).values()):  # stop builds now
                proc.terminate()
            raise
    return results


@contextlib.contextmanager
def _environment(values: Mapping[str, str]):
    """Set ``values`` in ``os.environ`` for the block (spawned workers inherit it; this
    process's OpenMP read its own at start and is unaffected), then restore it."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _name(r: TaskResult | BuildTask, models: bool) -> str:
    return f"{r.model}:{r.variant}" if models else r.variant


def _line(r: TaskResult, i: int, n: int, elapsed: float, models: bool) -> str:
    name = _name(r, models)
    if r.error:
        what = f"FAILED ({r.error.splitlines()[-1][:160]}); the suite builds it itself"
    elif r.variant == REFERENCE:
        what = f"evaluated in {r.eval_s:.0f} s"
    else:
        how = "built" if r.build is not None and r.build.source == "built" else "read"
        what = f"{how} in {r.build_s:.0f} s, evaluated in {r.eval_s:.0f} s"
    return f"  [{i}/{n}] {name}: {what} (worker {r.pid}; {elapsed / 60:.1f} min)"


# -- the worker ----------------------------------------------------------------------------------

_RECIPES: dict[str, WorkloadRecipe] = {}
_BENCHES: dict[str, Any] = {}


def _init(recipes: dict[str, WorkloadRecipe]) -> None:
    _RECIPES.clear()
    _RECIPES.update(recipes)
    _BENCHES.clear()


def _bench(model: str):
    if model not in _BENCHES:
        from navya._cache import ResultStore
        from navya.bench import Bench, load_workload

        r = _RECIPES[model]
        workload = load_workload(r.checkpoint, r.data, **r.load_kwargs)
        _BENCHES[model] = Bench(workload, r.settings, cache=ResultStore(r.cache_root),
                                rebuild=r.rebuild if isinstance(r.rebuild, bool)
                                else list(r.rebuild))
    return _BENCHES[model]


def _run(task: BuildTask) -> TaskResult:
    """Build and evaluate one variant into the caches (in a worker process)."""
    t0 = time.perf_counter()
    out = TaskResult(task.model, task.variant, pid=os.getpid())
    try:
        bench = _bench(task.model)
        if task.variant != REFERENCE:
            t1 = time.perf_counter()
            bench.model(task.variant)
            out.build = bench.build_info(task.variant)
            out.build_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        bench.evaluation(task.variant)
        out.eval_s = time.perf_counter() - t1
        # what else times nothing: the peak RSS of a fresh process (memory, not time: the
        # other worker does not change it; handed back, kept by the suite only if its checks
        # pass). Not the stats: their key names the OMP_* environment, which differs here
        if bench.settings.rss:
            rss = bench.rss_mb(task.variant)
            if bench.sources.get(("memory", task.variant)) == "now":
                out.rss_mb = rss
    except Exception as exc:  # noqa: BLE001 - reported; the suite builds it and says why
        out.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    finally:
        if task.model in _BENCHES:  # one model at a time (the reference is kept)
            _BENCHES[task.model].release(task.variant)
    out.seconds = time.perf_counter() - t0
    return out


def recipe_settings(settings: BenchSettings) -> BenchSettings:
    """The worker's settings: the suite's, quiet."""
    return dataclasses.replace(settings, progress=False)


@dataclass
class PrebuildSummary:
    """What :func:`prebuild` did: its results, wall time and workers."""

    results: list[TaskResult]
    wall_s: float
    workers: int

    def note(self) -> str:
        built = [r for r in self.results if not r.error and r.build is not None
                 and r.build.source == "built"]
        evaluated = [r for r in self.results if not r.error]
        failed = [r for r in self.results if r.error]
        work = sum(r.seconds for r in self.results)
        return (f"parallel builds: {self.workers} worker processes "
                f"built {len(built)} variant(s) and evaluated {len(evaluated)} in "
                f"{self.wall_s:.0f} s wall ({work:.0f} s of work, "
                f"{work / max(self.wall_s, 1e-9):.2f} busy workers on average) before anything "
                "was timed" + ("; FAILED in a worker, built by the suite itself: "
                               + ", ".join(r.variant for r in failed) if failed else ""))


def prebuild(benches: Mapping[str, Any], variants: Mapping[str, Sequence[str]],
             recipes: Mapping[str, WorkloadRecipe], workers: int, *,
             costs: Mapping[str, Mapping[str, float]] | None = None,
             say: Callable[[str], None] = print) -> PrebuildSummary | None:
    """Build and evaluate, in ``workers`` processes, the ``variants`` of each model's engine
    (``benches``) that its cache lacks; then tell each engine what was done in this run (its
    ``worker_builds``, ``worker_evals``, ``worker_seconds``) and stop it rebuilding those.

    ``variants``: per model, the catalogue variants to consider (those the run measures and a
    worker can build: registered in the catalogue, available here). ``costs``: per model, the
    seconds each variant took in an earlier run. None when there was nothing to build.
    """
    from navya._cache import digest
    from navya.catalogue import get_variant, variant_names
    from navya.compress.cache import KIND

    tasks: list[BuildTask] = []
    for model, bench in benches.items():
        if bench.store is None:
            continue

        keys: dict[str, str | None] = {}

        def artifact_key(v: str, bench=bench, keys=keys) -> str | None:
            if v not in keys:
                try:
                    keys[v] = digest(bench.artifacts.key_parts(
                        bench.workload.reference, get_variant(v).config, bench.context))
                except ValueError:  # not cacheable: a worker's build would not reach the suite
                    keys[v] = None
            return keys[v]

        def needs_build(v: str, bench=bench) -> bool:
            key = artifact_key(v)
            return key is not None and (bench.rebuilds(v)
                                        or not bench.store.path(KIND, key).is_file())

        def needs_eval(v: str, bench=bench) -> bool:
            """The model is cached, its evaluation is not (the evaluation code changed)."""
            if v == REFERENCE:
                parts = bench.evaluation_key(v)
            else:
                key = artifact_key(v)
                parts = None if key is None else bench.cached_evaluation_key(key)
            return parts is not None and (bench.rebuilds(v) or not bench.store.path(
                "evaluations", digest(parts)).is_file())

        tasks += plan_tasks(model, variants.get(model, ()), needs_build=needs_build,
                            needs_eval=needs_eval, costs=(costs or {}).get(model, {}),
                            tags=lambda v: get_variant(v).tags,
                            configs=lambda v: get_variant(v).config)
    if not tasks:
        return None
    workers = min(workers, len(tasks))
    say(f"navya: {len(tasks)} variant(s) to build or evaluate, in {workers} worker processes "
        "sharing the cores, before anything is timed")
    t0 = time.perf_counter()
    results = run_tasks(recipes, tasks, workers, say=say)
    summary = PrebuildSummary(results, time.perf_counter() - t0, workers)
    for r in results:
        bench = benches[r.model]
        bench.worker_seconds[r.variant] = r.seconds
        if r.error:
            continue
        if r.build is not None and r.build.source == "built":
            bench.worker_builds[r.variant] = dataclasses.replace(
                r.build, why=f"built in a parallel build worker ({r.build.why})")
        bench.worker_evals.add(r.variant)
        if r.rss_mb is not None:
            bench.adopt_rss(r.variant, r.rss_mb)
    for model, bench in benches.items():  # what a worker rebuilt is not rebuilt again
        done = {r.variant for r in results if r.model == model and not r.error}
        if bench.rebuild is True:
            bench.rebuild = frozenset({*variant_names(), REFERENCE, *bench._models} - done)
        elif bench.rebuild:
            bench.rebuild = frozenset(bench.rebuild - done)
    return summary
