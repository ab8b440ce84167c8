"""The content-addressed cache (navya._cache, navya.compress.cache) and the engine's use of it:
a hit gives the model (and evaluation) a build would; every input it depends on is part of the
key; a damaged entry is a miss with a warning; a rebuild ignores the cache."""

from __future__ import annotations

import copy
import importlib
import sys
import warnings
from dataclasses import dataclass

import pytest
import torch

from navya._cache import CacheWarning, ResultStore, digest, module_sources
from navya.bench import Bench, BenchSettings, Fig, Workload
from navya.catalogue import Variant, register, unregister
from navya.compress.base import CompressContext, apply_transform_info, register_transform
from navya.compress.cache import ArtifactCache, model_digest
from navya.compress.quantize import PTQConfig
from navya.data.memory import UInt8Images

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    from navya.data.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 6, "val": 4}, image_size=96), workers=1)
    return root


@pytest.fixture(scope="module")
def train(voc):
    from navya.data.voc import VOCDataset

    return VOCDataset(voc, "train")


@pytest.fixture(scope="module")
def val(voc):
    from navya.data.voc import VOCDataset

    return VOCDataset(voc, "val")


@pytest.fixture(scope="module")
def tiny(val):
    from navya.models import build_model

    torch.manual_seed(0)
    return build_model("ssdlite_mobilenet_v2", len(val.class_names) + 1, width_mult=0.25,
                       image_size=96).eval()


PTQ = PTQConfig(calibration_images=2, activation_observer="minmax")


def _context(store, train, seed=0):
    return CompressContext(train_dataset=train, seed=seed, artifacts=ArtifactCache(store))


def _outputs(model, val):
    images = [val[i][0] for i in range(2)]
    with torch.inference_mode():
        return model.core(model.preprocess(images))


def _same(a, b):
    return all(torch.equal(x.dequantize() if x.is_quantized else x,
                           y.dequantize() if y.is_quantized else y) for x, y in zip(a, b, strict=True))


def test_a_hit_returns_the_built_artifact(tmp_path, tiny, train, val):
    store = ResultStore(tmp_path / "cache")
    built, info = apply_transform_info(tiny, PTQ, _context(store, train))
    assert info.source == "built" and info.key and info.build_s > 0
    hit, again = apply_transform_info(tiny, PTQ, _context(store, train))  # a new run
    assert again.source == "cache" and again.key == info.key
    assert again.build_s == pytest.approx(info.build_s)  # the build's time, not the read's
    assert hit is not built
    assert _same(_outputs(hit, val), _outputs(built, val))  # INT8 kernels and all
    assert model_digest(hit) == model_digest(built)


def test_every_input_is_part_of_the_key(tmp_path, tiny, train, val):
    store = ResultStore(tmp_path / "cache")
    cache = ArtifactCache(store)
    ctx = CompressContext(train_dataset=train, artifacts=cache)
    base = cache.key_parts(tiny, PTQ, ctx)
    assert digest(cache.key_parts(copy.deepcopy(tiny), PTQ, ctx)) == digest(base)  # a copy
    other_weights = copy.deepcopy(tiny)
    with torch.no_grad():
        next(other_weights.parameters()).add_(1e-3)
    changed = {
        "config": cache.key_parts(tiny, PTQConfig(calibration_images=5), ctx),
        "checkpoint": cache.key_parts(other_weights, PTQ, ctx),
        "data": cache.key_parts(tiny, PTQ, CompressContext(train_dataset=val, artifacts=cache)),
        "seed": cache.key_parts(tiny, PTQ, CompressContext(train_dataset=train, seed=1,
                                                           artifacts=cache)),
    }
    for what, parts in changed.items():
        assert digest(parts) != digest(base), what
    # what a transform runs: its module and every navya module it imports, not the report
    sources = base["sources"]
    assert {"navya.compress.quantize", "navya.compress._ao", "navya.models.ssdlite",
            "navya.data.voc"} <= set(sources)
    assert not {"navya.reporting.rows", "navya.suite", "navya.bench", "navya.cli"} & set(sources)
    assert {"torch", "onnxruntime", "openvino", "executorch"} <= set(base["versions"])
    assert base["machine"]["cpu_model"]


