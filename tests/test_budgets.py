"""Budgets file validation, budget verdicts, and baseline read/compare/atomic write."""

import json
import math

import pytest

from navya.budgets import (
    BaselineError,
    BudgetCheck,
    BudgetError,
    compare_baseline,
    load_budgets,
    provenance_mismatch,
    read_baseline,
    write_baseline,
)

GOOD = """
[tolerances]
map_abs = 0.001

[variants.int8-ptq]
max_map_drop_points = 0.5
min_size_ratio = 3.8
min_speedup = 3.0
"""


def _write(tmp_path, text, name="budgets.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_valid_budgets(tmp_path):
    b = load_budgets(_write(tmp_path, GOOD), ["fp32", "int8-ptq"])
    assert b.for_variant("int8-ptq") == {"max_map_drop_points": 0.5, "min_size_ratio": 3.8,
                                         "min_speedup": 3.0}
    assert b.for_variant("fp32") == {}
    assert b.tolerances["map_abs"] == 0.001
    assert b.tolerances["ap_abs"] == 0.01  # default kept


def test_the_repository_budgets_file_is_valid():
    from pathlib import Path

    from navya.catalogue import variant_names

    path = Path(__file__).parents[1] / "benchmarks" / "budgets.toml"
    budgets = load_budgets(path, variant_names())
    assert "fp32-fused" in budgets.variants


@pytest.mark.parametrize("text, problem", [
    ("[variants.nope]\nmin_speedup = 1.0\n", "unknown variant 'nope'"),
    ("[variants.fp32]\nmin_spedup = 1.0\n", "unknown budget 'min_spedup'"),
    ("[variants.fp32]\nmin_speedup = 'fast'\n", "must be a finite number"),
    ("[variants.fp32]\nmin_speedup = true\n", "must be a finite number"),
    ("[variants.fp32]\nmin_size_ratio = -3\n", "variants.fp32.min_size_ratio = -3 is outside "
     "its meaningful range (> 0)"),
    ("[variants.fp32]\nmax_map_drop_points = 1e309\n", "variants.fp32.max_map_drop_points "
     "must be a finite number, got inf"),
    ("[variants.fp32]\nmax_map_drop_points = -0.5\n", "outside its meaningful range (>= 0 and "
     "<= 100)"),
    ("[variants.fp32]\nmin_macs_reduction = 1.0\n", "outside its meaningful range (>= 0 and "
     "< 1)"),
    ("[tolerances]\nmap_abs = nan\n", "tolerances.map_abs must be a finite number"),
    ("[tolerance]\nmap_abs = 1\n", "unknown section"),
    ("[tolerances]\nmap_abz = 1\n", "unknown tolerance 'map_abz'"),
    ("[tolerances]\nmap_abs = -1\n", "must be >= 0"),
    ("[variants.fp32\nmin_speedup = 1\n", "not valid TOML"),
])
def test_bad_budgets_name_file_and_problem(tmp_path, text, problem):
    path = _write(tmp_path, text)
    with pytest.raises(BudgetError) as exc:
        load_budgets(path, ["fp32"])
    assert str(path) in str(exc.value) and problem in str(exc.value)


def test_missing_budgets_file(tmp_path):
    with pytest.raises(BudgetError, match="not found"):
        load_budgets(tmp_path / "absent.toml")


@pytest.mark.parametrize("key, measured, limit, passed", [
    ("min_speedup", 3.1, 3.0, True), ("min_speedup", 2.9, 3.0, False),
    ("min_speedup", 3.0, 3.0, True), ("max_map_drop_points", 0.4, 0.5, True),
    ("max_map_drop_points", 0.6, 0.5, False), ("max_peak_mem_mb", math.nan, 10, False),
])
def test_budget_check_verdicts(key, measured, limit, passed):
    check = BudgetCheck("v", key, measured, limit)
    assert check.passed is passed
    msg = check.message()
    assert "'v'" in msg and key in msg and ("BROKE" in msg) is (not passed)


FIG = {"map": 0.70, "ap": {"a": 0.8, "b": None}, "size_bytes": 1000, "size_zip_bytes": 900,
       "macs": 10**9, "effective_macs": 10**9, "params": 100, "nonzero_params": 90,
       "sparsity": 0.1, "prunable_sparsity": 0.12, "map_voc07": 0.69}
PROV = {"checkpoint_sha256": "abc", "data_fingerprint": "def", "eval_images": 500,
        "split": "val", "config": None}
TOL = {"map_abs": 0.002, "ap_abs": 0.01, "size_rel": 0.01, "macs_rel": 0.0,
       "sparsity_abs": 1e-4, "params_rel": 0.0}


def test_baseline_round_trip_and_no_deviation(tmp_path):
    path = tmp_path / "b" / "v.json"
    write_baseline(path, "v", FIG, PROV)
    assert [p.name for p in path.parent.iterdir()] == ["v.json"]  # no temp file left
    base = read_baseline(path)
    assert base["figures"] == FIG
    assert compare_baseline("v", base, FIG, TOL) == []
    assert provenance_mismatch(base, PROV) == []
    assert provenance_mismatch(base, {**PROV, "eval_images": 100})


def test_baseline_deviations_name_old_new_and_tolerance(tmp_path):
    path = tmp_path / "v.json"
    write_baseline(path, "v", FIG, PROV)
    new = {**FIG, "map": 0.69, "macs": 10**9 + 1, "ap": {"a": 0.8, "b": 0.5},
           "size_bytes": 1005}  # size within 1 %
    devs = compare_baseline("v", read_baseline(path), new, TOL)
    fields = {d.field for d in devs}
    assert fields == {"map", "macs", "ap[b]"}
    msg = next(d for d in devs if d.field == "map").message()
    assert "0.7" in msg and "0.69" in msg and "0.002" in msg and "'v'" in msg


def test_broken_baseline_file_is_a_clear_error(tmp_path):
    path = tmp_path / "v.json"
    path.write_text('{"figures": {"map": 0.7')
    with pytest.raises(BaselineError) as exc:
        read_baseline(path)
    assert str(path) in str(exc.value) and "--navya-update-baselines" in str(exc.value)
    path.write_text(json.dumps({"map": 0.7}))
    with pytest.raises(BaselineError, match="baseline key .figures. must be an object"):
        read_baseline(path)
    assert read_baseline(tmp_path / "absent.json") is None


def test_baseline_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "v.json"
    write_baseline(path, "v", FIG, PROV)
    before = path.read_text()
    with pytest.raises(TypeError):
        write_baseline(path, "v", {**FIG, "map": object()}, PROV)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.json"]


def test_a_run_without_a_budget_for_a_variant_is_refused(tmp_path):
    path = _write(tmp_path, GOOD)
    assert load_budgets(path, ["fp32", "int8-ptq"], require=["int8-ptq"])
    with pytest.raises(BudgetError, match="no budget for variant.s. int8-dynamic: this run "
                                          "would gate nothing"):
        load_budgets(path, ["fp32", "int8-ptq", "int8-dynamic"],
                     require=["int8-ptq", "int8-dynamic"])
    empty = _write(tmp_path, "", "empty.toml")
    with pytest.raises(BudgetError, match=str(empty)):
        load_budgets(empty, ["int8-ptq"], require=["int8-ptq"])


@pytest.mark.parametrize("change, problem", [
    (lambda d: d["figures"].update(map="0.95"), "figures.map must be a finite number, got '0.95'"),
    (lambda d: d.update(figures=[1, 2]), "baseline key 'figures' must be an object"),
    (lambda d: d["figures"].pop("macs"), "lacks the guarded figure figures.macs"),
    (lambda d: d["figures"].pop("size_bytes"), "lacks the guarded figure figures.size_bytes"),
    (lambda d: d["figures"].update(ap={"a": "high"}), "figures.ap.a must be a number or null"),
    (lambda d: d["figures"].update(ap=[0.5]), "figures.ap must be an object"),
    (lambda d: d.update(variant="other"), "baseline of variant 'other', expected 'v'"),
])
def test_malformed_baselines_name_the_file_and_the_key(tmp_path, change, problem):
    path = tmp_path / "v.json"
    write_baseline(path, "v", FIG, PROV)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError) as exc:
        read_baseline(path, "v")
    assert str(path) in str(exc.value) and problem in str(exc.value)


