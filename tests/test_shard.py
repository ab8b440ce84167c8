"""Issue 30, fast and torch-free: the split of a run's cases into shards
(:func:`navya.sharding.assign`) and `navya merge` (:func:`navya.sharding.merge_runs`) on shard
report folders written here with the suite's own writers (``write_summary``, ``write_run``), so
the files have the real schema. tests/test_sharding.py runs real shards as pytest processes
(slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from navya import cli
from navya.reporting.page import page_names, read_history, write_run
from navya.reporting.rows import read_csv
from navya.reporting.summary import write_summary
from navya.sharding import MergeError, assign, costs_from_run, merge_runs, parse_shard

# -- parse_shard ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, expected", [("1/1", (1, 1)), ("2/3", (2, 3)), ("3/3", (3, 3))])
def test_parse_shard(spec, expected):
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["", "1", "1/", "/2", "a/2", "1/b", "1/2/3", "0/2", "3/2",
                                  "-1/2", "0/0", "1.5/2"])
def test_parse_shard_refuses_what_is_not_k_of_n(spec):
    with pytest.raises(MergeError, match="--navya-shard"):
        parse_shard(spec)


# -- assign --------------------------------------------------------------------------------------

CASE = st.text("abcdefghij-0123456789", min_size=1, max_size=6)
CASES = st.lists(st.one_of(CASE, st.tuples(CASE, CASE).map(":".join)), min_size=1,
                 max_size=24, unique=True)


@settings(max_examples=80, deadline=None)
@given(cases=CASES, n=st.integers(1, 6), data=st.data())
def test_assign_is_a_partition_with_the_always_cases_everywhere(cases, n, data):
    always = set(data.draw(st.lists(st.sampled_from(cases), max_size=3)))
    costs = data.draw(st.none() | st.dictionaries(st.sampled_from(cases),
                                                  st.floats(0, 1e4), max_size=len(cases)))
    parts = assign(cases, n, costs, always=always)
    assert len(parts) == n
    for part in parts:
        assert always <= set(part)
        assert part == [c for c in cases if c in part]  # in the run's order, no duplicate
    owned = [c for part in parts for c in part if c not in always]
    assert sorted(owned) == sorted(c for c in cases if c not in always)  # each in one part
    # deterministic: the same parts from a copy of the inputs, given in another order
    shuffled = data.draw(st.permutations(cases))
    again = assign(shuffled, n, dict(reversed(list((costs or {}).items()))) if costs else costs,
                   always=set(always))
    assert [sorted(p) for p in again] == [sorted(p) for p in parts]


@settings(max_examples=80, deadline=None)
@given(costs=st.lists(st.floats(0.01, 1e4), min_size=1, max_size=30), n=st.integers(1, 6),
       n_always=st.integers(0, 2))
def test_assign_balances_within_the_greedy_bound(costs, n, n_always):
    """Longest first onto the lightest part: no part's owned cost exceeds the mean load by
    more than the longest case (Graham's bound for the greedy), and the heaviest part exceeds
    the lightest by at most the longest case; the always-cases count in no part."""
    cases = [f"m:v{i}" for i in range(len(costs))]
    always = {f"m:ref{i}" for i in range(n_always)}
    table = dict(zip(cases, costs, strict=True)) | dict.fromkeys(always, 1e9)
    parts = assign([*sorted(always), *cases], n, table, always=always)
    loads = [sum(table[c] for c in part if c not in always) for part in parts]
    longest = max(costs)
    assert max(loads) <= sum(costs) / n + longest + 1e-6 * sum(costs)
    assert max(loads) - min(loads) <= longest + 1e-6 * sum(costs)


def test_assign_counts_a_case_of_unknown_cost_at_the_median():
    costs = {"a": 100.0, "b": 10.0, "c": 10.0, "d": 10.0}
    # e, f unknown: 10 s each (the median), so a's part takes nothing else
    parts = assign(["a", "b", "c", "d", "e", "f"], 2, costs)
    assert parts == [["a"], ["b", "c", "d", "e", "f"]]


def test_assign_breaks_ties_by_case_id_and_part():
    parts = assign(["d", "c", "b", "a"], 2, dict.fromkeys("abcd", 1.0))
    assert parts == [["c", "a"], ["d", "b"]]  # a->1, b->2, c->1, d->2; each in run order


def test_assign_without_costs_uses_a_stable_hash():
    cases = [f"mobilenet_v2:variant-{i}" for i in range(40)]
    parts = assign(cases, 3)
    assert assign(cases, 3, {}) == parts  # no known cost: the hash too
    # the hash is of the case id alone: a case keeps its part when others come or go
    fewer = assign(cases[::2], 3)
    for k in range(3):
        assert fewer[k] == [c for c in parts[k] if c in set(cases[::2])]
    # not Python's salted hash(): the same parts in a process with another PYTHONHASHSEED
    code = ("import json, sys; from navya.sharding import assign; "
            "print(json.dumps(assign(json.loads(sys.argv[1]), 3)))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert json.loads(out.stdout) == parts


def test_assign_refuses_no_parts():
    with pytest.raises(MergeError):
        assign(["a"], 0)


def test_costs_from_run(tmp_path):
    assert costs_from_run(tmp_path / "absent.json") == {}
    (tmp_path / "bad.json").write_text("{not json")
    assert costs_from_run(tmp_path / "bad.json") == {}
    write_run(tmp_path, {"verdicts": {}})  # a run from before case_seconds: no costs
    assert costs_from_run(tmp_path / "run.json") == {}
    write_run(tmp_path, {"case_seconds": {"fp32": 12.5, "m:int8-ptq": 3, "x": "slow"}})
    assert costs_from_run(tmp_path / "run.json") == {"fp32": 12.5, "m:int8-ptq": 3.0}


def test_the_module_imports_no_torch():
    code = "import sys, navya.sharding; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- merge_runs on shard folders written with the suite's writers --------------------------------

#: a run of two models: the first one's cases are bare variant names, the second's model:variant
CASES_OF_RUN = ["fp32", "int8-ptq", "prune-30", "bf16", "other:fp32", "other:int8-ptq",
                "other:onnx-int8"]
REFERENCES = {"fp32", "other:fp32"}
COMMIT = "c0ffee" + "0" * 34
MODELS = {"tiny": {"checkpoint_sha256": "a" * 64, "data_fingerprint": "d" * 64,
                   "eval_images": 8},
          "other": {"checkpoint_sha256": "b" * 64, "data_fingerprint": "d" * 64,
                    "eval_images": 8}}
BUDGETS = {"int8-ptq": {"min_size_ratio": 3.5}, "prune-30": {"max_map_drop_points": 1.0},
           "other:int8-ptq": {"min_size_ratio": 3.5}}
COLUMNS = ["model", "name", "map", "size_mb", "size_ratio", "map_drop_points", "reference",
           "status"]


def _row(case: str, fail: set[str]) -> dict:
    model = case.split(":")[0] if ":" in case else "tiny"
    ref = case in REFERENCES
    status = ("reference" if ref else "FAIL: min_size_ratio" if case in fail else "PASS")
    size = 12.0 if ref else 3.0
    return {"model": model, "name": case, "map": 0.5 - 0.01 * len(case), "size_mb": size,
            "size_ratio": 12.0 / size, "map_drop_points": 0.0 if ref else 0.01 * len(case),
            "reference": "fp32", "status": status}


def _verdict(case: str, fail: set[str]) -> dict:
    model = case.split(":")[0] if ":" in case else "tiny"
    outcome = "fail" if case in fail else "pass"
    return {"min_size_ratio": {"outcome": outcome, "message": f"{case}: size ratio",
                               "measured": 4.0, "limit": 3.5, "model": model}}


def write_shard(folder: Path, k: int, n: int, *, fail: set[str] = frozenset(),
                slug: str = "machine-a", incomplete: str | None = None,
                parts: list[list[str]] | None = None, **override) -> Path:
    """A shard's report folder as `pytest benchmarks/ --navya-shard K/N` writes it: the cases
    of part K (each reference in every part, owned by shard 1)."""
    parts = parts or assign(CASES_OF_RUN, n, always=REFERENCES)
    measured = parts[k - 1]
    owned = [c for c in measured if c not in REFERENCES or k == 1]
    rows = [_row(c, fail) for c in measured]
    write_summary(folder, rows, COLUMNS, notes=[f"shard {k} note"], budgets=BUDGETS,
                  incomplete=incomplete)
    record = {"created": f"2026-12-06T10:0{k}:00+00:00", "git_commit": COMMIT,
              "incomplete": incomplete, "machine": {"cores": 2, "kernel_class": "avx2"},
              "machine_slug": slug, "models": MODELS, "budgets": BUDGETS,
              "verdicts": {c: _verdict(c, fail) for c in measured if c not in REFERENCES},
              "notes": [f"shard {k} note"], "history_path": None, "benchmark_json": None,
              "case_seconds": {c: 10.0 + i for i, c in enumerate(measured)},
              "shard": {"k": k, "n": n, "cases": owned, "all_cases": list(CASES_OF_RUN)}}
    record.update(override)
    write_run(folder, record, page_names(bool(incomplete))["run"])
    return folder


@pytest.fixture
def two(tmp_path):
    return [write_shard(tmp_path / "s1", 1, 2, slug="machine-a"),
            write_shard(tmp_path / "s2", 2, 2, slug="machine-b")]


def test_two_shards_merge_into_one_run(two, tmp_path):
    out = tmp_path / "merged"
    result = merge_runs(reversed(two), out, history=False)  # the order given does not matter
    assert result.incomplete is None and not result.failed and result.failing_cases == []
    for name in ("summary.csv", "summary.md", "verdicts.md", "index.html", "run.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*INCOMPLETE*"))
    rows = read_csv(out / "summary.csv")
    assert [r["name"] for r in rows] == CASES_OF_RUN  # every case once, in the run's order
    record = json.loads((out / "run.json").read_text())
    assert record["git_commit"] == COMMIT and record["models"] == MODELS
    assert set(record["verdicts"]) == set(CASES_OF_RUN) - REFERENCES
    parts = assign(CASES_OF_RUN, 2, always=REFERENCES)
    machine = {c: "machine-a" if c in parts[0] else "machine-b" for c in CASES_OF_RUN}
    machine.update(dict.fromkeys(REFERENCES, "machine-a"))  # owned by shard 1
    assert record["case_machines"] == machine
    assert {r["name"]: r["machine"] for r in rows} == machine  # the CSV shows it too
    assert sorted(m["k"] for m in record["merged_from"]) == [1, 2]
    assert {m["machine_slug"] for m in record["merged_from"]} == {"machine-a", "machine-b"}
    assert set(record["case_seconds"]) == set(CASES_OF_RUN)  # the next split's costs
    assert costs_from_run(out / "run.json") == record["case_seconds"]
    # the report does not depend on the order the folders were given in
    again = merge_runs(two, tmp_path / "again", history=False)
    assert not again.failed
    assert (tmp_path / "again" / "summary.csv").read_text() == (out / "summary.csv").read_text()
    first = json.loads((tmp_path / "again" / "run.json").read_text())
    assert {k: v for k, v in first.items() if k != "merged_from"} == \
        {k: v for k, v in record.items() if k != "merged_from"}


def test_a_case_failed_in_one_shard_fails_the_merged_run(tmp_path):
    parts = assign(CASES_OF_RUN, 2, always=REFERENCES)
    bad = next(c for c in parts[1] if c not in REFERENCES)
    shards = [write_shard(tmp_path / "s1", 1, 2),
              write_shard(tmp_path / "s2", 2, 2, fail={bad})]
    result = merge_runs(shards, tmp_path / "merged", history=False)
    assert result.failed and result.incomplete is None and result.failing_cases == [bad]
    assert f"FAIL | {bad} |" in (tmp_path / "merged" / "verdicts.md").read_text()


def test_a_shard_measuring_a_case_it_does_not_own_does_not_fail_the_run(tmp_path):
    """The references are measured by every shard and judged by shard 1's only."""
    parts = assign(CASES_OF_RUN, 2, always=REFERENCES)
    shards = [write_shard(tmp_path / "s1", 1, 2),
              write_shard(tmp_path / "s2", 2, 2, fail=set(parts[1]) & REFERENCES)]
    assert not merge_runs(shards, tmp_path / "merged", history=False).failed


def test_a_missing_shard_makes_the_merged_run_incomplete(tmp_path):
    one = write_shard(tmp_path / "s1", 1, 3)
    three = write_shard(tmp_path / "s3", 3, 3)
    out = tmp_path / "merged"
    result = merge_runs([one, three], out, history=False)
    assert result.failed and "shard(s) 2/3 missing" in result.incomplete
    lost = [c for c in assign(CASES_OF_RUN, 3, always=REFERENCES)[1] if c not in REFERENCES]
    for case in lost:
        assert case in result.incomplete
    assert (out / "summary.INCOMPLETE.md").is_file() and (out / "run.INCOMPLETE.json").is_file()
    assert not (out / "run.json").exists()  # a baseline refresh needs a complete run
    assert "INCOMPLETE" in (out / "summary.INCOMPLETE.md").read_text()


def test_an_incomplete_shard_makes_the_merged_run_incomplete(tmp_path):
    shards = [write_shard(tmp_path / "s1", 1, 2),
              write_shard(tmp_path / "s2", 2, 2, incomplete="interrupted")]
    result = merge_runs(shards, tmp_path / "merged", history=False)
    assert result.failed and "shard 2/2 incomplete: interrupted" in result.incomplete


def test_a_stale_complete_run_does_not_hide_an_interrupted_shard(tmp_path):
    """A shard whose last run was interrupted keeps the complete run.json of an earlier run
    beside its run.INCOMPLETE.json (the suite leaves the last complete set alone): the merge
    takes the newer, incomplete one, not the stale results."""
    shards = [write_shard(tmp_path / "s1", 1, 2), write_shard(tmp_path / "s2", 2, 2)]
    write_shard(tmp_path / "s2", 2, 2, incomplete="tests of int8-ptq did not run")
    assert (tmp_path / "s2" / "run.json").is_file()
    result = merge_runs(shards, tmp_path / "merged", history=False)
    assert result.failed and "shard 2/2 incomplete" in result.incomplete


def test_shards_of_another_split_leave_no_case_unmeasured(tmp_path):
    """Shards balanced by different costs files (each machine's own last run) own cases of
    different splits: a case that no shard owns makes the merged run INCOMPLETE, never a
    passing run without it."""
    hashed = assign(CASES_OF_RUN, 2, always=REFERENCES)
    owned_2 = [c for c in hashed[1] if c not in REFERENCES]
    # shard 2 split by costs that put one of its cases in part 1
    other = [list(hashed[0]), [c for c in hashed[1] if c != owned_2[0]]]
    shards = [write_shard(tmp_path / "s1", 1, 2, parts=hashed),
              write_shard(tmp_path / "s2", 2, 2, parts=other)]
    result = merge_runs(shards, tmp_path / "merged", history=False)
    assert result.failed and result.incomplete and owned_2[0] in result.incomplete


def test_overlapping_shards_are_refused(tmp_path):
    one = write_shard(tmp_path / "s1", 1, 2)
    with pytest.raises(MergeError, match="both shard 1/2: overlapping"):
        merge_runs([one, write_shard(tmp_path / "again", 1, 2)], tmp_path / "m1")
    # two shards of different splits that both own a case
    parts = assign(CASES_OF_RUN, 2, always=REFERENCES)
    case = next(c for c in parts[0] if c not in REFERENCES)
    two = write_shard(tmp_path / "s2", 2, 2, parts=[parts[0], [*parts[1], case]])
    with pytest.raises(MergeError, match=f"case {case} is owned by shards 1 and 2"):
        merge_runs([one, two], tmp_path / "m2")
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


@pytest.mark.parametrize("field, value, words", [
    ("git_commit", "f" * 40, "commit"),
    ("models", {**MODELS, "tiny": {**MODELS["tiny"], "checkpoint_sha256": "e" * 64}},
     "checkpoints and data"),
    ("models", {**MODELS, "other": {**MODELS["other"], "data_fingerprint": "0" * 64}},
     "checkpoints and data"),
    ("budgets", {**BUDGETS, "int8-ptq": {"min_size_ratio": 2.0}}, "budgets"),
])
def test_shards_of_different_runs_are_refused(tmp_path, field, value, words):
    shards = [write_shard(tmp_path / "s1", 1, 2),
              write_shard(tmp_path / "s2", 2, 2, **{field: value})]
    with pytest.raises(MergeError, match=words) as info:
        merge_runs(shards, tmp_path / "merged")
    message = str(info.value)
    assert field in message and "s1" in message and "s2" in message  # both folders named
    assert not (tmp_path / "merged").exists()


def test_shards_of_different_shard_counts_are_refused(tmp_path):
    shards = [write_shard(tmp_path / "s1", 1, 2), write_shard(tmp_path / "s2", 2, 3)]
    with pytest.raises(MergeError, match="another split"):
        merge_runs(shards, tmp_path / "merged")


@pytest.mark.parametrize("make, words", [
    (lambda d: d.mkdir(), "no run.json"),
    (lambda d: write_shard(d, 1, 2, shard=None), "no shard field"),
    (lambda d: write_shard(d, 1, 2, shard={"k": "one", "n": 2, "cases": [], "all_cases": []}),
     "shard"),
    (lambda d: write_shard(d, 2, 2, shard={"k": 3, "n": 2, "cases": [],
                                           "all_cases": CASES_OF_RUN}), "1 <= k <= n"),
])
def test_what_is_not_a_shard_is_refused_naming_the_file(tmp_path, make, words):
    folder = tmp_path / "notashard"
    make(folder)
    with pytest.raises(MergeError, match=words) as info:
        merge_runs([folder], tmp_path / "merged")
    assert "notashard" in str(info.value)


def test_a_merge_with_no_folder_is_refused(tmp_path):
    with pytest.raises(MergeError):
        merge_runs([], tmp_path / "merged")


def test_a_complete_merge_replaces_an_incomplete_one(tmp_path):
    out = tmp_path / "merged"
    one = write_shard(tmp_path / "s1", 1, 2)
    assert merge_runs([one], out, history=False).incomplete
    assert (out / "run.INCOMPLETE.json").is_file()
    merge_runs([one, write_shard(tmp_path / "s2", 2, 2)], out, history=False)
    assert (out / "run.json").is_file()
    assert not list(out.glob("*INCOMPLETE*"))


def test_a_complete_merge_appends_each_case_to_its_machine_history(two, tmp_path):
    out = tmp_path / "reports" / "merged"
    merge_runs(two, out)
    history = tmp_path / "reports" / "history"
    a, b = read_history(history / "machine-a.csv"), read_history(history / "machine-b.csv")
    assert sorted(r["variant"] for r in a + b) == sorted(CASES_OF_RUN)
    assert {r["git_commit"] for r in a + b} == {COMMIT}


# -- navya merge ---------------------------------------------------------------------------------


def test_navya_merge_exit_codes(tmp_path, capsys):
    good = [write_shard(tmp_path / "s1", 1, 2), write_shard(tmp_path / "s2", 2, 2)]
    assert cli.main(["merge", *map(str, good), "--out", str(tmp_path / "m0"),
                     "--no-history"]) == 0
    out = capsys.readouterr().out
    assert "merged verdict: PASS" in out and str(tmp_path / "m0") in out
    parts = assign(CASES_OF_RUN, 2, always=REFERENCES)
    bad = next(c for c in parts[1] if c not in REFERENCES)
    failed = write_shard(tmp_path / "f2", 2, 2, fail={bad})
    assert cli.main(["merge", str(good[0]), str(failed), "--out", str(tmp_path / "m1"),
                     "--no-history"]) == 1
    assert "merged verdict: FAIL" in capsys.readouterr().out
    assert cli.main(["merge", str(good[0]), "--out", str(tmp_path / "m2"),
                     "--no-history"]) == 1  # INCOMPLETE
    assert "INCOMPLETE" in capsys.readouterr().out
    assert cli.main(["merge", str(good[0]), str(good[0]), "--out", str(tmp_path / "m3")]) == 2
    assert "overlapping" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # --out is required
        cli.main(["merge", str(good[0])])
    assert info.value.code == 2
