"""Proof that the suite catches regressions: the real benchmarks/ files, run with pytester.

Three injected variants each break one budget (30 % slower, noise on the weights, a size
ballast) and must fail with a message naming the variant, the budget and the measured value;
an untouched run passes and writes its reports. Uses the shipped reference checkpoint on the
first 12 images of the synthetic val split (generated here, identical to the default set's).
"""

from pathlib import Path

import pytest

from navya._io import current_umask
from navya.data.synthetic import SyntheticConfig, generate
from navya.models.checkpoint import DEFAULT_CHECKPOINT

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(),
                       reason=f"no shipped checkpoint at {DEFAULT_CHECKPOINT}"),
]

INJECTED = '''
pytest_plugins = ["navya.suite"]

import copy
import time
from dataclasses import dataclass

import torch

from navya.catalogue import Variant, register
from navya.compress.base import register_transform
from navya.models.ssdlite import SSDLite


@dataclass(frozen=True)
class SlowerConfig:
    pass


@dataclass(frozen=True)
class NoisyConfig:
    pass


@dataclass(frozen=True)
class BloatedConfig:
    pass


@dataclass(frozen=True)
class GoneConfig:
    """A runtime that is not installed here."""

    def unavailable(self):
        from navya.compress.deploy import RuntimeUnavailable

        raise RuntimeUnavailable("the gone runtime is not installed (test)")


class SlowerSSDLite(SSDLite):
    """Same detections, 30 % more time: busy-waits 0.3x the time the real forward took."""

    def forward(self, images, targets=None):
        t0 = time.perf_counter()
        out = super().forward(images, targets)
        spent = time.perf_counter() - t0
        while time.perf_counter() - t0 < 1.3 * spent:
            pass
        return out


@register_transform(SlowerConfig)
def slower(model, config, context):
    m = copy.deepcopy(model).eval()
    m.__class__ = SlowerSSDLite
    return m


@register_transform(NoisyConfig)
def noisy(model, config, context):
    m = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in m.core.modules():
            if isinstance(mod, torch.nn.Conv2d):
                w = mod.weight
                w.add_(torch.randn(w.shape, generator=g) * w.std() * 0.5)
    return m


@register_transform(BloatedConfig)
def bloated(model, config, context):
    m = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(0)
    m.register_buffer("ballast", torch.randn(4_000_000, generator=g))
    return m


register(Variant("slow30", SlowerConfig()))
register(Variant("noisy", NoisyConfig()))
register(Variant("bloated", BloatedConfig()))


@register_transform(GoneConfig)
def gone(model, config, context):
    raise AssertionError("an unavailable variant is never built")


register(Variant("gone", GoneConfig()))
'''

BUDGETS = """
[variants.fp32-fused]
max_map_drop_points = 0.5
min_size_ratio = 0.95
min_speedup = 0.8

[variants.slow30]
max_map_drop_points = 0.5
min_speedup = 0.9

[variants.noisy]
max_map_drop_points = 1.0
min_size_ratio = 0.95

[variants.bloated]
max_map_drop_points = 0.5
min_size_ratio = 0.95

[variants.gone]
max_map_drop_points = 0.5
"""


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 8, "val": 12}), workers=1)
    return root


@pytest.fixture
def suite(pytester, tiny_voc):
    for path in sorted((REPO / "benchmarks").glob("test_*.py")):
        pytester.makepyfile(**{path.stem: path.read_text()})
    pytester.makeconftest(INJECTED)
    (pytester.path / "budgets.toml").write_text(BUDGETS)

    def run(variants, *extra, inprocess=False, cache="off"):
        runner = pytester.runpytest_inprocess if inprocess else pytester.runpytest_subprocess
        return runner(
            "-p", "no:cacheprovider", "-v", "--benchmark-disable",
            "--navya-data", str(tiny_voc), "--navya-checkpoint", str(DEFAULT_CHECKPOINT),
            "--navya-budgets", "budgets.toml", "--navya-baselines", "baselines",
            "--navya-variants", variants, "--navya-eval-images", "12", "--navya-rounds", "9",
            "--navya-speed-rounds", "9", "--navya-speed-confirm", "1", "--navya-cache", cache,
            "--navya-no-rss", "--navya-report-dir", "reports", *extra)

    return run
@pytest.mark.slow  # a pytester suite run (10-35 s): `pytest tests/ -m slow`; .ci/run runs it
def test_injected_regressions_fail_with_variant_budget_and_value(suite):
    result = suite("fp32,fp32-fused,slow30,noisy,bloated",
                   "-k", "map_drop or size_ratio or (speedup and (slow30 or fp32-fused))")
    result.stdout.fnmatch_lines([  # variant by variant, in selection order
        "*test_speedup[[]slow30[]] FAILED*",
        "*test_map_drop[[]noisy[]] FAILED*",
        "*test_size_ratio[[]bloated[]] FAILED*",
    ], consecutive=False)
    out = result.stdout.str()
    for line in ["variant 'slow30' BROKE budget min_speedup: measured 0.",
                 "variant 'noisy' BROKE budget max_map_drop_points: measured ",
                 "variant 'bloated' BROKE budget min_size_ratio: measured 0."]:
        assert line in out, line
    # each injected variant breaks only its own budget; the untouched ones pass
    for ok in ["test_map_drop[slow30] PASSED", "test_size_ratio[noisy] PASSED",
               "test_map_drop[bloated] PASSED", "test_speedup[fp32-fused] PASSED",
               "test_map_drop[fp32-fused] PASSED"]:
        assert ok in out, ok
    assert "NO BUDGET" in out  # zip size and MACs budgets are absent here: skipped loudly
    assert result.parseoutcomes().get("failed") == 3