def test_a_changed_image_changes_the_data_fingerprint(tmp_path, tiny):
    from navya.data.synthetic import SyntheticConfig, generate
    from navya.data.voc import VOCDataset

    generate(tmp_path / "d", SyntheticConfig(splits={"train": 3, "val": 1}, image_size=64),
             workers=1)
    store = ResultStore(tmp_path / "cache")
    ds = VOCDataset(tmp_path / "d", "train")
    before = ArtifactCache(store).data_fingerprint(ds)
    assert ArtifactCache(store).data_fingerprint(ds) == before  # remembered, same value
    image = ds.image_path(0)
    data = bytearray(image.read_bytes())
    data[-3] ^= 0xFF  # one byte of the file, same size
    image.write_bytes(bytes(data))
    assert ArtifactCache(store).data_fingerprint(VOCDataset(tmp_path / "d", "train")) != before


def test_a_changed_transform_source_is_a_miss(tmp_path, tiny, train, monkeypatch):
    """A transform registered from a project's own module: editing that module is a miss;
    navya modules are followed through their imports."""
    module = tmp_path / "my_transform.py"
    template = '''
from dataclasses import dataclass
import copy
from navya.compress.base import register_transform

@dataclass(frozen=True)
class MyConfig{n}:
    scale: float = 1.0

@register_transform(MyConfig{n})
def my_transform(model, config, context):
    return copy.deepcopy(model)  # {comment}
'''
    monkeypatch.syspath_prepend(str(tmp_path))
    keys = []
    for n, comment in ((1, "first"), (2, "second")):
        module.write_text(template.format(n=n, comment=comment))
        sys.modules.pop("my_transform", None)
        importlib.invalidate_caches()
        mod = importlib.import_module("my_transform")
        cache = ArtifactCache(ResultStore(tmp_path / "cache"))
        parts = cache.key_parts(tiny, getattr(mod, f"MyConfig{n}")(), CompressContext(
            train_dataset=train, artifacts=cache))
        keys.append(parts["sources"]["my_transform"])
    sys.modules.pop("my_transform", None)
    assert keys[0] != keys[1]


def test_module_sources_follow_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from fakepkg import b\n    return b.g()\n")
    (pkg / "b.py").write_text("from .c import h\n\ndef g():\n    return h()\n")
    (pkg / "c.py").write_text("def h():\n    return 1\n")
    (pkg / "unrelated.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    first = module_sources(["fakepkg.a"], package="fakepkg")
    assert set(first) == {"fakepkg", "fakepkg.a", "fakepkg.b", "fakepkg.c"}
    (pkg / "c.py").write_text("def h():\n    return 2\n")  # two imports away
    assert module_sources(["fakepkg.a"], package="fakepkg")["fakepkg.c"] != first["fakepkg.c"]
    for name in [m for m in sys.modules if m.startswith("fakepkg")]:
        del sys.modules[name]


@pytest.mark.parametrize("damage", ["truncate", "flip", "header", "empty"])
def test_a_damaged_entry_is_a_miss_with_a_warning(tmp_path, tiny, train, val, damage):
    store = ResultStore(tmp_path / "cache")
    config = _Scaled(0.5)  # a quick transform: what is tested is the entry, not the model
    built, info = apply_transform_info(tiny, config, _context(store, train))
    path = store.path("artifacts", info.key)
    data = path.read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "empty": b"",
               "flip": data[:-10] + bytes([data[-10] ^ 1]) + data[-9:],
               "header": data.replace(b'"payload_bytes"', b'"payload_bytez"', 1)}[damage]
    path.write_bytes(damaged)
    with pytest.warns(CacheWarning, match=str(path).replace("\\", "\\\\")):
        rebuilt, again = apply_transform_info(tiny, config, _context(store, train))
    assert again.source == "built"
    assert _same(_outputs(rebuilt, val), _outputs(built, val))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # the entry was replaced: a clean hit
        assert apply_transform_info(tiny, config, _context(store, train))[1].source == "cache"


