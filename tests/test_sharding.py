"""Issue 30: one commit's gate over several machines. The cases of a run split into shards
(balanced by measured cost, references in every shard), and `navya merge` joins the shards'
report folders into one run whose verdicts and deterministic figures are a single run's."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from navya.data.synthetic import SyntheticConfig, generate
from navya.data.voc import VOCDataset
from navya.models import build_model, save_checkpoint
from navya.sharding import MergeError, assign, costs_from_run, merge_runs, parse_shard

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]

# -- assigning cases -------------------------------------------------------------------------


def test_parse_shard():
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(MergeError, match="--navya-shard"):
            parse_shard(bad)


cases_st = st.lists(st.text("abcdefgh:-", min_size=1, max_size=8), min_size=1, max_size=30,
                    unique=True)


@settings(max_examples=60, deadline=None)
@given(cases=cases_st, n=st.integers(1, 5), data=st.data())
def test_every_case_is_in_exactly_one_part_and_the_always_ones_in_all(cases, n, data):
    always = set(data.draw(st.lists(st.sampled_from(cases), max_size=3)))
    costs = data.draw(st.none() | st.dictionaries(st.sampled_from(cases),
                                                  st.floats(0, 1000), max_size=len(cases)))
    parts = assign(cases, n, costs, always=always)
    assert len(parts) == n
    for part in parts:
        assert always <= set(part)
        assert part == [c for c in cases if c in part]  # the run's order
    owned = [c for part in parts for c in part if c not in always]
    assert sorted(owned) == sorted(c for c in cases if c not in always)
    assert parts == assign(list(cases), n, costs, always=always)  # deterministic


@settings(max_examples=60, deadline=None)
@given(costs=st.lists(st.floats(0.1, 1000), min_size=1, max_size=25), n=st.integers(1, 4))
def test_the_parts_are_balanced_within_the_longest_case(costs, n):
    """Longest first onto the lightest part: the heaviest part exceeds the lightest by at most
    the longest case (the greedy bound)."""
    cases = [f"v{i}" for i in range(len(costs))]
    parts = assign(cases, n, dict(zip(cases, costs, strict=True)))
    loads = [sum(costs[cases.index(c)] for c in part) for part in parts]
    assert max(loads) - min(loads) <= max(costs) + 1e-9


def test_without_history_the_parts_come_from_a_stable_hash(tmp_path):
    cases = [f"variant-{i}" for i in range(12)]
    assert assign(cases, 3) == assign(cases, 3)
    assert costs_from_run(tmp_path / "absent.json") == {}
    (tmp_path / "run.json").write_text(json.dumps({"case_seconds": {"a": 3.5, "b": "x"}}))
    assert costs_from_run(tmp_path / "run.json") == {"a": 3.5}


# -- two shards as two processes, merged: the same run --------------------------------------

BUDGETS = """
[variants.fp32-fused]
max_map_drop_points = 0.5
min_size_ratio = 0.95

[variants.int8-ptq]
max_map_drop_points = 100
min_size_ratio = 2.0

[variants.prune-l1-unstructured-10]
max_map_drop_points = 100
min_size_ratio = 0.95

[variants.prune-l1-unstructured-30]
max_map_drop_points = 0.001
min_size_ratio = 0.95
"""
VARIANTS = "fp32,fp32-fused,int8-ptq,prune-l1-unstructured-30,prune-l1-unstructured-10"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One unsharded run and its two shards, each a separate pytest process on a tiny model
    (shared artifact cache, as CI's shards share theirs by machine)."""
    root = tmp_path_factory.mktemp("shards")
    generate(root / "voc", SyntheticConfig(splits={"train": 8, "val": 8}), workers=1)
    names = VOCDataset(root / "voc", "val").class_names
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", len(names) + 1, width_mult=0.25, image_size=96)
    save_checkpoint(root / "tiny.pt", model.eval(), {"class_names": list(names)})
    work = root / "suite"
    work.mkdir()
    for name in ("test_accuracy", "test_size", "test_baselines"):
        shutil.copy(REPO / "benchmarks" / f"{name}.py", work / f"{name}.py")
    (work / "budgets.toml").write_text(BUDGETS)
    def run(report, *extra):
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hydra_pytest",
             "-p", "no:kgb", "-p", "no:anyio", "-q", "--benchmark-disable",
             "--navya-data", str(root / "voc"), "--navya-checkpoint", str(root / "tiny.pt"),
             "--navya-budgets", "budgets.toml", "--navya-baselines", "baselines",
             "--navya-variants", VARIANTS, "--navya-eval-images", "8",
             "--navya-cache", str(root / "cache"), "--navya-no-rss",
             "--navya-report-dir", report, *extra],
            cwd=work, capture_output=True, text=True, timeout=600)

    single = run("single")
    shards = [run(f"shard{k}", "--navya-shard", f"{k}/2") for k in (1, 2)]
    return work, single, shards


