"""The measurement engine (navya.bench) on a tiny model, without pytest's plugin machinery:
each figure computed once, one row schema shared by the summary, ``navya measure`` and the
reports, verdicts as data, models released after use."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from navya.bench import (
    SAME_RUN_FIELDS,
    Bench,
    BenchError,
    BenchSettings,
    Fig,
    Workload,
    measure,
    row_columns,
)
from navya.budgets import Budgets
from navya.catalogue import Variant, register, unregister
from navya.compress.base import register_transform
from navya.metrics.measure import ROW_FIELDS


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    from navya.data.synthetic import SyntheticConfig, generate
    from navya.data.voc import VOCDataset

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 4, "val": 6}, image_size=96), workers=1)
    return VOCDataset(root, "val")


@pytest.fixture(scope="module")
def tiny(val):
    from navya.models import build_model

    torch.manual_seed(0)
    return build_model("ssdlite_mobilenet_v2", len(val.class_names) + 1, width_mult=0.25,
                       image_size=96).eval()


@dataclass(frozen=True)
class CountingConfig:
    """A test variant: the float model, counting how often the transform runs."""

    scale: float = 1.0


BUILDS: list[str] = []


@register_transform(CountingConfig)
def _counting(model, config, context):
    BUILDS.append("built")
    out = copy.deepcopy(model).eval()
    if config.scale != 1.0:
        with torch.no_grad():
            for p in out.core.parameters():
                p.mul_(config.scale)
    return out


@pytest.fixture
def variants():
    register(Variant("counted", CountingConfig()))
    register(Variant("damaged", CountingConfig(scale=0.5)))
    yield
    unregister("counted")
    unregister("damaged")


def _bench(tiny, val, **kw) -> Bench:
    settings = BenchSettings(rounds=3, warmup=1, rss=False)
    return Bench(Workload(tiny, val, provenance={"split": "val"}), settings, **kw)


def test_each_figure_is_computed_once(tiny, val, variants, monkeypatch):
    import navya.metrics.evaluate as evaluate

    calls = []
    real = evaluate.evaluate_model
    monkeypatch.setattr(evaluate, "evaluate_model",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    BUILDS.clear()
    bench = _bench(tiny, val)
    first = bench.evaluation("counted")
    assert bench.evaluation("counted") is first
    bench.map_drop_points("counted")
    bench.deterministic_figures("counted")
    bench.stats("counted")
    bench.stats("counted")
    assert BUILDS == ["built"] and len(calls) == 2  # the variant and the reference, once each
    assert bench.has(Fig.STATS, "counted") and bench.peek(Fig.SPEEDUP, "counted") is None


def test_release_drops_models_but_keeps_figures(tiny, val, variants):
    bench = _bench(tiny, val)
    bench.timed_model("counted")
    size = bench.stats("counted")["size_bytes"]
    assert bench.has(Fig.MODEL, "counted") and bench.has(Fig.TIMED_MODEL, "counted", 1)
    bench.release("counted")
    assert not bench.has(Fig.MODEL, "counted") and not bench.has(Fig.TIMED_MODEL, "counted", 1)
    assert bench.stats("counted")["size_bytes"] == size  # answered from the cache
    bench.model("fp32")
    bench.release("fp32")  # the reference is kept for comparisons
    assert bench.has(Fig.MODEL, "fp32")


def test_summary_measure_and_report_give_identical_figures(tiny, val, variants, tmp_path):
    from navya.reporting.rows import read_csv
    from navya.reporting.summary import write_summary

    bench = _bench(tiny, val)
    printed = bench.measurement("counted").to_row()  # what `navya measure` prints
    summary = bench.row("counted")  # what the suite's summary shows
    assert list(summary) == row_columns(val.class_names)
    assert list(summary)[: len(ROW_FIELDS)] == list(ROW_FIELDS)
    paths = write_summary(tmp_path, bench.rows(), row_columns(val.class_names))
    written = next(r for r in read_csv(paths[0]) if r["name"] == "counted")
    for key, value in printed.items():
        if key in ("timestamp", "git_commit"):
            continue
        for other, where in ((summary, "summary"), (written, "summary.csv")):
            if isinstance(value, float) and math.isnan(value):
                assert other[key] is None or math.isnan(other[key]), (key, where)
            else:
                assert other[key] == value, (key, where, other[key], value)
    for key in SAME_RUN_FIELDS:
        assert key in written


def test_budget_verdicts_are_data(tiny, val, variants):
    budgets = Budgets(None, {"counted": {"min_size_ratio": 0.99, "max_map_drop_points": 5.0},
                             "damaged": {"min_size_ratio": 1.5}})
    bench = _bench(tiny, val, budgets=budgets)
    ok = bench.check_budget("counted", "min_size_ratio")
    assert ok.passed and ok.measured == pytest.approx(1.0) and ok.limit == 0.99
    bad = bench.check_budget("damaged", "min_size_ratio")
    assert bad.failed and "BROKE budget min_size_ratio" in bad.message
    none = bench.check_budget("counted", "min_zip_size_ratio")
    assert none.outcome.skipped and none.message.startswith("NO BUDGET")
    ref = bench.check_budget("fp32", "min_size_ratio")
    assert ref.outcome.skipped
    assert bench.status("counted") == "PASS"
    assert bench.status("damaged") == "FAIL: min_size_ratio"
    assert bench.status("fp32") == "reference"
    assert bench.status("never-seen") == "not checked"


def test_a_speedup_below_its_floor_is_judged_on_the_median_of_fresh_runs(tiny, val,
                                                                         variants):
    """One slow run (a noisy spell of the host) does not break a floor that the median of
    the confirmation runs meets; a speedup that stays low does."""
    from types import SimpleNamespace

    budgets = Budgets(None, {"counted": {"min_speedup": 0.7}})
    settings = BenchSettings(rounds=3, warmup=1, rss=False, isolated_speed=False,
                             speed_rounds=5)
    for confirm, outcome in ((1, "FAIL"), (3, "PASS")):
        bench = Bench(Workload(tiny, val, provenance={"split": "val"}), settings,
                      budgets=budgets)
        bench._cache[(Fig.SPEEDUP, "counted", 0)] = [SimpleNamespace(speedup=0.5)]
        bench._cache[(Fig.SPEED_PAIRS, "counted", 0)] = [{}]
        verdict = bench.check_budget("counted", "min_speedup", confirm=confirm)
        assert verdict.outcome.name == outcome, verdict.message
    assert "median of 3 fresh speed runs, the first 0.5" in verdict.message
    assert verdict.measured > 0.7  # the same model: about 1


def test_failing_figure_is_an_error_not_a_pass(tiny, val):
    @dataclass(frozen=True)
    class BrokenConfig:
        pass

    @register_transform(BrokenConfig)
    def broken(model, config, context):
        raise RuntimeError("kernel missing")

    register(Variant("broken", BrokenConfig()))
    try:
        bench = _bench(tiny, val, budgets=Budgets(None, {"broken": {"min_size_ratio": 1.0}}))
        with pytest.raises(RuntimeError, match="kernel missing"):
            bench.check_budget("broken", "min_size_ratio")
        assert bench.status("broken").startswith("ERROR")
        assert bench.row("broken")["status"].startswith("ERROR")
    finally:
        unregister("broken")


def test_baselines_compare_and_name_their_provenance(tiny, val, variants, tmp_path):
    bench = _bench(tiny, val, baselines_dir=tmp_path)
    assert bench.check_baseline("counted").outcome.skipped  # none yet
    assert bench.check_baseline("counted", update=True).passed
    assert not (tmp_path / "counted.json").exists()  # written at the end of a complete run
    assert bench.refresh_refusals(["counted"]) == {}
    assert "not measured in this run: damaged" in bench.refresh_refusals(
        ["counted", "damaged"])["incomplete"]
    assert bench.commit_baselines() == [tmp_path / "counted.json"]
    data = json.loads((tmp_path / "counted.json").read_text())
    assert data["provenance"]["config"] == {"type": "CountingConfig", "scale": 1.0}
    assert bench.check_baseline("counted").passed
    # a run on another split is not comparable (not a deviation)
    other = Bench(Workload(tiny, val, provenance={"split": "test"}),
                  BenchSettings(rounds=3, warmup=1, rss=False), baselines_dir=tmp_path)
    verdict = other.check_baseline("counted")
    assert verdict.outcome.skipped and "split" in verdict.message
    # the same config under another variant's baseline is a deviation when figures differ
    Path(tmp_path / "damaged.json").write_text(
        (tmp_path / "counted.json").read_text().replace('"scale": 1.0', '"scale": 0.5')
        .replace('"variant": "counted"', '"variant": "damaged"'))
    moved = bench.check_baseline("damaged")
    assert moved.failed and "moved from the baseline" in moved.message
    # a refresh from a run on another split than the baselines on disk is refused
    other.check_baseline("counted", update=True)
    refused = other.refresh_refusals(["counted"])
    assert set(refused) == {"split"} and '"test"' in refused["split"]


def test_a_model_that_outputs_nan_is_an_error_naming_the_variant(tiny, val):
    broken = copy.deepcopy(tiny)
    with torch.no_grad():
        next(broken.core.parameters()).fill_(float("nan"))
    bench = Bench(Workload(broken, val, provenance={}), BenchSettings(rss=False))
    with pytest.raises(BenchError, match="variant 'fp32' outputs NaN or inf"):
        bench.map("fp32")
    assert bench.status("fp32").startswith("ERROR")


def test_measure_validates_before_work(tiny, val):
    for kwargs in ({"threads": 0}, {"latency_rounds": 2}, {"eval_images": 0}, {"name": ""}):
        with pytest.raises(ValueError):
            measure(tiny, val, **{"name": "x", **kwargs})
    with pytest.raises(BenchError):
        BenchSettings(rounds=1)


def test_a_users_model_is_held_only_to_budgets_relative_to_its_own_fp32(tiny, val, variants,
                                                                         monkeypatch):
    """A checkpoint that is not the shipped one: the absolute budget (peak memory, written for
    the shipped model) is measured and shown but NOT APPLICABLE, even where it would break;
    the relative ones still fail a variant that breaks them."""
    budgets = Budgets(None, {"damaged": {"min_size_ratio": 1.5, "max_peak_mem_mb": 0.001}})
    monkeypatch.setattr(Bench, "peak_mem_mb", lambda self, v: 42.0)
    shipped = _bench(tiny, val, budgets=budgets)
    assert shipped.check_budget("damaged", "max_peak_mem_mb").failed
    user = _bench(tiny, val, budgets=budgets, user_model="shipped.pt; this run gates my.pt")
    mem = user.check_budget("damaged", "max_peak_mem_mb")
    assert mem.outcome.name == "NOT_APPLICABLE" and mem.measured == 42.0
    assert "NOT APPLICABLE to your model" in mem.message and "my.pt" in mem.message
    assert "min_size_ratio" in mem.message  # names what it is held to instead
    assert user.check_budget("damaged", "min_size_ratio").failed


def test_the_session_says_which_budgets_it_applied(tmp_path):
    from navya.figures import relative_budgets
    from navya.session import _budgets_note, _user_model

    shipped = tmp_path / "shipped.pt"
    shipped.write_bytes(b"the shipped weights")
    import hashlib

    sha = hashlib.sha256(b"the shipped weights").hexdigest()
    assert _user_model(None, shipped, sha) is None  # the default checkpoint
    assert _user_model(str(shipped), shipped, sha) is None  # named, but the same file
    why = _user_model("my.pt", shipped, "f" * 64)
    assert "my.pt" in why and "ffffffffffff" in why and sha[:12] in why
    note = _budgets_note(why, tmp_path / "budgets.toml")
    assert all(k in note for k in relative_budgets()) and "max_peak_mem_mb" in note
    assert "NOT APPLICABLE" in note
    assert "every budget" in _budgets_note(None, tmp_path / "budgets.toml")