def test_rebuilding_ignores_and_replaces_entries(tmp_path, tiny, train):
    store = ResultStore(tmp_path / "cache")
    ctx = _context(store, train)
    apply_transform_info(tiny, _Scaled(0.5), ctx)
    with ctx.artifacts.rebuilding():
        assert apply_transform_info(tiny, _Scaled(0.5), ctx)[1].source == "built"
    assert apply_transform_info(tiny, _Scaled(0.5), ctx)[1].source == "cache"


def test_store_trims_least_recently_used(tmp_path):
    store = ResultStore(tmp_path, max_mb=0.25)
    keys = [digest(i) for i in range(4)]
    for k in keys:
        store.put("things", k, torch.zeros(20_000), {})  # ~80 kB each
    left = {p.stem for p in store.entries()}
    assert keys[-1] in left and keys[0] not in left and len(left) == 3


@dataclass(frozen=True)
class _Scaled:
    scale: float = 1.0


_RUNS: list[float] = []


@register_transform(_Scaled)
def _scaled(model, config, context):
    _RUNS.append(config.scale)
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in out.core.parameters():
            p.mul_(config.scale)
    return out


@pytest.fixture
def scaled_variant():
    register(Variant("cache-scaled", _Scaled(0.9)))
    yield "cache-scaled"
    unregister("cache-scaled")


def _bench(tiny, val, train, store, **kw):
    settings = BenchSettings(rounds=3, warmup=0, rss=False, isolated_speed=False,
                             speed_rounds=4)
    return Bench(Workload(tiny, UInt8Images(val), train, provenance={"split": "val"}),
                 settings, cache=store, **kw)


def test_engine_reads_artifacts_and_evaluations_from_the_cache(tmp_path, tiny, val, train,
                                                               scaled_variant):
    store = ResultStore(tmp_path / "cache")
    _RUNS.clear()
    first = _bench(tiny, val, train, store)
    row = first.row(scaled_variant, complete=False) | {}
    first.evaluation(scaled_variant), first.evaluation("fp32")
    row = first.row(scaled_variant)
    assert (row["artifact"], row["evaluated"]) == ("built", "now") and _RUNS == [0.9]
    second = _bench(tiny, val, train, store)
    ev = second.evaluation(scaled_variant)
    row2 = second.row(scaled_variant)
    assert (row2["artifact"], row2["evaluated"]) == ("cache", "cache") and _RUNS == [0.9]
    assert row2["transform_s"] == pytest.approx(row["transform_s"])
    assert ev.ap == first.evaluation(scaled_variant).ap
    assert second.evaluation("fp32").ap == first.evaluation("fp32").ap
    assert second.peek(Fig.EVAL_SOURCE, "fp32") == "cache"
    third = _bench(tiny, val, train, store, rebuild=[scaled_variant])
    third.evaluation(scaled_variant)
    assert _RUNS == [0.9, 0.9] and third.row(scaled_variant)["evaluated"] == "now"
    fourth = _bench(tiny, val, train, None)  # no cache: built and evaluated here
    fourth.evaluation(scaled_variant)
    assert fourth.row(scaled_variant)["artifact"] == "uncached" and len(_RUNS) == 3


def test_evaluation_key_follows_the_evaluation_code_and_data(tmp_path, tiny, val, train,
                                                             scaled_variant):
    bench = _bench(tiny, val, train, ResultStore(tmp_path / "cache"))
    parts = bench.evaluation_key(scaled_variant)
    assert {"navya.metrics.evaluate", "navya.metrics.detection", "navya.data.memory",
            "navya.data.voc", "navya.models.ssdlite"} <= set(parts["sources"])
    assert "navya.reporting.rows" not in parts["sources"]
    assert parts["artifact"] == bench.build_info(scaled_variant).key
    assert bench.evaluation_key("fp32")["artifact"] == model_digest(tiny)


