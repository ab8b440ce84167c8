"""The per-machine speed gate (issue: a gate that is right on any machine): the fresh-process
speed worker, injected slowdowns, tolerances from the recorded spread, machine keys, and the
suite's verdicts (pytester, tiny model, pinned worker)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from navya.budgets import BaselineError
from navya.metrics.speed import YARDSTICK, inject_slowdown, run_speed_job, yardstick
from navya.runtime import machine_key, machine_slug, pinned, timing_cpu
from navya.speed_baselines import (
    SpeedDecision,
    SpeedEntry,
    read_speed_baseline,
    speed_baseline_path,
    speed_tolerance,
    write_speed_entry,
)

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


# -- pure pieces -------------------------------------------------------------------------------


def test_tolerance_grows_with_spread_and_family_and_has_a_floor():
    t1 = speed_tolerance(0.01, 10, 1)
    t14 = speed_tolerance(0.01, 10, 14)
    assert 0.02 < t1 < t14 < 0.04  # z(0.99) = 2.33, z(1 - 0.01/14) = 3.19, times sqrt(1.1)
    assert speed_tolerance(0.0, 10, 14) == 0.01  # the floor
    assert speed_tolerance(0.02, 10, 14) == pytest.approx(2 * t14)


def test_decision_directions_and_message():
    entry = SpeedEntry((3.0, 3.1, 3.2, 3.1, 3.0))
    tol = speed_tolerance(entry.spread_rel, 5, 1)
    assert SpeedDecision("speedup of x", (3.1,), entry, tol).passed
    slow = SpeedDecision("speedup of x", (2.5,), entry, tol)
    assert not slow.passed and slow.change < -0.15
    assert "REGRESSED beyond the tolerance" in slow.message()
    cost = SpeedEntry((2.8, 2.9, 2.85), higher_is_better=False)  # t(fp32) / t(yardstick)
    tol = speed_tolerance(cost.spread_rel, 3, 1)
    assert SpeedDecision("t(fp32) / t(yardstick)", (2.85,), cost, tol).passed
    assert not SpeedDecision("t(fp32) / t(yardstick)", (3.3,), cost, tol).passed


def test_speed_baseline_round_trip_and_broken_files(tmp_path):
    path = speed_baseline_path(tmp_path, "some-machine")
    machine, protocol = {"cpu_model": "X"}, {"rounds": 60}
    write_speed_entry(path, "a", SpeedEntry((1.0, 1.1)), machine, protocol, "now")
    write_speed_entry(path, "b", SpeedEntry((2.0,), False, {"type": "C"}), machine, protocol,
                      "now")
    got = read_speed_baseline(path)
    assert got["a"].values == (1.0, 1.1) and got["b"].higher_is_better is False
    assert got["b"].config == {"type": "C"}
    # another protocol starts the file afresh instead of mixing runs of two protocols
    write_speed_entry(path, "c", SpeedEntry((3.0,)), machine, {"rounds": 30}, "now")
    assert list(read_speed_baseline(path)) == ["c"]
    path.write_text("{not json")
    with pytest.raises(BaselineError, match=str(path)):
        read_speed_baseline(path)
    path.write_text(json.dumps({"entries": {"a": {"values": ["3.1"]}}}))
    with pytest.raises(BaselineError, match="entries.a.values"):
        read_speed_baseline(path)


def test_machine_key_names_what_speed_depends_on():
    key = machine_key(1)
    assert {"cpu_model", "isa", "cores", "torch_version", "threads",
            "quantized_engine"} <= set(key)
    slug = machine_slug(key)
    assert slug == machine_slug(dict(key)) and "/" not in slug and " " not in slug
    assert machine_slug({**key, "threads": 2}) != slug
    assert machine_slug({**key, "cpu_model": "Intel(R) Xeon(R) Platinum 8488C"}) != slug


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux affinity only")
def test_pinned_moves_the_thread_and_restores_it():
    before = os.sched_getaffinity(0)
    cpu = timing_cpu()
    with pinned(cpu) as placement:
        assert os.sched_getaffinity(0) == {cpu} and placement == {"pinned_cpu": cpu}
    assert os.sched_getaffinity(0) == before
    with pinned(None) as placement:
        assert placement["pinned_cpu"] is None and "reason" in placement


def test_injected_slowdown_costs_its_fraction():
    class Core(torch.nn.Module):
        def forward(self, x):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.004:
                pass
            return x

    class Det(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.core = Core()

        def forward(self, x):
            return self.core(x)

    det = Det()
    inject_slowdown(det, "network", 0.5)
    t0 = time.perf_counter()
    for _ in range(5):
        det(torch.zeros(1))
    assert (time.perf_counter() - t0) / 5 >= 0.0059  # 4 ms + 50 %
    with pytest.raises(ValueError, match="network"):
        inject_slowdown(det, "elsewhere", 0.1)


def test_yardstick_is_fixed():
    a, b = yardstick(64)(), yardstick(64)()
    assert torch.equal(a, b) and torch.isfinite(a)


# -- the worker on a tiny detector ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    from navya.data.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 4, "val": 4}, image_size=160), workers=1)
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_voc, tmp_path_factory):
    from navya.data.voc import VOCDataset
    from navya.models import build_model, save_checkpoint

    names = VOCDataset(tiny_voc, "val").class_names
    torch.manual_seed(0)
    # the network is ~80 % of this model's end-to-end call (measured: 9.1 of 11.6 ms)
    model = build_model("ssdlite_mobilenet_v2", len(names) + 1, width_mult=0.5,
                        image_size=160).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, {"class_names": list(names)})
    return path


@pytest.mark.slow  # 5-18 s: in the slow set to keep `pytest tests/` under 5 minutes
def test_worker_times_candidates_the_yardstick_stored_builds_and_the_pipeline(
        tiny_checkpoint, tiny_voc, tmp_path):
    from navya.data.voc import VOCDataset
    from navya.models import load_checkpoint

    model, _ = load_checkpoint(tiny_checkpoint)
    images = [VOCDataset(tiny_voc, "val")[0][0]]
    torch.save(model, tmp_path / "stored.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a pickle")
    run = run_speed_job(model, {"same": model, "slower": model}, images, rounds=15, warmup=2,
                        cpu=timing_cpu(), with_yardstick=True,
                        inject={"network": {"slower": 1.0}}, reference_name="fp32",
                        pipeline=True,
                        builds={"slower": tmp_path / "stored.pt", "fp32": tmp_path / "stored.pt",
                                "same": tmp_path / "broken.pt"})
    assert set(run.results) == {"same", "slower", YARDSTICK, "slower@build", "fp32@build",
                                "fp32@pipeline"}
    assert run.placement["pinned_cpu"] == timing_cpu()
    assert 0.8 < run.results["same"].speedup < 1.25
    assert run.results["slower"].speedup < 0.85  # the network took twice as long
    assert run.results[YARDSTICK].a.rounds == 15
    assert run.results["slower@build"].speedup < 0.85  # twice the network against the stored
    assert 0.8 < run.results["fp32@build"].speedup < 1.25
    assert 0.5 < run.results["fp32@pipeline"].speedup < 1.0  # the network is most of a call
    assert "same@build" in run.errors  # a build that does not load: said, not a crash
    with pytest.raises(ValueError, match="reserved"):
        run_speed_job(model, {YARDSTICK: model}, images)
    with pytest.raises(ValueError, match="neither the reference"):
        run_speed_job(model, {"same": model}, images, builds={"other": "x.pt"})


# -- the gate in the suite (pytester) ----------------------------------------------------------------


@pytest.fixture
def gate(pytester, tiny_voc, tiny_checkpoint):
    pytester.makepyfile(test_speed=(REPO / "benchmarks" / "test_speed.py").read_text())
    (pytester.path / "budgets.toml").write_text(
        "[variants.fp32-fused]\nmin_speedup = 0.5\n")

    def run(*extra):
        return pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-v", "-rs", "--navya-data", str(tiny_voc),
            "--navya-checkpoint", str(tiny_checkpoint), "--navya-budgets", "budgets.toml",
            "--navya-baselines", "baselines", "--navya-variants", "fp32,fp32-fused",
            "--navya-eval-images", "2", "--navya-speed-rounds", "60", "--navya-no-rss",
            "--navya-report-dir", "reports", *extra)

    return run
@pytest.mark.slow  # a pytester suite run (10-35 s): `pytest tests/ -m slow`; .ci/run runs it
def test_no_speed_baseline_is_loud_and_floors_still_apply(gate, pytester):
    other = speed_baseline_path(pytester.path / "baselines", "intel-xeon-2c-amx_int8-t1-x86")
    write_speed_entry(other, "fp32-fused", SpeedEntry((1.1, 1.12, 1.09)), {"cpu_model": "Xeon"},
                      {"rounds": 40}, "then")
    result = gate("-k", "fp32-fused")
    out = result.stdout.str()
    assert result.ret == 0, out
    slug = machine_slug(machine_key(1))
    assert f"NO SPEED BASELINE for machine {slug}" in out  # another machine's file: not used
    assert "test_speedup[fp32-fused] PASSED" in out  # the portable floor still applies
    assert "record one on this machine with `pytest benchmarks/ --navya-record-speed 10`" in out


@pytest.mark.slow  # three pytester suite runs with speed workers (~50 s): `pytest tests/ -m slow`; .ci/run runs it
def test_recorded_baseline_passes_unchanged_and_catches_an_injected_slowdown(gate, pytester):
    only_fused = ("-k", "speed_regression and fp32-fused")
    recorded = gate("--navya-record-speed", "3", *only_fused)
    assert recorded.ret == 0, recorded.stdout.str()
    path = speed_baseline_path(pytester.path / "baselines", machine_slug(machine_key(1)))
    entries = read_speed_baseline(path)
    assert set(entries) == {"fp32-fused", "fp32-fused@build"}
    assert len(entries["fp32-fused"].values) == 3 and entries["fp32-fused"].higher_is_better
    build = entries["fp32-fused@build"]  # the build timed against itself: about 1
    assert 0.9 < build.center < 1.1 and build.higher_is_better and len(build.sha256) == 64
    # 25 % of the network, about 21 % end to end. Three recorded runs of a tiny model give
    # tolerances of 4-13 % here (spreads 1.2-3.8 %), so a 10 % slowdown is caught in most runs
    # but not all (a clean-clone CI run missed one); the detection rates of 5-10 % slowdowns
    # at full scale, ten recorded runs, are the power study's (docs/results/gate_power/).
    # A real slowdown is in every run: judged on the first run alone (confirmation can only
    # turn an outlying first run into a pass, never a pass into a failure).
    slowed = gate("--navya-inject-slowdown", "fp32-fused:network:0.25",
                  "--navya-speed-confirm", "1", *only_fused)
    out = slowed.stdout.str()
    assert "test_speed_regression[fp32-fused] FAILED" in out, out
    assert "t(stored build) / t(fp32-fused now)" in out
    assert "REGRESSED beyond the tolerance" in out


def test_reference_cost_is_recorded_against_the_yardstick(tiny_checkpoint, tiny_voc, tmp_path):
    """The reference's entry is t(fp32) / t(yardstick), where higher is worse (in-process runs
    here: the protocol is recorded, so these are not comparable with worker runs)."""
    from navya.bench import Bench, BenchSettings, load_workload

    settings = BenchSettings(rss=False, speed_rounds=5, warmup=1, isolated_speed=False)
    bench = Bench(load_workload(tiny_checkpoint, tiny_voc, eval_images=2), settings,
                  baselines_dir=tmp_path)
    assert bench.check_speed_baseline("fp32", record=3).outcome.name == "UPDATED"
    entry = read_speed_baseline(bench.speed_baseline_path)["fp32"]
    assert entry.higher_is_better is False and len(entry.values) == 3
    assert len(entry.reference_ms) == 3 and min(entry.reference_ms) > 0
    worker_protocol = Bench(bench.workload, BenchSettings(rss=False), baselines_dir=tmp_path)
    assert worker_protocol.check_speed_baseline("fp32").outcome.name == "NOT_COMPARABLE"


def test_stored_build_is_used_only_when_present_unchanged_and_of_the_same_config(
        tiny_checkpoint, tiny_voc, tmp_path):
    from navya.bench import Bench, BenchSettings, load_workload

    settings = BenchSettings(rss=False, speed_rounds=5, warmup=1, isolated_speed=False)
    workload = load_workload(tiny_checkpoint, tiny_voc, eval_images=2)
    bench = Bench(workload, settings, baselines_dir=tmp_path)
    assert bench.check_speed_baseline("fp32-fused", record=3).outcome.name == "UPDATED"
    path = bench.speed_baseline_path
    sha = bench._store_build("fp32-fused")
    write_speed_entry(path, "fp32-fused@build",
                      SpeedEntry((1.0, 1.01, 0.99), True, bench.config_dict("fp32-fused"),
                                 sha256=sha),
                      bench.machine, bench.speed_protocol(), "now")

    def state():
        return Bench(workload, settings, baselines_dir=tmp_path).stored_build("fp32-fused")

    assert state() == (bench.build_path("fp32-fused"), None)
    verdict = Bench(workload, settings, baselines_dir=tmp_path).check_speed_baseline(
        "fp32-fused")  # in-process runs time no build: said, not judged
    # (the speedup itself is timed in process, 5 rounds: on a busy host it may fail its own
    # tolerance, which is not what this test is about)
    assert verdict.outcome.name in ("PASS", "FAIL") and "NO STORED BUILD" in verdict.message
    assert "t(stored build)" not in verdict.message, verdict.message
    build = bench.build_path("fp32-fused")
    build.write_bytes(build.read_bytes() + b"x")
    assert "does not match the SHA-256" in state()[1]
    build.unlink()
    assert "is missing" in state()[1]
    write_speed_entry(path, "fp32-fused@build", SpeedEntry((1.0,), True, {"other": 1}, (), sha),
                      bench.machine, bench.speed_protocol(), "now")
    assert "recorded for config" in state()[1]


@pytest.mark.slow  # 5-18 s: in the slow set to keep `pytest tests/` under 5 minutes
def test_the_gate_study_tests_the_suites_own_family_of_speed_checks(tmp_path):
    """Issue 28, bug 7: `navya gate-power` assumed 29 speed checks a run where the default run
    compared 67; it now counts them from the suite's own collection."""
    from navya.power import suite_family_size

    family, cases = suite_family_size(REPO, "--navya-models", "mobilenet_v2")
    from navya.catalogue import get_variant, variant_names

    assert cases == len([v for v in variant_names() if v not in variant_names("slow")
                         and get_variant(v).fits("mobilenet_v2")])
    assert family == 2 * cases + 1 != 29