def test_committed_baselines_are_well_formed():
    from pathlib import Path

    from navya.catalogue import variant_names

    folder = Path(__file__).parents[1] / "benchmarks" / "baselines"
    files = sorted(folder.glob("*.json"))
    assert files and {f.stem for f in files} <= set(variant_names())
    for f in files:
        assert read_baseline(f, f.stem)["figures"]["map"] >= 0


def test_a_model_section_has_its_own_variants_and_inherits_the_tolerances(tmp_path):
    from navya.budgets import budget_models

    path = tmp_path / "budgets.toml"
    path.write_text("[tolerances]\nmap_abs = 0.003\n\n[variants.int8-ptq]\nmin_size_ratio = 3.8\n\n"
                    "[models.v3.tolerances]\nap_abs = 0.02\n\n"
                    "[models.v3.variants.int8-ptq]\nmin_size_ratio = 3.5\n")
    assert budget_models(path) == ["v3"]
    top = load_budgets(path)
    v3 = load_budgets(path, model="v3", require=["int8-ptq"])
    assert top.for_variant("int8-ptq") == {"min_size_ratio": 3.8}
    assert v3.for_variant("int8-ptq") == {"min_size_ratio": 3.5}
    assert v3.tolerances["map_abs"] == 0.003 and v3.tolerances["ap_abs"] == 0.02
    with pytest.raises(BudgetError, match=r"no section \[models\.v4\]"):
        load_budgets(path, model="v4")
    with pytest.raises(BudgetError, match=r"no budget for variant\(s\) fp32-fused of model v3"):
        load_budgets(path, model="v3", require=["fp32-fused"])
    path.write_text("[models.v3.variants.int8-ptq]\nmin_size_ratio = -1\n")
    with pytest.raises(BudgetError, match=r"models\.v3\.variants\.int8-ptq\.min_size_ratio = -1"):
        load_budgets(path)  # every section is validated, whichever is asked for
    path.write_text("[models.v3.budgets]\nx = 1\n")
    with pytest.raises(BudgetError, match=r"unknown section\(s\) \['budgets'\] in \[models\.v3\]"):
        load_budgets(path)