def test_measurements_are_reused_only_from_passing_runs(tmp_path, tiny, val, train,
                                                        scaled_variant):
    from navya.bench import Outcome, Verdict

    store = ResultStore(tmp_path / "cache")
    first = _bench(tiny, val, train, store)
    runs = first.speed_runs(scaled_variant, 1)
    peak = first.peak_mem_mb(scaled_variant)
    first.stats(scaled_variant)
    assert first.sources[("speed", scaled_variant)] == "now"
    assert first.save_measurements(scaled_variant) == ["speed", "memory"]
    second = _bench(tiny, val, train, store)
    assert second.speed_runs(scaled_variant, 1)[0].speedup == runs[0].speedup
    assert second.peak_mem_mb(scaled_variant) == peak
    second.stats(scaled_variant)
    assert second.sources[("speed", scaled_variant)] == "reused"
    assert second.sources[("memory", scaled_variant)] == "reused"
    assert second.sources[("stats", scaled_variant)] == "cache"
    assert second.row(scaled_variant)["measured"] == "reused"
    # wanting more runs than were kept: all of them measured now
    assert len(second.speed_runs(scaled_variant, 3)) == 3
    assert second.sources[("speed", scaled_variant)] == "now"
    # a failing check: its fresh figures are not kept
    third = _bench(tiny, val, train, store, remeasure=True)
    third.speed_runs(scaled_variant, 1)
    assert third.sources[("speed", scaled_variant)] == "now"
    third._record(Verdict(scaled_variant, "min_speedup", Outcome.FAIL, "too slow"))
    assert third.save_measurements(scaled_variant) == []
    # another setting of the measurement is another key
    s = BenchSettings(rounds=3, warmup=0, rss=False, isolated_speed=False, speed_rounds=5)
    other = Bench(Workload(tiny, UInt8Images(val), train, provenance={"split": "val"}), s,
                  cache=store)
    assert digest(other.measurement_key("speed", scaled_variant)) != digest(
        second.measurement_key("speed", scaled_variant))
    assert "navya.metrics.speed" in second.measurement_key("speed", scaled_variant)["sources"]


def test_reused_figures_are_keyed_by_the_engine_code_too(tmp_path, tiny, val, train,
                                                          scaled_variant):
    """Issue 28, bug 1: part of the stats, speed and memory logic lives in navya.bench, so a
    change there must not reuse figures measured by the old code."""
    bench = _bench(tiny, val, train, ResultStore(tmp_path / "cache"))
    for group in ("stats", "speed", "memory"):
        sources = bench.measurement_key(group, scaled_variant)["sources"]
        assert {"navya.bench", "navya.bench.memo"} <= set(sources), group
        assert ("navya.bench.speed" if group == "speed" else "navya.bench.cost") in sources


def test_recorded_speed_runs_are_measured_now_and_every_run_is_judged_alike(
        tmp_path, tiny, val, train, scaled_variant):
    """Issue 28, bugs 5 and 8: recording a speed baseline reused an earlier run's cached runs
    as its "fresh" ones; and with reused runs, the speed baseline judged the first n while the
    min_speedup budget judged the median of all of them."""
    import statistics

    store = ResultStore(tmp_path / "cache")
    first = _bench(tiny, val, train, store)
    first.speed_runs(scaled_variant, 3)
    first.save_measurements(scaled_variant)
    second = _bench(tiny, val, train, store)
    runs = second.speed_runs(scaled_variant, 1)
    assert second.sources[("speed", scaled_variant)] == "reused" and len(runs) == 3
    judged = second.figure_values(scaled_variant, 1)[scaled_variant]
    assert judged == [r.speedup for r in runs]  # all three, not the first
    assert second.speedup_value(scaled_variant) == statistics.median(judged)
    # recording: three runs measured now, whatever the cache holds
    third = Bench(second.workload, second.settings, cache=store, baselines_dir=tmp_path / "b")
    verdict = third.check_speed_baseline(scaled_variant, record=3)
    assert verdict.outcome.name == "UPDATED", verdict.message
    assert third.sources[("speed", scaled_variant)] == "now"
    assert [r.speedup for r in third.speed_runs(scaled_variant, 3)] != judged
