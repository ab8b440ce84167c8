"""CPU kernel classes (navya.cpuclass): derived from the flags, capped by restrictions; budgets
and baselines keyed by class; variants not applicable on a class; navya doctor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_bench import CountingConfig, _bench, tiny, val, variants  # noqa: F401 (fixtures)

from navya.bench import Outcome
from navya.budgets import BudgetError, Budgets, load_budgets
from navya.catalogue import Variant, get_variant, register, unregister
from navya.cpuclass import (
    CLASSES,
    UNRESTRICTABLE,
    capability_mismatch,
    class_features,
    cpu_flags,
    host_class,
    kernel_class,
    restriction_env,
)

# flag sets as /proc/cpuinfo gives them (the kernel-relevant part)
ZEN1 = "fpu sse4_2 avx avx2 fma bmi2 sha_ni"  # the AMD EPYC 7xx1, AVX2 only
ZEN3 = "fpu sse4_2 avx avx2 fma bmi2 vaes vpclmulqdq"  # this project's AVX2 EPYC (family 25)
ZEN4 = ZEN3 + " avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16"
SPR = ZEN4 + " amx_bf16 amx_tile amx_int8"  # Intel Xeon with AMX
ICX = ZEN3 + " avx512f avx512bw avx512vl avx512_vnni"
SKX = ZEN3 + " avx512f avx512bw avx512vl"
ADL = ZEN3 + " avx_vnni"


@pytest.mark.parametrize("flags, machine, cls", [
    (ZEN1, "x86_64", "avx2"), (ZEN3, "x86_64", "avx2"), (ZEN4, "x86_64", "avx512_bf16"),
    (SPR, "x86_64", "amx"), (ICX, "x86_64", "avx512_vnni"), (SKX, "x86_64", "avx512"),
    (ADL, "x86_64", "avx2_vnni"), ("fpu sse4_2", "x86_64", "x86"),
    ("fp asimd", "aarch64", "neon"), ("fp asimd asimddp", "aarch64", "dotprod"),
    ("fp asimd asimddp i8mm sve", "aarch64", "i8mm"), ("", "ppc64le", "ppc64le"),
])
def test_the_class_is_the_highest_rung_the_flags_reach(flags, machine, cls):
    assert host_class(flags.split(), machine) == cls


def test_flags_are_read_from_cpuinfo_text():
    text = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\n"
    assert cpu_flags(text) == {"fpu", "avx2", "fma"}
    assert cpu_flags("Features\t: fp asimd asimddp\n") == {"fp", "asimd", "asimddp"}


def test_this_machine_has_a_known_class():
    assert host_class() in CLASSES or host_class() == __import__("platform").machine()


@pytest.mark.parametrize("host", ["avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"])
def test_the_avx2_restriction_caps_every_x86_class_to_avx2(host):
    env = restriction_env("avx2")
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                   "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
    assert kernel_class(host, env) == "avx2"
    assert kernel_class(host, {}) == host


def test_restrictions_cap_to_the_lowest_and_never_raise_the_class():
    assert kernel_class("amx", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}) == "avx512_vnni"
    # FBGEMM forced to AVX2 while oneDNN is not: the INT8 convolutions run AVX2 kernels
    assert kernel_class("amx", {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
                                "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}) == "avx2"
    assert kernel_class("avx2", restriction_env("avx512_vnni")) == "avx2"
    assert kernel_class("avx2", {"ONEDNN_MAX_CPU_ISA": "nonsense"}) == "avx2"
    with pytest.raises(ValueError, match="unknown CPU class 'avx3'"):
        restriction_env("avx3")
    with pytest.raises(ValueError, match="only x86 classes"):
        restriction_env("dotprod")


def test_navya_cpu_class_names_an_emulated_cpu_and_a_bad_name_is_refused():
    flags = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
    assert host_class(env={"NAVYA_CPU_CLASS": "avx2"}) == "avx2"
    assert host_class(env={"NAVYA_CPU_CLASS": " "}) == host_class(env={})
    # explicit flags are the flags' class: the override names this machine only
    assert host_class(flags, "x86_64", env={"NAVYA_CPU_CLASS": "avx2"}) == "avx512_vnni"
    with pytest.raises(ValueError, match="NAVYA_CPU_CLASS: unknown CPU class 'haswell'"):
        host_class(env={"NAVYA_CPU_CLASS": "haswell"})


@pytest.mark.parametrize("host, capability, env, wrong", [
    ("avx512_bf16", "AVX512", {}, False),
    ("avx512_bf16", "AVX2", {}, True),      # qemu-x86_64 -cpu Haswell on an AVX-512 host
    ("amx", "AVX2", {}, True),
    ("avx2", "DEFAULT", {}, True),
    ("avx2", "AVX2", {}, False),
    ("avx2_vnni", "AVX2", {}, False),       # no AVX-512: AVX2 is all ATen can use
    ("avx512_bf16", "AVX2", {"ATEN_CPU_CAPABILITY": "avx2"}, False),  # a restriction
    ("avx512_bf16", "AVX2", {"NAVYA_CPU_CLASS": "avx2"}, False),      # declared
    ("neon", "DEFAULT", {}, False),
])
def test_flags_that_promise_more_than_torch_found_are_a_mismatch(host, capability, env, wrong):
    why = capability_mismatch(host, capability, env)
    assert (why is not None) == wrong, why
    if wrong:
        assert f"class {host}" in why and "NAVYA_CPU_CLASS" in why and capability in why


def test_this_machines_flags_agree_with_torch():
    import torch

    assert capability_mismatch(host_class(), torch.backends.cpu.get_cpu_capability()) is None


def test_features_of_each_class():
    assert class_features("avx2") == {"int8_dot": False, "bf16": False}
    assert class_features("avx512_vnni") == {"int8_dot": True, "bf16": False}
    assert class_features("amx") == {"int8_dot": True, "bf16": True}


# -- budgets per class --------------------------------------------------------------------------

PER_CLASS = """
[variants.int8-ptq]
min_size_ratio = 3.8

