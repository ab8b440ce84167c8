"""The suite gates several models in one run: each model against its own budgets section and
its own baselines, rows named by model, and ``--navya-checkpoint`` still gating one model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from navya import catalogue
from navya.catalogue import GatedModel
from navya.data.synthetic import SyntheticConfig, generate
from navya.data.voc import VOCDataset
from navya.models import build_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

BUDGETS = """
[variants.fp32-fused]
max_map_drop_points = 0.5
min_size_ratio = 0.95

[variants.int8-ptq]
max_map_drop_points = 100
min_size_ratio = 2.0

[models.mobilenet_v3_large.variants.fp32-fused]
max_map_drop_points = 0.5
min_size_ratio = 0.95
"""


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 8, "val": 8}), workers=1)
    names = VOCDataset(root, "val").class_names
    models = {}
    for name in ("mobilenet_v2", "mobilenet_v3_large"):
        torch.manual_seed(0)
        model = build_model(f"ssdlite_{name}", len(names) + 1, width_mult=0.25, image_size=96)
        path = root / f"{name}.pt"
        save_checkpoint(path, model.eval(), {"class_names": list(names)})
        models[name] = GatedModel(name, str(path), f"tiny {name}")
    return root, models


def _benchmark_files(pytester):
    """The suite's files these tests select from; in-process runs import them by module name,
    so none may share a name with a module of tests/ (test_latency, test_memory do)."""
    for name in ("test_accuracy", "test_baselines", "test_size"):
        pytester.makepyfile(**{name: (REPO / "benchmarks" / f"{name}.py").read_text()})


def _run(pytester, root, *extra):
    return pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-v", "--benchmark-disable", "--navya-data", str(root),
        "--navya-budgets", "budgets.toml", "--navya-baselines", "baselines",
        "--navya-eval-images", "8", "--navya-cache", "off", "--navya-no-rss",
        "--navya-report-dir", "reports", *extra)
@pytest.mark.slow  # a pytester suite run (10-35 s): `pytest tests/ -m slow`; .ci/run runs it
def test_two_models_each_against_its_own_budgets_and_baselines(pytester, two_models,
                                                                monkeypatch):
    root, models = two_models
    monkeypatch.setattr(catalogue, "MODELS", models)
    _benchmark_files(pytester)
    (pytester.path / "budgets.toml").write_text(BUDGETS)
    k = "map_drop or size_ratio or deterministic"
    first = _run(pytester, root, "--navya-variants", "fp32,fp32-fused,int8-ptq", "-k", k,
                 "--navya-update-baselines", "--navya-update-despite", "eval_images")
    out = first.stdout.str()
    assert first.ret == 0, out
    for line in ["test_map_drop[fp32-fused] PASSED", "test_size_ratio[int8-ptq] PASSED",
                 "test_map_drop[mobilenet_v3_large:fp32-fused] PASSED",
                 "test_size_ratio[mobilenet_v3_large:fp32-fused] PASSED",
                 # V3's section budgets no int8-ptq: said, not run
                 "mobilenet_v3_large: not gated for int8-ptq",
                 "fp32 mobilenet_v3_large against fp32 mobilenet_v2, same run: "]:
        assert line in out, line
    assert "mobilenet_v3_large:int8-ptq" not in out
    base = pytester.path / "baselines"
    assert sorted(p.name for p in base.glob("*.json")) == ["fp32-fused.json", "fp32.json"]
    # INT8's figures depend on the CPU's kernels: kept for this machine's class only
    from navya.cpuclass import kernel_class

    assert [p.relative_to(base).as_posix() for p in base.glob("classes/*/*.json")] == [
        f"classes/{kernel_class()}/int8-ptq.json"]
    assert sorted(p.name for p in (base / "mobilenet_v3_large").glob("*.json")) == [
        "fp32-fused.json", "fp32.json"]
    # the V3 baselines are V3's: its checkpoint's hash, not V2's
    import json

    v2 = json.loads((base / "fp32.json").read_text())
    v3 = json.loads((base / "mobilenet_v3_large" / "fp32.json").read_text())
    assert (v2["provenance"]["checkpoint_sha256"] != v3["provenance"]["checkpoint_sha256"])
    csv = (pytester.path / "reports" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("model,")
    assert sum(line.startswith("mobilenet_v3_large,mobilenet_v3_large:") for line in csv) == 2
    # the second run is checked against each model's own baselines; a broken V3 baseline
    # names its file
    second = _run(pytester, root, "--navya-variants", "fp32,fp32-fused", "-k", k)
    assert second.ret == 0, second.stdout.str()
    assert ("test_deterministic_baseline[mobilenet_v3_large:fp32-fused] PASSED"
            in second.stdout.str())
    (base / "mobilenet_v3_large" / "fp32-fused.json").write_text("{broken")
    third = _run(pytester, root, "--navya-variants", "fp32,fp32-fused", "-k", k)
    assert third.ret != 0
    assert "mobilenet_v3_large/fp32-fused.json" in third.stdout.str() + third.stderr.str()


@pytest.mark.slow  # 5-18 s: in the slow set to keep `pytest tests/` under 5 minutes
def test_one_checkpoint_gates_one_model_and_bad_model_names_are_usage_errors(
        pytester, two_models, monkeypatch):
    root, models = two_models
    monkeypatch.setattr(catalogue, "MODELS", models)
    _benchmark_files(pytester)
    (pytester.path / "budgets.toml").write_text(BUDGETS)
    one = _run(pytester, root, "--navya-variants", "fp32,fp32-fused", "-k", "size_ratio",
               "--navya-checkpoint", models["mobilenet_v3_large"].checkpoint)
    assert one.ret == 0, one.stdout.str()
    assert "test_size_ratio[fp32-fused] PASSED" in one.stdout.str()
    assert "mobilenet_v3_large:" not in one.stdout.str()
    bad = _run(pytester, root, "--navya-models", "mobilenet_v4")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown model(s) mobilenet_v4; known: mobilenet_v2, mobilenet_v3_large" in (
        bad.stderr.str())
    both = _run(pytester, root, "--navya-models", "all", "--navya-checkpoint",
                models["mobilenet_v2"].checkpoint)
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    assert "--navya-checkpoint gates one model" in both.stderr.str()


OWN_BUDGETS = BUDGETS + """
[models.own_data.variants.int8-ptq]
max_map_drop_points = 100