@pytest.mark.slow  # a pytester suite run (10-35 s): `pytest tests/ -m slow`; .ci/run runs it
def test_a_second_run_reads_the_cache_and_rebuild_ignores_it(suite, pytester):
    # built-in variants only: in-process runs import a conftest once per run, and the injected
    # variants would be registered twice
    (pytester.path / "conftest.py").unlink()
    (pytester.path / "budgets.toml").write_text(
        "[variants.fp32-fused]\nmax_map_drop_points = 0.5\nmin_size_ratio = 0.95\n")
    cache = str(pytester.path / "store")
    args = ("fp32,fp32-fused", "test_accuracy.py", "test_size.py")  # no name that tests/ has
    first = suite(*args, inprocess=True, cache=cache)
    assert first.ret == 0, first.stdout.str()
    first.stdout.fnmatch_lines(["*0 variant(s) from the cache*1 built now*evaluations: 0 from "
                                "the cache, 2 computed*"])
    second = suite(*args, inprocess=True, cache=cache)
    out = second.stdout.str()
    assert second.ret == 0, out
    second.stdout.fnmatch_lines(["*1 variant(s) from the cache*0 built now*evaluations: 2 from "
                                 "the cache, 0 computed*"])
    assert first.stdout.str().count("PASSED") == out.count("PASSED")
    rebuilt = suite(*args, "--navya-rebuild", "fp32-fused", "--navya-remeasure",
                    inprocess=True, cache=cache)
    rebuilt.stdout.fnmatch_lines(["*0 variant(s) from the cache*1 built now*evaluations: 1 from "
                                  "the cache, 1 computed*(--navya-remeasure: nothing reused)*"])
    bad = suite(*args, "--navya-rebuild", "nope", inprocess=True, cache=cache)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--navya-rebuild: 'all' or variant names; unknown nope" in bad.stderr.str()


def test_an_unavailable_variant_is_skipped_loudly_in_every_test(suite):
    result = suite("fp32,gone", "test_accuracy.py", "test_size.py", inprocess=True)
    out = result.stdout.str()
    assert result.ret == 0 and "FAILED" not in out
    assert result.parseoutcomes().get("skipped", 0) >= 2
    assert out.count("VARIANT UNAVAILABLE on this machine: gone: the gone runtime is not "
                     "installed (test)") >= 2, out
    assert "SKIPPED gone: unavailable on this machine: the gone runtime" in out


@pytest.mark.slow  # 5-18 s: in the slow set to keep `pytest tests/` under 5 minutes
def test_untouched_run_passes_and_writes_reports(suite, pytester):
    result = suite("fp32,fp32-fused", "-k", "not latency and not peak_memory")
    outcomes = result.parseoutcomes()
    assert result.ret == 0 and outcomes.get("passed", 0) >= 3, outcomes
    out = result.stdout.str()
    assert "navya summary" in out and "fp32-fused" in out
    reports = pytester.path / "reports"
    csv = (reports / "summary.csv").read_text().splitlines()
    # the model of each row, then the engine's row schema
    assert csv[0].startswith("model,name,map,map_voc07,eval_images")
    assert ",map_drop_points,size_ratio,zip_size_ratio,macs_reduction,speedup," in csv[0]
    assert [line.split(",")[1] for line in csv[1:]] == ["fp32", "fp32-fused"]
    assert (reports / "tradeoff.png").read_bytes().startswith(b"\x89PNG")
    assert "| fp32-fused | PASS" in (reports / "summary.md").read_text()