[classes.avx512_vnni.variants.int8-ptq]
min_speedup = 2.4
max_map_drop_points = 0.5

[classes.avx2.variants.int8-ptq]
min_speedup = 1.4
min_size_ratio = 3.7
"""


def test_a_class_overrides_the_default_and_other_classes_get_no_budget(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text(PER_CLASS)
    b = load_budgets(path, ["fp32", "int8-ptq"])
    assert b.for_variant("int8-ptq", "avx2") == {"min_size_ratio": 3.7, "min_speedup": 1.4}
    assert b.lookup("int8-ptq", "min_speedup", "avx512_vnni") == (2.4, "class")
    assert b.lookup("int8-ptq", "min_size_ratio", "avx512_vnni") == (3.8, "default")
    assert b.lookup("int8-ptq", "min_speedup", "amx") == (None, "no budget for class")
    assert b.lookup("int8-ptq", "max_peak_mem_mb", "amx") == (None, "no budget")
    assert b.classes_with("int8-ptq", "min_speedup") == ["avx512_vnni", "avx2"]
    assert b.required_classes == ()


@pytest.mark.parametrize("text, problem", [
    ("[classes.avx3.variants.int8-ptq]\nmin_speedup = 1.0\n", "unknown CPU class 'avx3'"),
    ("[classes.avx2.variants.int8-ptq]\nmin_spedup = 1.0\n", "unknown budget 'min_spedup'"),
    ("[classes.avx2.variants.nope]\nmin_speedup = 1.0\n", "unknown variant 'nope'"),
    ("[classes.avx2.budgets]\nx = 1\n", r"holds only \[classes\.avx2\.variants\.<name>\]"),
    ("required_classes = ['avx512_vnni', 'avx3']\n", "required_classes: unknown CPU class 'avx3'"),
    ("required_classes = []\n", "must be a non-empty list"),
    ("[models.v3.classes.avx2.variants.int8-ptq]\nmin_speedup = -1\n",
     r"models\.v3\.classes\.avx2\.variants\.int8-ptq\.min_speedup = -1 is outside"),
])
def test_bad_class_sections_name_the_file_and_the_key(tmp_path, text, problem):
    path = tmp_path / "budgets.toml"
    path.write_text(text)
    with pytest.raises(BudgetError, match=problem) as info:
        load_budgets(path, ["fp32", "int8-ptq"])
    assert str(path) in str(info.value)


def test_a_model_inherits_required_classes_and_may_set_its_own(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text("required_classes = ['avx512_vnni']\n[variants.int8-ptq]\nmin_size_ratio = 3\n"
                    "[models.v3.variants.int8-ptq]\nmin_size_ratio = 3\n"
                    "[models.v4]\nrequired_classes = ['amx', 'avx2']\n"
                    "[models.v4.variants.int8-ptq]\nmin_size_ratio = 3\n")
    assert load_budgets(path).required_classes == ("avx512_vnni",)
    assert load_budgets(path, model="v3").required_classes == ("avx512_vnni",)
    assert load_budgets(path, model="v4").required_classes == ("amx", "avx2")


def test_the_repository_budgets_set_int8_speed_per_class_only():
    from navya.catalogue import variant_names

    path = Path(__file__).parents[1] / "benchmarks" / "budgets.toml"
    b = load_budgets(path, variant_names())
    for name in variant_names():
        if get_variant(name).kernel_dependent:
            assert "min_speedup" not in b.variants.get(name, {}), name
            assert "max_map_drop_points" not in b.variants.get(name, {}), name
    assert b.lookup("int8-ptq", "min_speedup", "avx512_bf16")[1] == "class"
    assert b.lookup("int8-ptq", "min_speedup", "i8mm")[1] == "no budget for class"


# -- the engine: budgets and baselines by class --------------------------------------------------


@pytest.fixture
def int8_like():
    register(Variant("kernely", CountingConfig(), tags=("int8",)))
    register(Variant("needs-bf16", CountingConfig(), tags=("half",),
                     needs=(("bf16", "emulated without it"),)))
    yield
    unregister("kernely")
    unregister("needs-bf16")


def _on(bench, cls):
    bench._machine = {**bench.machine, "cpu_class": cls, "kernel_class": cls}
    return bench


def test_a_kernel_dependent_baseline_is_kept_and_compared_per_class(tiny, val, int8_like, variants,  # noqa: F811,E501
                                                                    tmp_path):
    vnni = _on(_bench(tiny, val, baselines_dir=tmp_path), "avx512_vnni")
    assert vnni.check_baseline("kernely", update=True).passed
    assert vnni.commit_baselines() == [tmp_path / "classes" / "avx512_vnni" / "kernely.json"]
    data = json.loads((tmp_path / "classes" / "avx512_vnni" / "kernely.json").read_text())
    assert data["provenance"]["cpu_class"] == "avx512_vnni"
    assert vnni.check_baseline("kernely").passed
    avx2 = _on(_bench(tiny, val, baselines_dir=tmp_path), "avx2")
    verdict = avx2.check_baseline("kernely")
    assert verdict.outcome is Outcome.NOT_COMPARABLE and not verdict.passed
    assert verdict.message.startswith(
        "BASELINE NOT COMPARABLE (recorded on avx512_vnni, this machine is avx2)")
    assert "--navya-update-baselines" in verdict.message
    # recording this class's leaves the other class's file alone
    before = (tmp_path / "classes" / "avx512_vnni" / "kernely.json").read_bytes()
    avx2.check_baseline("kernely", update=True)
    assert avx2.commit_baselines() == [tmp_path / "classes" / "avx2" / "kernely.json"]
    assert (tmp_path / "classes" / "avx512_vnni" / "kernely.json").read_bytes() == before
    assert avx2.check_baseline("kernely").passed
    # a file of one class moved into another's folder is not comparable either
    (tmp_path / "classes" / "amx").mkdir()
    (tmp_path / "classes" / "amx" / "kernely.json").write_bytes(before)
    moved = _on(_bench(tiny, val, baselines_dir=tmp_path), "amx").check_baseline("kernely")
    assert moved.outcome is Outcome.NOT_COMPARABLE and "cpu_class" in moved.message
    # a float variant keeps one baseline whatever the class
    avx2.check_baseline("counted", update=True)
    assert avx2.commit_baselines() == [tmp_path / "counted.json"]


def test_a_budget_set_for_other_classes_only_is_loud_not_a_failure(tiny, val,  # noqa: F811
                                                                   int8_like):
    budgets = Budgets(None, {"kernely": {"min_size_ratio": 0.5}},
                      classes={"avx512_vnni": {"kernely": {"max_map_drop_points": 0.1}},
                               "avx2": {"kernely": {"min_size_ratio": 2.0}}})
    on_amx = _on(_bench(tiny, val, budgets=budgets), "amx")
    v = on_amx.check_budget("kernely", "max_map_drop_points")
    assert v.outcome is Outcome.NO_BUDGET and v.measured is not None
    assert v.message.startswith("NO BUDGET FOR CLASS amx: variant 'kernely' has "
                                "max_map_drop_points only for CPU class(es) avx512_vnni")
    assert on_amx.check_budget("kernely", "min_size_ratio").passed  # the default
    on_vnni = _on(_bench(tiny, val, budgets=budgets), "avx512_vnni")
    assert on_vnni.check_budget("kernely", "max_map_drop_points").passed
    on_avx2 = _on(_bench(tiny, val, budgets=budgets), "avx2")
    broke = on_avx2.check_budget("kernely", "min_size_ratio")
    assert broke.failed and "the budget of CPU class avx2" in broke.message


def test_a_baseline_recorded_by_restriction_says_so_and_holds_for_the_class(
        tiny, val, int8_like, tmp_path):  # noqa: F811
    restricted = _bench(tiny, val, baselines_dir=tmp_path)
    restricted._machine = {**restricted.machine, "cpu_class": "avx512_bf16",
                           "kernel_class": "avx2"}
    assert restricted.check_baseline("kernely", update=True).passed
    (path,) = restricted.commit_baselines()
    assert path == tmp_path / "classes" / "avx2" / "kernely.json"
    assert json.loads(path.read_text())["provenance"]["kernels"] == "restricted"
    native = _on(_bench(tiny, val, baselines_dir=tmp_path), "avx2")
    assert native.provenance("kernely")["kernels"] == "native"
    assert native.check_baseline("kernely").passed  # the class's figures, however reached


def test_a_refresh_on_a_class_does_not_wait_for_variants_not_applicable_there(
        tiny, val, int8_like, tmp_path):  # noqa: F811
    on_avx2 = _on(_bench(tiny, val, baselines_dir=tmp_path), "avx2")
    assert on_avx2.check_baseline("kernely", update=True).passed
    assert "incomplete" not in on_avx2.refresh_refusals(["kernely", "needs-bf16"])
    on_bf16 = _on(_bench(tiny, val, baselines_dir=tmp_path), "avx512_bf16")
    assert on_bf16.check_baseline("kernely", update=True).passed
    assert on_bf16.refresh_refusals(["kernely", "needs-bf16"])["incomplete"] == (
        "not measured in this run: needs-bf16")


def test_a_variant_that_needs_native_bf16_is_not_applicable_without_it(tiny, val,  # noqa: F811
                                                                       int8_like):
    assert _on(_bench(tiny, val), "avx2").unavailable("needs-bf16") == (
        "NOT APPLICABLE ON avx2: needs-bf16 needs bf16 (emulated without it)")
    assert _on(_bench(tiny, val), "avx512_bf16").unavailable("needs-bf16") is None
    assert "NOT APPLICABLE ON avx512_vnni" in get_variant("bf16").not_applicable("avx512_vnni")
    assert get_variant("bf16").not_applicable("amx") is None
    assert get_variant("int8-ptq").not_applicable("avx2") is None
    with pytest.raises(ValueError, match="unknown CPU feature 'fp8'"):
        Variant("x", CountingConfig(), needs=(("fp8", ""),))


def test_a_runtime_without_a_switch_is_keyed_by_the_host_class(tiny, val):  # noqa: F811
    bench = _bench(tiny, val)
    bench._machine = {**bench.machine, "cpu_class": "amx", "kernel_class": "avx2"}
    assert bench.cpu_class("int8-ptq") == "avx2"  # torch's kernels: restricted
    assert bench.cpu_class("onnx-int8") == "amx"  # MLAS: no switch
    assert bench.kernel_dependent("onnx-int8") and not bench.kernel_dependent("onnx-fp32")


def test_the_machine_key_carries_the_class():
    from navya.runtime import machine_key, machine_slug

    key = machine_key(1)
    assert key["cpu_class"] == host_class() and key["kernel_class"] == kernel_class()
    native = {**key, "kernel_class": key["cpu_class"]}
    assert machine_slug({**native, "kernel_class": "x86"}) == machine_slug(native) + "-kx86"


@pytest.mark.slow  # 5-18 s: in the slow set to keep `pytest tests/` under 5 minutes
def test_doctor_prints_the_class_the_runtimes_and_what_applies():
    out = subprocess.run([sys.executable, "-c", "import sys; from navya.cli import main; "
                          "sys.exit(main(sys.argv[1:]))", "doctor", "--json"],
                         capture_output=True, text=True, timeout=240,
                         cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["cpu_class"] == host_class() and report["kernel_class"] == kernel_class()
    assert set(report["runtimes"]) >= {"torch eager (ATen)", "torch oneDNN (INT8, bf16)"}
    if host_class().startswith(("avx", "amx", "x86")):
        # oneDNN's own report of its ISA agrees with the class
        isa = report["runtimes"]["torch oneDNN (INT8, bf16)"]
        assert ("AVX2" in isa) == (kernel_class() in ("avx2", "avx2_vnni")), isa
    assert any(line.startswith("mobilenet_v2:") for line in report["applies"])
    assert torch.backends.cpu.get_cpu_capability() in report["runtimes"]["torch eager (ATen)"]
    # the real detector's photographs: where they are, or that they are not here
    from navya.data.real import real_set

    own = report["own_data"]["tfod_person"]
    assert own["set"] == "voc2012-100"
    assert own["folder"] == (str(found) if (found := real_set("voc2012-100").locate()) else None)


# -- numerics of each class, and their reproduction by restriction -------------------------------

PROBE = Path(__file__).with_name("int8_probe.py")
REFERENCE = json.loads((Path(__file__).parent / "data" / "int8_numerics.json").read_text())


def _probe(env: dict[str, str], probe: Path = PROBE, *args: str) -> dict:
    import os

    out = subprocess.run([sys.executable, str(probe), *args], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_int8_numerics_follow_the_class():
    """Full-range activations times large weights: a CPU with int8 dot products matches exact
    integer arithmetic; without them the int16 accumulation saturates, and the outputs are the
    committed digest of that class (measured on an AVX2-only AMD EPYC)."""
    host = kernel_class()
    got = _probe({})
    if class_features(host)["int8_dot"]:
        assert got["max_steps_from_exact"] <= 1, got
        return
    assert got["differing_fraction"] > 0.1, got  # saturation: no int8 dot products here
    ref = REFERENCE["classes"].get(host)
    if ref is None:
        pytest.skip(f"no committed INT8 reference for class {host} (measured here: {got}); "
                    f"add it to tests/data/int8_numerics.json")
    assert got["sha256"] == ref["sha256"], (got, ref)


def test_the_avx2_restriction_reproduces_avx2_int8_numerics():
    """On any x86 CPU of class avx2 or above, torch restricted by
    ``restriction_env('avx2')`` computes the AVX2 class's INT8 outputs bit for bit."""
    if host_class() not in ("avx2", "avx2_vnni", "avx512", "avx512_vnni", "avx512_bf16", "amx"):
        pytest.skip(f"the avx2 restriction needs an x86 CPU of class avx2 or above; this one "
                    f"is {host_class()}")
    got = _probe(restriction_env("avx2"))
    assert got["capability"] == "AVX2", got
    assert got["differing_fraction"] > 0.1, got  # the saturation of AVX2 is reproduced
    assert got["sha256"] == REFERENCE["classes"]["avx2"]["sha256"], got