[models.own_data.variants.fp32-fused]
max_map_drop_points = 100
"""


@pytest.mark.slow  # two pytester suite runs (~27 s): `pytest tests/ -m slow`; .ci/run runs it
def test_a_model_with_its_own_photos_classes_and_intervals(pytester, two_models, monkeypatch,
                                                             tmp_path):
    """A gated model that brings its own data set (a named real set, found through its
    variable), detects fewer classes than the annotations name (the others ignored), reports
    bootstrap intervals, and leaves its opt-in variants out unless named; without its data it is
    not gated, loudly, and naming it is a usage error."""
    from navya.data import real

    root, models = two_models
    own = tmp_path / "own"
    generate(own, SyntheticConfig(splits={"train": 6, "val": 10}, seed=3), workers=1)
    voc = next(own.glob("VOCdevkit/VOC*"))
    names = VOCDataset(voc, "val").class_names[:2]  # a detector of two of the classes
    torch.manual_seed(1)
    ckpt = tmp_path / "own.pt"
    save_checkpoint(ckpt, build_model("ssdlite_mobilenet_v2", 3, width_mult=0.25,
                                      image_size=96).eval(), {"class_names": list(names)})
    monkeypatch.setitem(real.REAL_SETS, "tiny-own", real.RealSet(
        "tiny-own", "NAVYA_TEST_OWN_PHOTOS", "nowhere/tiny_own", "a tiny set of the test"))
    monkeypatch.setattr(catalogue, "MODELS", {**models, "own_data": GatedModel(
        "own_data", str(ckpt), "tiny, own data", data="tiny-own", other_classes="ignore",
        intervals=True, opt_in=("fp32-fused",))})
    _benchmark_files(pytester)
    (pytester.path / "budgets.toml").write_text(OWN_BUDGETS)
    monkeypatch.setenv("NAVYA_TEST_OWN_PHOTOS", str(voc))
    run = _run(pytester, root, "-k", "map_drop", "--navya-models", "mobilenet_v2,own_data",
               "--navya-variants", "fp32,int8-ptq")
    out = run.stdout.str()
    assert run.ret == 0, out
    assert "test_map_drop[own_data:int8-ptq] PASSED" in out
    summary = (pytester.path / "reports" / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| own_data:int8-ptq"))
    assert row.count("[") >= 2, row  # mAP and its drop, each with its interval
    verdicts = (pytester.path / "reports" / "verdicts.md").read_text()
    assert "95% bootstrap interval over 8 images" in verdicts  # --navya-eval-images 8
    # its opt-in variant runs when named, not by default (collection alone says which cases)
    alone = _run(pytester, root, "--collect-only", "-q", "--navya-models", "own_data")
    assert "test_map_drop[int8-ptq]" in alone.stdout.str(), alone.stdout.str()
    assert "fp32-fused" not in alone.stdout.str()
    named = _run(pytester, root, "--collect-only", "-q", "--navya-models", "own_data",
                 "--navya-variants", "fp32,fp32-fused")
    assert "test_map_drop[fp32-fused]" in named.stdout.str(), named.stdout.str()
    # without its data: not gated by default (said), a usage error when named
    monkeypatch.setenv("NAVYA_TEST_OWN_PHOTOS", str(tmp_path / "gone"))
    monkeypatch.setattr(catalogue, "MODELS", {"mobilenet_v2": models["mobilenet_v2"],
                                              "own_data": catalogue.MODELS["own_data"]})
    default = _run(pytester, root, "-k", "map_drop", "--navya-variants", "fp32")
    text = default.stdout.str()
    assert default.ret == 0, text
    assert "MODEL NOT GATED: own_data: the real photographs 'tiny-own'" in text
    assert "test_map_drop[fp32]" in text and "[own_data:" not in text
    missing = _run(pytester, root, "--navya-models", "own_data")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    assert f"not at {tmp_path / 'gone'}: set NAVYA_TEST_OWN_PHOTOS" in missing.stderr.str()
