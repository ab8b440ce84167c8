"""Tests for navya.compress.quantize: INT8 PTQ (mixed precision), dynamic, QAT, bf16/fp16, PT2E.

Tiny models (SSD-Lite MobileNetV2 at width 0.25, 128 px) on tiny synthetic data. An untrained
model's class logits are almost zero (every score near 1 / num_classes), so its detections are
decided by noise; the fixture model gets its last head layers scaled so that logits and box
offsets are O(1) (INT8 errors scale with them: the comparison is as strict as on a trained
model), and the INT8 model must then reproduce the fp32 top detections.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import warnings

import pytest
import torch
from torch import nn

from navya.catalogue import get_variant, variant_names
from navya.compress import _ao
from navya.compress import quantize as Q
from navya.compress.base import CompressContext
from navya.metrics.model_stats import serialized_size
from navya.models import build_model
from navya.runtime import repair_unpickled, timing_copy

SIZE = 128
CALIB = dict(calibration_images=2, activation_observer="minmax")  # fast calibration


def tiny(num_classes: int, arch: str = "ssdlite_mobilenet_v2", width: float = 0.25,
         seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, num_classes, width_mult=width, image_size=SIZE).eval()


def sharpen(model: nn.Module, x: torch.Tensor, logit_std: float = 1.5,
            reg_std: float = 0.5) -> nn.Module:
    """Scale the last convolution of every head by one factor per head kind so that the core's
    outputs on ``x`` have the given standard deviations (an untrained model's are ~1e-6).

    Activations shrink with depth in an untrained model, so the first (largest) level
    dominates: deeper levels stay near zero, below what INT8 resolves, as in fp32 they carry
    almost no signal.
    """
    with torch.no_grad():
        reg, logits = model.core(x)
        for heads, std, now in ((model.core.cls_heads, logit_std, logits.std()),
                                (model.core.reg_heads, reg_std, reg.std())):
            for head in heads:
                head[-1].weight.mul_(std / now)
    return model


def checked(transform, model: nn.Module, *args, **kwargs):
    """``transform(model, *args)``, asserting that the input model was not modified."""
    before = copy.deepcopy(model.state_dict())
    training = model.training
    out = transform(model, *args, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the transform mutated its input"
    assert model.training == training and out is not model
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from navya.data.synthetic import SyntheticConfig, generate
    from navya.data.voc import VOCDataset

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 16, "val": 8}, image_size=SIZE), workers=1)
    return VOCDataset(root, "train")


@pytest.fixture(scope="module")
def num_classes(data):
    return len(data.class_names) + 1


@pytest.fixture(scope="module")
def ctx(data):
    return CompressContext(train_dataset=data)


@pytest.fixture(scope="module")
def images(data):
    return [data[i][0] for i in range(2)]


@pytest.fixture(scope="module")
def model(num_classes, images):
    m = tiny(num_classes)
    return sharpen(m, m.preprocess(images))


@pytest.fixture(scope="module")
def x(model, images):
    return model.preprocess(images)


@pytest.fixture(scope="module")
def int8(model, ctx):
    """The default PTQ settings (histogram observer), calibrated on 4 images."""
    return checked(Q.quantize_static, model, Q.PTQConfig(calibration_images=4), ctx)


@pytest.fixture(scope="module")
def int8_other_engine(model, ctx):
    engine = other_engine()
    return checked(Q.quantize_static, model, Q.PTQConfig(engine=engine, **CALIB), ctx)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(),
                                                 dim=0))


def n_quantized(m: nn.Module) -> int:
    return sum(_ao.is_quantized_module(c) for c in m.modules())


def other_engine() -> str:
    """A supported engine other than the current one (qnnpack, the ARM target, if possible)."""
    engines = [e for e in _ao.supported_engines() if e != torch.backends.quantized.engine]
    if not engines:
        pytest.skip("a single quantized engine on this machine")
    return "qnnpack" if "qnnpack" in engines else engines[0]


# -- registry ----------------------------------------------------------------------------------


def test_variants_registered_with_tags():
    names = variant_names()
    for name in ("int8-ptq", "int8-dynamic", "int8-qat"):
        assert name in names and "int8" in get_variant(name).tags
    for name in ("bf16", "fp16"):
        assert name in names and "half" in get_variant(name).tags
    assert "0 modules" in get_variant("int8-dynamic").description
    assert get_variant("int8-ptq").config.calibration_fraction == 0.02


CHEAP = {  # the registered configurations, with calibration / fine-tuning cut down
    "int8-ptq": dict(calibration_images=2, activation_observer="minmax"),
    "int8-qat": dict(iterations=2, batch_size=4, freeze_observers_after=1, freeze_bn_after=1),
}


@pytest.mark.parametrize("name", ["int8-ptq", "int8-dynamic", "int8-qat", "bf16", "fp16"])
def test_registered_transforms_do_not_mutate_their_input(model, ctx, name):
    variant = get_variant(name)
    config = dataclasses.replace(variant.config, **CHEAP.get(name, {}))
    out = checked(variant.transform, model, config, ctx)
    assert out.core is not model.core


# -- fusion, INT8 accuracy and size ------------------------------------------------------------


def test_fused_float_model_equals_unfused(model, x):
    fused = copy.deepcopy(model)
    fused.fuse_model(is_qat=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.core.modules())
    with torch.no_grad():
        for a, b in zip(model.core(x), fused.core(x), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_int8_core_output_close_to_fp32(model, int8, x):
    assert n_quantized(int8.core) > 50
    with torch.no_grad():
        (reg, logits), (reg8, logits8) = model.core(x), int8.core(x)
    assert reg8.dtype == logits8.dtype == torch.float32
    assert cosine(logits, logits8) > 0.97
    assert cosine(reg, reg8) > 0.97
    assert float((logits8 - logits).norm() / logits.norm()) < 0.25


def test_int8_detections_match_fp32(model, int8, images):
    from torchvision.ops import box_iou

    with torch.no_grad():
        ref, got = model(images), int8(images)
    for r, g in zip(ref, got, strict=True):
        assert g["boxes"].dtype == g["scores"].dtype == torch.float32
        top = r["scores"].argsort(descending=True)[:10]
        assert len(top) == 10
        matched = 0
        for i in top:
            same = g["labels"] == r["labels"][i]
            if same.any():
                iou = box_iou(r["boxes"][i : i + 1], g["boxes"][same])[0]
                j = int(iou.argmax())
                close = abs(float(g["scores"][same][j] - r["scores"][i])) < 0.05
                matched += bool(iou[j] >= 0.5 and close)
        assert matched >= 8, matched


def test_int8_size_ratio(ctx, num_classes):
    """fp32 / INT8 serialized size on a width-1.0 model. Per-tensor weights (the default):
    > 3.5 (4 at most). Per-channel weights store a float64 scale and an int64 zero point
    per output channel, 16 bytes each: about 12% more bytes at width 1.0 (ratio ~3.45)."""
    m = tiny(num_classes, width=1.0)
    fp32 = serialized_size(m).size_bytes
    cfg = dict(calibration_images=1, activation_observer="minmax")
    per_tensor = Q.quantize_static(m, Q.PTQConfig(**cfg), ctx)
    per_channel = Q.quantize_static(m, Q.PTQConfig(per_channel=True, **cfg), ctx)
    ratio_per_tensor = fp32 / serialized_size(per_tensor).size_bytes
    ratio_per_channel = fp32 / serialized_size(per_channel).size_bytes
    assert 3.5 < ratio_per_tensor <= 4.0
    assert 3.3 < ratio_per_channel < ratio_per_tensor


def test_mobilenet_v3_quantizes_and_runs(ctx, num_classes, images):
    m = tiny(num_classes, "ssdlite_mobilenet_v3_large")
    m = sharpen(m, m.preprocess(images))
    q = Q.quantize_static(m, Q.PTQConfig(**CALIB), ctx)
    assert n_quantized(q.core) > 50
    assert any(type(c).__name__ == "Hardswish" and _ao.is_quantized_module(c)
               for c in q.core.modules())
    with torch.no_grad():
        x = m.preprocess(images)
        assert cosine(m.core(x)[1], q.core(x)[1]) > 0.9
        assert q(images[:1])[0]["boxes"].dtype == torch.float32


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning")
def test_int8_model_pickles_whole(int8, x):
    """A whole pickled INT8 model (what the RSS worker loads) runs once repaired."""
    buf = io.BytesIO()
    torch.save(int8, buf)
    buf.seek(0)
    loaded = repair_unpickled(torch.load(buf, weights_only=False))
    assert loaded.quantized_engine == int8.quantized_engine
    with torch.no_grad():
        for a, b in zip(int8.core(x), loaded.core(x), strict=True):
            torch.testing.assert_close(a, b)


# -- calibration -------------------------------------------------------------------------------


class Recording(torch.utils.data.Dataset):
    """A data set that records which items were read."""

    def __init__(self, dataset):
        self.dataset, self.read = dataset, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.read.append(int(i))
        return self.dataset[i]


@pytest.mark.parametrize(("fraction", "count", "seed", "expected"),
                         [(0.1, None, 3, 2), (0.5, 3, None, 3)])
def test_calibration_uses_exactly_the_requested_images(model, data, fraction, count, seed,
                                                       expected):
    rec = Recording(data)
    cfg = Q.PTQConfig(calibration_fraction=fraction, calibration_images=count,
                      activation_observer="minmax", seed=seed)
    q = Q.quantize_static(model, cfg, CompressContext(train_dataset=rec, seed=5))
    used_seed = 5 if seed is None else seed  # None: the context's seed
    assert list(q.calibration_indices) == Q.calibration_indices(len(data), expected, used_seed)
    assert len(set(q.calibration_indices)) == expected
    assert sorted(rec.read) == list(q.calibration_indices)  # each read once, nothing else


def test_calibration_count_and_indices():
    a = Q.calibration_indices(3000, 60, 0)
    assert a == Q.calibration_indices(3000, 60, 0) and a == sorted(a)
    assert a != Q.calibration_indices(3000, 60, 1)
    assert len(set(a)) == 60 and all(0 <= i < 3000 for i in a)
    assert Q.calibration_count(3000, 0.02, None) == 60
    assert Q.calibration_count(3000, 0.02, 7) == 7
    assert Q.calibration_count(10, 0.001, None) == 1


# -- engines -----------------------------------------------------------------------------------


def test_quantized_engine_context_restores_also_after_an_exception():
    before = torch.backends.quantized.engine
    engine = other_engine()
    with Q.quantized_engine(engine):
        assert torch.backends.quantized.engine == engine
    assert torch.backends.quantized.engine == before
    with pytest.raises(RuntimeError, match="boom"), Q.quantized_engine(engine):
        raise RuntimeError("boom")
    assert torch.backends.quantized.engine == before


def test_int8_model_runs_with_its_engine_and_restores_it(int8_other_engine, x):
    q = int8_other_engine
    before = torch.backends.quantized.engine
    assert q.quantized_engine != before  # and the transform left the global engine alone
    seen = []
    handle = q.core.backbone.register_forward_pre_hook(
        lambda m, a: seen.append(torch.backends.quantized.engine))
    with torch.no_grad():
        q.core(x)
    handle.remove()
    assert seen == [q.quantized_engine] and torch.backends.quantized.engine == before

    def boom(module, args):
        raise RuntimeError("boom")

    handle = q.core.backbone.register_forward_pre_hook(boom)
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad():
        q.core(x)
    handle.remove()
    assert torch.backends.quantized.engine == before


@pytest.mark.parametrize("which", ["int8", "int8_other_engine"])
def test_timing_copy_is_a_fresh_equal_int8_model(which, request, x):
    """The suite times a never-run copy (INT8 kernels are built for the thread count of their
    first call): same outputs, its own packed weights, the same engine, the global engine
    untouched."""
    q = request.getfixturevalue(which)
    before = torch.backends.quantized.engine
    c = timing_copy(q)
    assert c is not q and not c.training and c.quantized_engine == q.quantized_engine
    assert torch.backends.quantized.engine == before
    conv_q, conv_c = q.core.extras[0][0][0], c.core.extras[0][0][0]
    assert conv_c._packed_params is not conv_q._packed_params  # re-packed: fresh kernels
    assert torch.equal(conv_c.weight().int_repr(), conv_q.weight().int_repr())
    with torch.no_grad():
        for a, b in zip(q.core(x), c.core(x), strict=True):
            assert torch.equal(a, b)


def test_weights_are_per_tensor_by_default_and_per_channel_on_request(int8, model, ctx):
    per_tensor = (torch.per_tensor_affine, torch.per_tensor_symmetric)
    assert int8.core.extras[0][0][0].weight().qscheme() in per_tensor
    q = Q.quantize_static(model, Q.PTQConfig(per_channel=True, **CALIB), ctx)
    assert q.core.extras[0][0][0].weight().qscheme() == torch.per_channel_affine


# -- errors ------------------------------------------------------------------------------------


def test_error_without_calibration_data(model, data):
    with pytest.raises(Q.QuantizationError, match="train_dataset is None"):
        Q.quantize_static(model, Q.PTQConfig(), CompressContext())
    empty = torch.utils.data.Subset(data, [])
    with pytest.raises(Q.QuantizationError, match="train_dataset is empty"):
        Q.quantize_static(model, Q.PTQConfig(), CompressContext(train_dataset=empty))
    with pytest.raises(Q.QuantizationError, match="train_dataset is None"):
        Q.quantize_qat(model, Q.QATConfig(), CompressContext())
    with pytest.raises(Q.QuantizationError, match="asked for 17 .* has only 16"):
        Q.quantize_static(model, Q.PTQConfig(calibration_images=17),
                          CompressContext(train_dataset=data))


def test_error_for_an_unsupported_engine(model, ctx, monkeypatch):
    monkeypatch.setattr(_ao, "supported_engines", lambda: ["x86", "fbgemm"])
    with pytest.raises(Q.QuantizationError, match=r"quantized engine 'qnnpack' is not supported "
                                                  r"on this CPU; supported engines: x86, fbgemm"):
        Q.quantize_static(model, Q.PTQConfig(engine="qnnpack"), ctx)
    with pytest.raises(Q.QuantizationError, match="not supported on this CPU"):
        Q.quantize_qat(model, Q.QATConfig(engine="qnnpack"), ctx)


def test_error_for_an_unknown_engine_name():
    with pytest.raises(Q.QuantizationError, match=r"unknown quantized engine 'arm'; engines: x86"):
        Q.PTQConfig(engine="arm")
    assert issubclass(Q.QuantizationError, ValueError)


def test_error_for_a_model_without_stubs_or_core(ctx):
    class NoStubs(nn.Module):
        def __init__(self):
            super().__init__()
            self.core = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())

    with pytest.raises(Q.QuantizationError, match="has no quantization stubs"):
        Q.quantize_static(NoStubs(), Q.PTQConfig(), ctx)
    with pytest.raises(Q.QuantizationError, match="has no `core`"):
        Q.quantize_static(nn.Conv2d(3, 4, 3), Q.PTQConfig(), ctx)
    with pytest.raises(Q.QuantizationError, match="has no quantization stubs"):
        Q.quantize_qat(NoStubs(), Q.QATConfig(), ctx)


def test_error_for_an_unknown_keep_float_block(model, ctx):
    with pytest.raises(Q.QuantizationError,
                       match=r"unknown block name\(s\) in keep_float: backbone\.nope; "
                             r"valid blocks: backbone\.stage1\.0, backbone\.stage1\.1, "):
        Q.quantize_static(model, Q.PTQConfig(keep_float=("backbone.nope",)), ctx)


@pytest.mark.parametrize("kwargs", [dict(activation_observer="mse"),
                                    dict(calibration_fraction=0.0),
                                    dict(calibration_images=0),
                                    dict(keep_float="cls_heads.0"),
                                    dict(keep_float=("cls_heads.0", "cls_heads.0"))])
def test_ptq_config_is_validated(kwargs):
    with pytest.raises(Q.QuantizationError):
        Q.PTQConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(distill_weight=0.0), dict(iterations=0),
                                    dict(freeze_bn_after=0), dict(optimizer="lamb")])
def test_qat_config_is_validated(kwargs):
    with pytest.raises(Q.QuantizationError):
        Q.QATConfig(**kwargs)


# -- mixed precision ---------------------------------------------------------------------------


def test_sensitivity_blocks_cover_the_network(model):
    blocks = Q.sensitivity_blocks(model)
    assert blocks[0] == "backbone.stage1.0" and blocks[-1] == "reg_heads.5"
    assert {"extras.0", "extras.3", "cls_heads.0"} <= set(blocks)
    fused = copy.deepcopy(model)
    fused.fuse_model(is_qat=False)
    assert Q.sensitivity_blocks(fused) == blocks
    convs = [n for n, m in model.core.named_modules() if isinstance(m, nn.Conv2d)]
    assert all(any(c == b or c.startswith(b + ".") for b in blocks) for c in convs)


def test_keep_float_blocks_stay_float_and_the_model_runs(model, ctx, x, images):
    keep = ("backbone.stage1.3", "extras.1", "cls_heads.0")
    q = checked(Q.quantize_static, model, Q.PTQConfig(keep_float=keep, **CALIB), ctx)
    assert q.keep_float == keep
    for name in keep:
        island = q.core.get_submodule(name)
        assert isinstance(island, Q.FloatIsland)
        assert n_quantized(island.block) == 0
        weights = [m.weight for m in island.block.modules() if isinstance(m, nn.Conv2d)]
        assert weights and all(w.dtype == torch.float32 and not w.is_quantized for w in weights)
    for name in ("backbone.stage1.4", "extras.0", "cls_heads.1"):
        assert n_quantized(q.core.get_submodule(name)) > 0
    with torch.no_grad():
        assert cosine(model.core(x)[1], q.core(x)[1]) > 0.95
        assert q(images[:1])[0]["boxes"].dtype == torch.float32


def test_quantize_only_one_block(model, ctx, x):
    q = checked(Q.quantize_static, model, Q.PTQConfig(**CALIB), ctx, only=("extras.0",))
    assert isinstance(q.core.extras[0], Q.QuantIsland)
    assert n_quantized(q.core) == n_quantized(q.core.extras[0]) > 2
    with torch.no_grad():
        assert cosine(model.core(x)[1], q.core(x)[1]) > 0.98


# -- dynamic, QAT, half precision --------------------------------------------------------------


def test_dynamic_reports_zero_modules_on_ssdlite_and_counts_linears(model, x):
    q = checked(Q.quantize_dynamic, model, Q.DynamicConfig(), CompressContext())
    assert q.quantized_modules == 0
    with torch.no_grad():
        for a, b in zip(model.core(x), q.core(x), strict=True):
            torch.testing.assert_close(a, b)

    class WithLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.core = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))

        def forward(self, t):
            return self.core(t)

    q2 = checked(Q.quantize_dynamic, WithLinear(), Q.DynamicConfig(), CompressContext())
    assert q2.quantized_modules == 2
    assert q2(torch.randn(3, 8)).shape == (3, 2)


@pytest.mark.parametrize("distill", [False, True])
def test_qat_fine_tunes_a_few_iterations_and_converts(ctx, num_classes, images, distill):
    m = tiny(num_classes)
    cfg = Q.QATConfig(iterations=3, batch_size=4, freeze_observers_after=1, freeze_bn_after=2,
                      augment=False, distill=distill)
    q = checked(Q.quantize_qat, m, cfg, ctx)
    assert q.qat_iterations == 3 and len(q.qat_losses) == 3
    assert all(0 < loss < float("inf") for loss in q.qat_losses)
    assert q.qat_frozen_at == {"observers": 1, "bn": 2}
    assert n_quantized(q.core) > 50 and not q.training
    assert q.quantized_engine == Q.packing_engine("x86")  # fbgemm under an AVX2 restriction
    with torch.no_grad():
        reg, logits = q.core(q.preprocess(images))
        assert torch.isfinite(logits).all() and torch.isfinite(reg).all()
        assert q(images[:1])[0]["boxes"].dtype == torch.float32


@pytest.mark.parametrize(("name", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_runs_and_returns_float(model, images, name, dtype):
    h = checked(Q.half_precision, model, Q.HalfConfig(name), CompressContext())
    assert isinstance(h.core, Q.HalfCore)
    assert all(p.dtype == dtype for p in h.core.parameters())
    x1 = model.preprocess(images[:1])
    with torch.no_grad():
        reg, logits = h.core(x1)
        assert reg.dtype == logits.dtype == torch.float32
        assert cosine(model.core(x1)[1], logits) > 0.99
        det = h(images[:1])[0]
    assert det["boxes"].dtype == det["scores"].dtype == torch.float32


# -- warnings ----------------------------------------------------------------------------------


def test_torch_ao_deprecation_is_filtered_exactly_and_locally():
    from torch.ao.quantization import prepare

    probe = nn.Sequential(_ao.QuantStub(), nn.Conv2d(3, 3, 1), _ao.DeQuantStub())
    probe.qconfig = _ao.ptq_qconfig("x86", activation_observer="minmax")
    # the message the filter matches is what torch really emits ...
    with pytest.warns(DeprecationWarning, match=_ao._DEPRECATED_AO):
        prepare(copy.deepcopy(probe))
    filters = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _ao.prepare(copy.deepcopy(probe))  # ... and it is silenced inside navya's wrapper only
    assert warnings.filters == filters  # nothing filtered globally


def test_a_small_train_split_calibrates_on_all_of_it_with_a_floor():
    """A gated model's floor (catalogue.GatedModel.min_calibration_images): 2 % of the real
    set's 21 train photographs would be one photograph; the floor takes the whole split, and
    leaves a large split's 2 % and an explicit count alone."""
    from navya.compress.quantize import calibration_count

    assert calibration_count(21, 0.02, None) == 1  # the fraction alone
    assert calibration_count(21, 0.02, None, floor=32) == 21  # the whole small split
    assert calibration_count(3000, 0.02, None, floor=32) == 60  # 2 % is more than the floor
    assert calibration_count(100, 0.02, None, floor=32) == 32
    assert calibration_count(21, 0.02, 5, floor=32) == 5  # an explicit count wins
