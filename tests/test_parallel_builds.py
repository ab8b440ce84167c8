"""Issue 30, item 4: every core during the cold run. What the cache lacks is built and evaluated
in worker processes before anything is timed (navya.bench.parallel); one entry is built once
whoever asks (the store's lock); the thread count a model was built at is part of its key; and a
run with workers builds the very models of a run without: the same verdicts and figures."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from navya._cache import ResultStore
from navya.bench import REFERENCE, Bench, BenchSettings, load_workload
from navya.bench.parallel import (
    BuildTask,
    WorkloadRecipe,
    _chains,
    plan_tasks,
    prebuild,
    recipe_settings,
    resolve_workers,
)
from navya.catalogue import get_variant
from navya.compress.base import CompressContext, apply_transform_info
from navya.compress.cache import ArtifactCache
from navya.compress.quantize import PTQConfig
from navya.data.synthetic import SyntheticConfig, generate
from navya.data.voc import VOCDataset
from navya.models import build_model, save_checkpoint
from navya.runtime import num_threads

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _every_core():
    """This process at torch's default thread count, as the suite's process and the workers
    run (an earlier test module may have left it at 1): a model's key names its thread count
    wherever it is not every core."""
    from navya.runtime import usable_cpus

    with num_threads(usable_cpus()):
        yield


# -- how many workers, how many threads ----------------------------------------------------------


def test_how_many_workers():
    assert resolve_workers("auto", 2) == 2 and resolve_workers(None, 16) == 2
    assert resolve_workers("auto", 1) == 1
    assert resolve_workers("0", 8) == 1 and resolve_workers("3", 8) == 3
    with pytest.raises(ValueError, match="build-workers"):
        resolve_workers("-1", 2)


def test_a_bad_workers_value_is_a_usage_error(monkeypatch):
    from navya.spec import SpecError, check_options

    defaults = {"navya_inject_slowdown": None, "navya_record_speed": 0, "navya_eval_images": 8,
                "navya_rounds": 30, "navya_speed_rounds": 60, "navya_speed_confirm": None,
                "navya_threads": "1", "navya_update_despite": "", "navya_shard": None,
                "navya_update_baselines": False}
    for bad in ("two", "-1", "1.5"):
        with pytest.raises(SpecError, match="--navya-build-workers"):
            check_options(lambda name, bad=bad: {**defaults, "navya_build_workers": bad}[name])
    monkeypatch.setenv("NAVYA_BUILD_WORKERS", "many")
    with pytest.raises(SpecError, match="NAVYA_BUILD_WORKERS"):
        check_options(lambda name: {**defaults, "navya_build_workers": None}[name])
    monkeypatch.setenv("NAVYA_BUILD_WORKERS", "2")
    check_options(lambda name: {**defaults, "navya_build_workers": None}[name])


# -- the plan: what waits for what, what goes first ----------------------------------------------


def _plan(variants, *, built=(), costs=None, eval_missing=True):
    return plan_tasks("m", variants, needs_build=lambda v: v not in built,
                      needs_eval=lambda v: eval_missing, costs=costs or {},
                      tags=lambda v: get_variant(v).tags,
                      configs=lambda v: get_variant(v).config)


def test_a_variant_waits_for_the_variants_nested_in_it():
    tasks = {t.variant: t for t in _plan(["fp32", "prune-l1-structured-30", "int8-ptq",
                                          "prune-l1-structured-30-int8", "int8-qat",
                                          "prune-l1-structured-30-onnx-int8"])}
    # (its PTQ config is int8-ptq's: waiting for it is conservative, and cheap)
    assert set(tasks["prune-l1-structured-30-int8"].after) == {"prune-l1-structured-30",
                                                               "int8-ptq"}
    assert tasks["prune-l1-structured-30-onnx-int8"].after == ("prune-l1-structured-30",)
    assert tasks["int8-qat"].after == () and tasks[REFERENCE].after == ()
    # the fine-tune carries its two dependants: its chain is the longest, it starts first
    chains = _chains(list(tasks.values()))
    assert max(chains, key=chains.get) == ("m", "prune-l1-structured-30")
    assert chains[("m", "prune-l1-structured-30")] == pytest.approx(300 + 30)
    assert chains[("m", "int8-qat")] == 300 > chains[("m", "int8-ptq")]


def test_what_the_cache_holds_is_not_a_task():
    tasks = _plan(["fp32", "int8-ptq", "fp32-fused"], built={"int8-ptq"}, eval_missing=False)
    assert [t.variant for t in tasks] == ["fp32-fused"]  # the reference's evaluation is cached
    # a nested variant already built is no reason to wait
    tasks = _plan(["prune-l1-structured-30", "prune-l1-structured-30-int8"],
                  built={"prune-l1-structured-30"}, eval_missing=False)
    assert [(t.variant, t.after) for t in tasks] == [("prune-l1-structured-30-int8", ())]


def test_costs_of_an_earlier_run_order_the_tasks():
    tasks = _plan(["int8-ptq", "fp32-fused"], costs={"fp32-fused": 500.0})
    chains = _chains(tasks)
    assert chains[("m", "fp32-fused")] == 500.0 and chains[("m", "int8-ptq")] == 30.0
    assert isinstance(tasks[0], BuildTask)


# -- one entry, built once -----------------------------------------------------------------------


def test_the_store_lock_excludes_other_holders(tmp_path):
    store = ResultStore(tmp_path / "cache")
    key = "ab" * 32
    events = []

    def hold(name):
        with store.lock("artifacts", key):
            events.append(f"{name} in")
            time.sleep(0.2)
            events.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    with pytest.raises(ValueError, match="bad cache kind/key"):
        with store.lock("artifacts", "not-a-key"):
            pass


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 6, "val": 4}, image_size=96), workers=1)
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(voc, tmp_path_factory):
    names = VOCDataset(voc, "val").class_names
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", len(names) + 1, width_mult=0.25,
                        image_size=96).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, {"class_names": list(names)})
    return path


PTQ = PTQConfig(calibration_images=2, activation_observer="minmax")


def test_two_builders_of_one_entry_build_it_once(tmp_path, voc, tiny_checkpoint):
    """The second caller waits on the entry's lock, then reads what the first wrote."""
    from navya.models import load_checkpoint

    model, _ = load_checkpoint(tiny_checkpoint)
    train = VOCDataset(voc, "train")
    store = ResultStore(tmp_path / "cache")
    calls, infos = [], {}

    cache = ArtifactCache(store)
    # the key's source hashes, once, here: CPython 3.11's ast.parse is not safe in two threads
    # at once (the processes this models never share an interpreter)
    cache.key_parts(model, PTQ, CompressContext(train_dataset=train, artifacts=cache))

    def build(name):
        ctx = CompressContext(train_dataset=train, artifacts=cache)
        with num_threads(1):
            infos[name] = apply_transform_info(model, PTQ, ctx)[1]

    original = ArtifactCache._build_and_store

    def slow(self, fn, key, parts, why):
        calls.append(key)
        time.sleep(0.5)  # the other caller arrives while this one builds
        return original(self, fn, key, parts, why)

    ArtifactCache._build_and_store = slow
    try:
        threads = [threading.Thread(target=build, args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        ArtifactCache._build_and_store = original
    assert len(calls) == 1, "the entry was built twice"
    assert sorted(i.source for i in infos.values()) == ["built", "cache"]
    assert infos["a"].key == infos["b"].key


def test_the_thread_count_is_part_of_a_models_key(tmp_path, voc, tiny_checkpoint):
    """Floating-point sums split by thread: a model built at another thread count is another
    artifact. At all cores the key is as before (keys made before threads were part of it
    still hold)."""
    from navya.models import load_checkpoint

    model, _ = load_checkpoint(tiny_checkpoint)
    cache = ArtifactCache(ResultStore(tmp_path / "cache"))
    ctx = CompressContext(train_dataset=VOCDataset(voc, "train"), artifacts=cache)
    cores = cache.machine["cores"]
    with num_threads(cores):
        at_cores = cache.key_parts(model, PTQ, ctx)
    with num_threads(cores + 1):
        other = cache.key_parts(model, PTQ, ctx)
    assert "threads" not in at_cores and other["threads"] == cores + 1


# -- workers build, the suite reads --------------------------------------------------------------


@pytest.mark.slow  # two spawned workers and three rounds (35 s): `pytest tests/ -m slow`
def test_workers_build_and_evaluate_into_the_cache_the_engine_reads(tmp_path, voc,
                                                                    tiny_checkpoint):
    """Two worker processes build and evaluate three variants and the reference's evaluation;
    the engine then reads them (built in this run: 'built', evaluated 'now') and builds
    nothing; the models equal a build in this process (both at every core)."""
    variants = ["fp32", "int8-ptq", "fp32-fused", "prune-l1-unstructured-10"]
    kwargs = {"split": "val", "eval_images": 4}
    settings = BenchSettings(rss=False)
    cache = tmp_path / "cache"
    bench = Bench(load_workload(tiny_checkpoint, voc, **kwargs), settings,
                  cache=ResultStore(cache))
    recipe = WorkloadRecipe(str(tiny_checkpoint), str(voc), kwargs,
                            recipe_settings(settings), str(cache))
    lines = []
    summary = prebuild({"m": bench}, {"m": variants}, {"m": recipe}, 2, say=lines.append)
    assert summary is not None and not [r for r in summary.results if r.error], lines
    assert {r.variant for r in summary.results} == set(variants)
    assert len({r.pid for r in summary.results}) == 2  # both workers took tasks
    assert lines[0].startswith("navya: 4 variant(s) to build or evaluate, in 2 worker processes")
    assert len(lines) == 5 and all(f"[{i}/4]" in line and "(worker " in line
                                   for i, line in enumerate(lines[1:], 1))
    assert "2 worker processes built 3 variant(s) and evaluated 4" in summary.note()
    for v in variants[1:]:
        info = bench.build_info(v)
        assert info.source == "built" and "parallel build worker" in info.why, v
        bench.evaluation(v)
        assert bench.peek(bench_fig("EVAL_SOURCE"), v) == "now"
    bench.evaluation(REFERENCE)
    assert bench.peek(bench_fig("EVAL_SOURCE"), REFERENCE) == "now"
    # nothing was left to do: a second prebuild plans no task
    again = Bench(load_workload(tiny_checkpoint, voc, **kwargs), settings,
                  cache=ResultStore(cache))
    assert prebuild({"m": again}, {"m": variants}, {"m": recipe}, 2) is None
    assert again.build_info("int8-ptq").source == "cache"
    # the evaluations gone (their code changed): the workers read the models and evaluate
    shutil.rmtree(cache / "evaluations")
    third = Bench(load_workload(tiny_checkpoint, voc, **kwargs), settings,
                  cache=ResultStore(cache))
    summary = prebuild({"m": third}, {"m": variants}, {"m": recipe}, 2)
    assert {r.variant for r in summary.results} == set(variants)
    assert "built 0 variant(s) and evaluated 4" in summary.note()
    # a worker's model is the model this process builds: the bits of a serial run
    fresh = Bench(load_workload(tiny_checkpoint, voc, **kwargs), settings, cache=None)
    a, b = bench.model("int8-ptq"), fresh.model("int8-ptq")
    images = bench.images
    with torch.inference_mode():
        for x, y in zip(a.core(a.preprocess(images)), b.core(b.preprocess(images)), strict=True):
            assert torch.equal(x.dequantize() if x.is_quantized else x,
                               y.dequantize() if y.is_quantized else y)


def bench_fig(name):
    from navya.bench.core import Fig

    return getattr(Fig, name)


@pytest.mark.slow  # a spawned worker and a build (20 s): `pytest tests/ -m slow`
def test_a_rebuild_done_by_a_worker_is_not_done_again(tmp_path, voc, tiny_checkpoint):
    kwargs = {"split": "val", "eval_images": 4}
    settings = BenchSettings(rss=False)
    cache = tmp_path / "cache"
    recipe = WorkloadRecipe(str(tiny_checkpoint), str(voc), kwargs,
                            recipe_settings(settings), str(cache), rebuild=True)
    bench = Bench(load_workload(tiny_checkpoint, voc, **kwargs), settings,
                  cache=ResultStore(cache), rebuild=True)
    summary = prebuild({"m": bench}, {"m": ["int8-ptq"]}, {"m": recipe}, 2)
    assert summary is not None and summary.workers == 1  # one task: one worker
    assert not bench.rebuilds("int8-ptq") and bench.rebuilds("fp32-fused")
    assert bench.build_info("int8-ptq").source == "built"  # read back, labelled as built now


@pytest.mark.slow  # a spawned worker and a build (15 s)
def test_a_failing_worker_build_is_left_to_the_suite(tmp_path, voc, tiny_checkpoint):
    """A variant a worker cannot build is reported, not fatal: the suite builds it and
    reports its error in its tests."""
    kwargs = {"split": "val", "eval_images": 4}
    settings = BenchSettings(rss=False)
    recipe = WorkloadRecipe(str(tiny_checkpoint), str(tmp_path / "no-such-data"), kwargs,
                            recipe_settings(settings), str(tmp_path / "cache"))
    bench = Bench(load_workload(tiny_checkpoint, voc, **kwargs), settings,
                  cache=ResultStore(tmp_path / "cache"))
    lines = []
    summary = prebuild({"m": bench}, {"m": ["int8-ptq"]}, {"m": recipe}, 2,
                       say=lines.append)
    assert summary is not None and summary.results[0].error
    assert "FAILED" in lines[-1] and "the suite builds it itself" in lines[-1]
    assert "FAILED in a worker, built by the suite itself: int8-ptq" in summary.note()
    assert bench.build_info("int8-ptq").source == "built"  # the suite built it


# -- the suite with workers: the same run ---------------------------------------------------------

BUDGETS = """
[variants.fp32-fused]
max_map_drop_points = 0.5
min_size_ratio = 0.95

[variants.int8-ptq]
max_map_drop_points = 100
min_size_ratio = 2.0

[variants.prune-l1-unstructured-30]
max_map_drop_points = 100
min_size_ratio = 2.0
"""
VARIANTS = "fp32,fp32-fused,int8-ptq,prune-l1-unstructured-30"


@pytest.mark.slow  # two pytest processes and two workers (about a minute): `pytest -m slow`
def test_a_run_with_build_workers_is_the_run_without(tmp_path, voc, tiny_checkpoint):
    work = tmp_path / "suite"
    work.mkdir()
    for name in ("test_accuracy", "test_size", "test_baselines"):
        shutil.copy(REPO / "benchmarks" / f"{name}.py", work / f"{name}.py")
    (work / "budgets.toml").write_text(BUDGETS)

    def run(report, workers, cache):
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
             "--benchmark-disable", "--navya-data", str(voc), "--navya-checkpoint",
             str(tiny_checkpoint), "--navya-budgets", "budgets.toml", "--navya-baselines",
             "baselines", "--navya-variants", VARIANTS, "--navya-eval-images", "4",
             "--navya-cache", str(tmp_path / cache), "--navya-no-rss", "--navya-report-dir",
             report, "--navya-build-workers", workers],
            cwd=work, capture_output=True, text=True, timeout=600)

    serial, parallel = run("serial", "1", "c1"), run("parallel", "2", "c2")
    for r in (serial, parallel):  # prune-l1-unstructured-30's budget is broken on purpose
        assert r.returncode == 1, r.stdout[-3000:]
    assert "4 variant(s) to build or evaluate, in 2 worker processes" in parallel.stdout
    assert "parallel builds: 2 worker processes built 3 variant(s)" in parallel.stdout

    def verdicts(report):
        record = json.loads((work / report / "run.json").read_text())
        return {c: {k: v["outcome"] for k, v in checks.items()}
                for c, checks in record["verdicts"].items()}

    def figures(report):
        keep = ("map", "size_mb", "macs", "params", "sparsity", "size_ratio", "status")
        with open(work / report / "summary.csv", newline="") as f:
            return {r["name"]: {k: r[k] for k in keep} for r in csv.DictReader(f)}

    assert verdicts("parallel") == verdicts("serial")
    assert figures("parallel") == figures("serial")  # the same models: the same figures
    record = json.loads((work / "parallel" / "run.json").read_text())
    assert set(record["case_seconds"]) >= set(VARIANTS.split(","))