@pytest.mark.slow  # a pytester suite run (10-35 s): `pytest tests/ -m slow`; .ci/run runs it
def test_baselines_refresh_only_from_a_complete_comparable_run_and_then_guard(suite, pytester):
    # a refresh from a run with crashing tests and a non-default evaluation size: refused,
    # nothing written, the crash is ERROR in the report, the run fails
    pytester.makepyfile(test_crash="def test_crash(variant, navya_suite):\n"
                                   "    navya_suite.bench.size_ratio(variant)\n"
                                   "    raise ValueError('boom')\n")
    sel = ("-k", "test_deterministic_baseline or test_crash")
    refused = suite("fp32,fp32-fused", *sel, "--navya-update-baselines",
                    "--navya-eval-images", "10")  # 10 of the split's 12: not the default
    out = refused.stdout.str()
    assert refused.ret == pytest.ExitCode.TESTS_FAILED, out
    assert "BASELINE REFRESH REFUSED, nothing written" in out
    assert "test_crash[fp32-fused] (call)" in out and "not the default 500" in out
    assert not (pytester.path / "baselines").exists()
    rows = (pytester.path / "reports" / "summary.csv").read_text().splitlines()
    crashed = next(r for r in rows if r.startswith("mobilenet_v2,fp32-fused,"))
    assert "ERROR: test_crash[fp32-fused] call: ValueError: boom" in crashed
    (pytester.path / "test_crash.py").unlink()

    sel = ("-k", "test_deterministic_baseline")  # (the temp dir's own name contains "baseline")
    # the whole 12-image split, fewer than the default 500: complete (a small real set is
    # evaluated whole), so no override is needed
    ok = suite("fp32-fused", *sel, "--navya-update-baselines")
    assert ok.ret == 0 and "baselines rewritten" in ok.stdout.str(), ok.stdout.str()
    assert "REFUSED" not in ok.stdout.str()
    path = pytester.path / "baselines" / "fp32-fused.json"
    assert path.exists() and oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    again = suite("fp32-fused", *sel).parseoutcomes()
    assert again.get("passed") == 1 and "failed" not in again, again
    # tamper with the recorded mAP: the next run fails naming old, new and tolerance
    import json

    data = json.loads(path.read_text())
    data["figures"]["map"] += 0.01
    path.write_text(json.dumps(data))
    bad = suite("fp32-fused", *sel)
    assert bad.parseoutcomes().get("failed") == 1
    bad.stdout.fnmatch_lines(["*variant 'fp32-fused': map moved from *tolerance 0.002 abs*"])


def test_a_run_that_would_gate_nothing_is_refused(suite, pytester):
    # in process (fast: every run stops before measuring); the injected variants' conftest
    # registers them at import, which a second in-process session would repeat
    (pytester.path / "conftest.py").unlink()
    empty = suite("", "-k", "map_drop", inprocess=True)
    assert empty.ret == pytest.ExitCode.USAGE_ERROR
    empty.stderr.fnmatch_lines(["*--navya-variants '' selects no variant*"])
    (pytester.path / "budgets.toml").write_text("[variants.fp32-fused]\n")
    ungated = suite("fp32,fp32-fused", "-k", "map_drop", inprocess=True)
    assert ungated.ret == pytest.ExitCode.USAGE_ERROR
    ungated.stderr.fnmatch_lines(["*budgets.toml: no budget for variant(s) fp32-fused*"])
    (pytester.path / "budgets.toml").write_text("[variants.fp32-fused]\nmin_speedup = 0.8\n")
    (pytester.path / "baselines").mkdir()
    (pytester.path / "baselines" / "nonesuch.json").write_text("{}")
    stray = suite("fp32,fp32-fused", "-k", "map_drop", inprocess=True)
    assert stray.ret == pytest.ExitCode.USAGE_ERROR
    stray.stderr.fnmatch_lines(["*nonesuch.json: a baseline for unknown variant 'nonesuch'*"])


def test_unknown_variant_is_a_usage_error(suite):
    result = suite("fp32,nonesuch", "-k", "map_drop")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown variant(s) nonesuch; known: fp32*"])


# -- plugin hygiene (collection only: fast) -----------------------------------------------------

PROJECT_CONFTEST = '''
from dataclasses import dataclass

import pytest

from navya.catalogue import Variant
from navya.compress.base import register_transform


@dataclass(frozen=True)
class MineConfig:
    pass


@register_transform(MineConfig)
def mine(model, config, context):
    return model


def pytest_navya_variants(config):
    return [Variant("project-mine", MineConfig(), "a project's own variant")]


@pytest.fixture
def variant():
    return "the project's own fixture"
'''
@pytest.mark.slow  # a pytester suite run (10-35 s): `pytest tests/ -m slow`; .ci/run runs it
def test_plugin_loads_by_entry_point_and_touches_only_its_own_tests(pytester):
    """No ``pytest_plugins`` line: the plugin comes from the installed ``pytest11`` entry point.
    A project's test with an argument named ``variant`` keeps its own fixture; navya's
    benchmark tests (they request ``navya_suite``) are parametrized over the selection, which
    includes the variant the project registered through the ``pytest_navya_variants`` hook."""
    pytester.makeconftest(PROJECT_CONFTEST)
    pytester.makepyfile(
        test_project="def test_mine(variant):\n    assert variant == \"the project's own fixture\"\n",
        test_size=(REPO / "benchmarks" / "test_size.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q",
                                           "--navya-variants", "fp32,project-mine")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "test_project.py::test_mine\n" in out + "\n"  # not parametrized
    assert "test_size.py::test_size_ratio[project-mine]" in out
    assert "test_size.py::test_size_ratio[fp32]" in out
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "test_project.py")
    assert run.ret == 0, run.stdout.str()