def test_the_no_speed_baseline_note_names_the_machine_file_or_the_cases_it_lacks(tmp_path):
    """Issue 28, bug 4: the note was cut from the verdict's message at ": the speed", which the
    message of a case missing from an existing file does not contain: it repeated the hint and
    said only the portable floors were checked."""
    from types import SimpleNamespace

    from navya.suite import SuiteSession

    path = tmp_path / "speed" / "m.json"
    bench = SimpleNamespace(speed_baseline_path=path,
                            machine={"cpu_model": "AMD EPYC", "cores": 2, **machine_key(1)})
    session = SimpleNamespace(notes=[], _speed_missing={},
                              _speed_missing_note=SuiteSession._speed_missing_note)
    for case in ("fp32", "int8-ptq"):  # no file: one note for the machine
        SuiteSession._no_speed_baseline(session, bench, case, case)
    assert len(session.notes) == 1 and session.notes[0].startswith("NO SPEED BASELINE for machine")
    path.parent.mkdir()
    path.write_text("{}")
    session.notes.clear()
    for case in ("fp32", "mobilenet_v3_large:fp32"):  # a file without their entries
        SuiteSession._no_speed_baseline(session, bench, case.split(":")[-1], case)
    assert session.notes == [f"NO SPEED BASELINE for fp32, mobilenet_v3_large:fp32 in {path}: "
                             "their speed is checked against the budget floors of this CPU class "
                             "only, where it has them; record them with `pytest benchmarks/ "
                             "--navya-record-speed 10`"]