RUNTIME_PROBE = Path(__file__).with_name("int8_probe_ort.py")
X86_AVX2_OR_ABOVE = ("avx2", "avx2_vnni", "avx512", "avx512_vnni", "avx512_bf16", "amx")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_int8_numerics_follow_the_class(runtime):
    """The runtimes' QLinearConv: exact with int8 dot products; the committed AVX2 digest
    without them. ONNX Runtime runs at the host's class whatever the environment, OpenVINO at
    the restricted one."""
    pytest.importorskip(runtime)
    cls = host_class() if runtime in UNRESTRICTABLE else kernel_class()
    got = _probe({}, RUNTIME_PROBE, runtime)
    if class_features(cls)["int8_dot"]:
        assert got["max_steps_from_exact"] <= 1, got
        return
    ref = REFERENCE["qlinearconv"]["classes"].get(cls)
    if ref is None:
        pytest.skip(f"no committed {runtime} INT8 reference for class {cls} (measured here: "
                    f"{got}); add it to tests/data/int8_numerics.json")
    assert got["sha256"] == ref["sha256"], (got, ref)


def test_openvino_follows_the_restriction_and_onnxruntime_does_not():
    """Measured on an AVX-512 VNNI EPYC: OpenVINO's oneDNN honours ONEDNN_MAX_CPU_ISA and then
    computes the AVX2 class's QLinearConv bit for bit; ONNX Runtime's MLAS ignores it, which is
    why navya.cpuclass keys ONNX Runtime variants by the host's class."""
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    if host_class() not in X86_AVX2_OR_ABOVE:
        pytest.skip(f"the avx2 restriction needs an x86 CPU of class avx2 or above; this one "
                    f"is {host_class()}")
    env = restriction_env("avx2")
    assert _probe(env, RUNTIME_PROBE, "openvino")["sha256"] == \
        REFERENCE["qlinearconv"]["classes"]["avx2"]["sha256"]
    ort_restricted = _probe(env, RUNTIME_PROBE, "onnxruntime")
    if not class_features(host_class())["int8_dot"]:
        pytest.skip("this CPU has no int8 dot products: ONNX Runtime's being unrestricted "
                    "cannot show here")
    assert ort_restricted["max_steps_from_exact"] <= 1, ort_restricted  # still VNNI


@pytest.mark.parametrize("host, kernel, want", [
    ("avx512_bf16", "avx512_bf16", "x86"),   # no restriction
    ("avx512_bf16", "avx2", "fbgemm"),       # restricted: an AVX2 CPU's x86 engine is FBGEMM
    ("avx512_vnni", "avx512", "fbgemm"),
    ("amx", "avx512_vnni", "x86"),           # both send convolutions to oneDNN
    ("avx2", "avx2", "x86"),
    ("avx512", "avx2", "x86"),               # FBGEMM either way
])
def test_the_x86_engine_is_packed_as_the_restricted_class_would(monkeypatch, host, kernel, want):
    from navya.compress import quantize

    monkeypatch.setattr("navya.cpuclass.host_class", lambda *a, **k: host)
    monkeypatch.setattr("navya.cpuclass.kernel_class", lambda *a, **k: kernel)
    assert quantize.packing_engine("x86") == want
    assert quantize.packing_engine("qnnpack") == "qnnpack"