def _verdicts(folder: Path, name: str = "run.json") -> dict:
    record = json.loads((folder / name).read_text())
    return {c: {k: v["outcome"] for k, v in checks.items()}
            for c, checks in record["verdicts"].items()}


def _figures(folder: Path) -> dict:
    keep = ("map", "map_voc07", "size_mb", "size_zip_mb", "macs", "params", "sparsity",
            "map_drop_points", "size_ratio", "status", "reference", "runtime")
    with open(folder / "summary.csv", newline="") as f:
        return {r["name"]: {k: r[k] for k in keep} for r in csv.DictReader(f)}


@pytest.mark.slow  # three pytest processes (about a minute): `pytest tests/ -m slow`
def test_two_shards_merged_equal_one_run(runs, tmp_path):
    work, single, shards = runs
    # the budget of prune-l1-unstructured-30 is broken on purpose: the runs fail, alike
    assert single.returncode == 1, single.stdout[-3000:]
    assert {s.returncode for s in shards} <= {0, 1}
    one = json.loads((work / "shard1" / "run.json").read_text())["shard"]
    two = json.loads((work / "shard2" / "run.json").read_text())["shard"]
    assert "fp32" in one["cases"] and "fp32" not in two["cases"]  # measured by both, owned by 1
    assert sorted(one["cases"] + two["cases"]) == sorted(VARIANTS.split(","))
    result = merge_runs([work / "shard2", work / "shard1"], tmp_path / "merged", history=False)
    assert result.incomplete is None
    assert result.failed and result.failing_cases == ["prune-l1-unstructured-30"]
    assert _verdicts(tmp_path / "merged") == _verdicts(work / "single")
    assert _figures(tmp_path / "merged") == _figures(work / "single")
    merged = json.loads((tmp_path / "merged" / "run.json").read_text())
    assert merged["models"] == json.loads((work / "single" / "run.json").read_text())["models"]
    assert set(merged["case_machines"]) == set(VARIANTS.split(","))
    for name in ("summary.md", "index.html", "verdicts.md"):
        assert (tmp_path / "merged" / name).is_file(), name


@pytest.mark.slow
def test_a_merge_refuses_what_is_not_one_run(runs, tmp_path):
    work, _single, _shards = runs
    with pytest.raises(MergeError, match="overlapping shards"):
        merge_runs([work / "shard1", work / "shard1"], tmp_path / "a", history=False)
    with pytest.raises(MergeError, match="no shard field"):
        merge_runs([work / "single", work / "shard1"], tmp_path / "b", history=False)
    other = tmp_path / "other"
    shutil.copytree(work / "shard2", other)
    record = json.loads((other / "run.json").read_text())
    record["git_commit"] = "0" * 40
    (other / "run.json").write_text(json.dumps(record))
    with pytest.raises(MergeError, match="commit"):
        merge_runs([work / "shard1", other], tmp_path / "c", history=False)
    alone = merge_runs([work / "shard1"], tmp_path / "d", history=False)
    assert alone.failed and "shard(s) 2/2 missing" in alone.incomplete
    assert (tmp_path / "d" / "summary.INCOMPLETE.md").is_file()


def test_a_shard_cannot_refresh_baselines(pytester):
    result = pytester.runpytest_subprocess("--navya-shard", "1/2",
                                           "--navya-update-baselines")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*refresh from an unsharded run*"])
