"""Tests for navya.compress.prune: unstructured and structured pruning, fine-tune, save/load."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from navya.catalogue import get_variant, variant_names
from navya.compress import prune as P
from navya.compress.base import CompressContext
from navya.metrics.model_stats import count_macs, param_stats, serialized_size
from navya.models import build_model

SIZE = 128


NUM_CLASSES = 11  # the synthetic data set's 10 classes + background


def tiny(num_classes: int = NUM_CLASSES, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("ssdlite_mobilenet_v2", num_classes, width_mult=0.25,
                       image_size=SIZE).eval()


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.fixture(scope="module")
def x(model):
    g = torch.Generator().manual_seed(1)
    return model.preprocess([torch.rand(3, SIZE, SIZE, generator=g) for _ in range(2)])


@pytest.fixture(scope="module")
def structured(model):
    """The tiny model with 30% of its channels removed (no fine-tune) and the removed indices."""
    pruned = copy.deepcopy(model)
    removed = P.structured_prune_(pruned, 0.3, round_to=8)
    return pruned, removed


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from navya.data.synthetic import SyntheticConfig, generate
    from navya.data.voc import VOCDataset

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 16, "val": 8}, image_size=SIZE), workers=1)
    return VOCDataset(root, "train")


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def conv_weights(m: nn.Module, skip_heads: bool = True) -> dict[str, torch.Tensor]:
    heads = set(P.head_output_names(m)) if skip_heads else set()
    return {n: c.weight for n, c in m.named_modules()
            if isinstance(c, nn.Conv2d) and n not in heads}


def zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


# -- unstructured ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["l1", "random"])
@pytest.mark.parametrize("amount", [0.1, 0.3])
def test_unstructured_per_layer_sparsity_is_exact(model, method, amount):
    out = P.prune_unstructured(model, P.UnstructuredConfig(amount, method=method, scope="layer",
                                                          layers="conv"), CompressContext())
    for name, w in conv_weights(out).items():
        assert zeros(w) == round(amount * w.numel()), name
    for name in P.head_output_names(out):  # excluded by default
        assert zeros(out.get_submodule(name).weight) == 0


@pytest.mark.parametrize("method", ["l1", "random"])
def test_unstructured_global_sparsity_is_exact(model, method):
    out = P.prune_unstructured(model, P.UnstructuredConfig(0.3, method=method, layers="conv"))
    ws = conv_weights(out).values()
    total = sum(w.numel() for w in ws)
    assert sum(zeros(w) for w in ws) == round(0.3 * total)
    # global L1: per-layer sparsity is uneven (that is the point of it)
    if method == "l1":
        assert len({round(zeros(w) / w.numel(), 2) for w in ws}) > 1


@pytest.mark.parametrize("method", ["l1", "random"])
def test_default_prunes_dense_convs_globally_and_leaves_depthwise_alone(model, method):
    """The default: 30% of the weights of every non-depthwise conv (heads' outputs excepted),
    ranked globally; depthwise and grouped convolutions keep every weight."""
    out = P.prune_unstructured(model, P.UnstructuredConfig(0.3, method=method))
    dense, depthwise = {}, {}
    heads = set(P.head_output_names(out))
    for name, m in out.named_modules():
        if isinstance(m, nn.Conv2d) and name not in heads:
            (dense if m.groups == 1 else depthwise)[name] = m.weight
    assert dense and depthwise
    assert all(zeros(w) == 0 for w in depthwise.values())
    total = sum(w.numel() for w in dense.values())
    assert sum(zeros(w) for w in dense.values()) == round(0.3 * total)


def test_l1_removes_the_smallest_weights(model):
    out = P.prune_unstructured(model, P.UnstructuredConfig(0.3))
    name = "core.extras.0.0.0"
    before, after = model.get_submodule(name).weight, out.get_submodule(name).weight
    pruned = after == 0
    assert before[pruned].abs().max() <= before[~pruned].abs().min()
    assert torch.equal(after[~pruned], before[~pruned])


def test_no_masks_left_and_size_measurable(model):
    base = serialized_size(model)
    for method in ("l1", "random"):
        out = P.prune_unstructured(model, P.UnstructuredConfig(0.3, method=method))
        keys = out.state_dict().keys()
        assert not [k for k in keys if k.endswith(("_orig", "_mask"))]
        assert keys == model.state_dict().keys()
        assert all(not m._forward_pre_hooks for m in out.modules())
        size = serialized_size(out)
        assert abs(size.size_bytes - base.size_bytes) < 0.01 * base.size_bytes  # dense size
        assert size.size_zip_bytes < base.size_zip_bytes  # zeros compress
        assert param_stats(out.core).prunable_sparsity > 0.15  # 30% of the dense convs


def test_transforms_do_not_mutate_their_input(model, data):
    before = copy.deepcopy(model)
    P.prune_unstructured(model, P.UnstructuredConfig(0.3, method="random"))
    P.prune_unstructured(model, P.UnstructuredConfig(0.3, scope="global", layers="all"))
    P.prune_structured(model, P.StructuredConfig(0.3, finetune_iters=1, finetune_batch_size=2),
                       CompressContext(train_dataset=data))
    assert state_equal(before, model)
    assert not model.training


def test_random_pruning_is_seeded_and_leaves_global_rng_alone(model):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = P.prune_unstructured(model, P.UnstructuredConfig(0.3, method="random", seed=1))
    assert torch.equal(torch.get_rng_state(), state)
    b = P.prune_unstructured(model, P.UnstructuredConfig(0.3, method="random", seed=1))
    c = P.prune_unstructured(model, P.UnstructuredConfig(0.3, method="random", seed=2))
    assert state_equal(a, b)
    assert not state_equal(a, c)


def test_layer_selection(model):
    out = P.prune_unstructured(model, P.UnstructuredConfig(0.5, scope="layer", layers="all"))
    bn = out.get_submodule("core.extras.0.0.1")
    assert zeros(bn.weight) == round(0.5 * bn.weight.numel())
    head = P.head_output_names(model)[0]
    out = P.prune_unstructured(model, P.UnstructuredConfig(0.5, scope="layer", layers="conv",
                                                          exclude_head_outputs=False))
    assert zeros(out.get_submodule(head).weight) == round(0.5 * out.get_submodule(head).weight.numel())
    names = ("core.extras.0.0.0", "core.backbone.stage1.0.0")
    out = P.prune_unstructured(model, P.UnstructuredConfig(0.5, layers=names))
    pruned = {n for n, w in conv_weights(out, skip_heads=False).items() if zeros(w)}
    assert pruned == set(names)


# -- structured --------------------------------------------------------------------------------


def test_structured_is_smaller_faster_by_macs_and_runs(model, structured, x):
    pruned, _ = structured
    assert serialized_size(pruned).size_bytes < 0.8 * serialized_size(model).size_bytes
    macs, macs0 = count_macs(pruned.core, (x,)).macs, count_macs(model.core, (x,)).macs
    assert macs < 0.8 * macs0
    assert torch.equal(pruned.anchors, model.anchors)
    with torch.no_grad():
        reg, cls = pruned.core(x)
        ref_reg, ref_cls = model.core(x)
        dets = pruned([torch.rand(3, 100, 140), torch.rand(3, SIZE, SIZE)])
    assert reg.shape == ref_reg.shape and cls.shape == ref_cls.shape
    assert len(dets) == 2
    for d in dets:
        assert set(d) == {"boxes", "scores", "labels"}
        assert d["boxes"].shape[1:] == (4,) and d["boxes"].shape[0] == d["scores"].shape[0]


def test_structured_channel_counts(model, structured):
    pruned, _ = structured
    heads = set(P.head_output_names(model))
    for name, conv in pruned.named_modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        orig = model.get_submodule(name)
        if name in heads:  # predictions keep their outputs, their inputs shrink
            assert conv.out_channels == orig.out_channels
        else:
            assert conv.out_channels % 8 == 0, name
        if conv.groups > 1:  # depthwise stays depthwise
            assert conv.groups == conv.in_channels == conv.out_channels
    assert any(pruned.get_submodule(h).in_channels < model.get_submodule(h).in_channels
               for h in heads)
    widths = [(c.out_channels, model.get_submodule(n).out_channels)
              for n, c in pruned.named_modules() if isinstance(c, nn.Conv2d) and n not in heads]
    kept = sum(a for a, _ in widths) / sum(b for _, b in widths)
    assert 0.6 < kept < 0.8


def test_structured_equals_masking_the_removed_channels(model, structured, x):
    """Pruning = zeroing the removed channels' BatchNorm (scale and shift) in the unpruned
    model: checks that residual adds (FloatFunctional), depthwise convs and heads are coupled."""
    pruned, removed = structured
    assert any(".conv.3" in n for n in removed)  # projections joined by residual adds
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for name, idx in removed.items():
            bn = masked.get_submodule(name)
            bn.weight[idx] = 0
            bn.bias[idx] = 0
        out, ref, orig = pruned.core(x), masked.core(x), model.core(x)
    for a, b, c in zip(out, ref, orig, strict=True):
        scale = c.abs().max()
        assert (a - b).abs().max() <= 1e-5 * scale
        assert (a - c).abs().max() > 1e-3 * scale  # the check can fail


def test_structured_ignore_keeps_a_layer(model):
    name = "core.extras.1.2.0"
    pruned = copy.deepcopy(model)
    P.structured_prune_(pruned, 0.3, ignore=[name])
    assert pruned.get_submodule(name).out_channels == model.get_submodule(name).out_channels


def test_save_and_load_pruned_round_trip(structured, x, tmp_path):
    pruned, _ = structured
    pruned = copy.deepcopy(pruned)
    pruned.pruning_info = {"ratio": 0.3, "finetune_iters": 0}
    path = tmp_path / "pruned.pt"
    P.save_pruned(path, pruned, {"class_names": ["a", "b", "c"]})
    payload = torch.load(path, weights_only=True)  # no pickled modules
    assert "pruned_shapes" in payload["meta"]
    loaded, ckpt = P.load_pruned(path)
    assert ckpt.class_names == ("a", "b", "c")
    assert loaded.pruning_info == {"ratio": 0.3, "finetune_iters": 0}
    assert P.pruned_shapes(loaded) == P.pruned_shapes(pruned)
    with torch.no_grad():
        for a, b in zip(loaded.core(x), pruned.core(x), strict=True):
            assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left nothing behind


def test_finetune_lowers_the_loss(data):
    model = tiny()
    P.structured_prune_(model, 0.3)
    config = P.StructuredConfig(0.3, finetune_iters=20, finetune_lr=1e-2, finetune_batch_size=8,
                                finetune_warmup_iters=2, seed=0)
    losses = P.finetune(model, data, config).losses
    assert len(losses) == 20
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.85 * first, (first, last)  # seeded run: 15.8 -> 11.2
    assert not model.training


@pytest.mark.parametrize("distill", [True, False])
def test_structured_fine_tune_distills_from_the_unpruned_model(model, data, monkeypatch, distill):
    """By default the recovery fine-tune gets the unpruned input model (a copy, in eval mode)
    as its teacher; distill=False trains on the detection loss alone."""
    seen = {}
    real = P.finetune

    def spy(pruned, dataset, config, **kwargs):
        seen["teacher"] = kwargs.get("teacher")
        return real(pruned, dataset, config, **kwargs)

    monkeypatch.setattr(P, "finetune", spy)
    config = P.StructuredConfig(0.3, finetune_iters=1, finetune_batch_size=2, distill=distill)
    out = P.prune_structured(model, config, CompressContext(train_dataset=data))
    assert out.pruning_info["distilled"] is distill
    teacher = seen["teacher"]
    if not distill:
        assert teacher is None
        return
    assert teacher is not model and not teacher.training
    assert state_equal(teacher, model)  # the unpruned weights, untouched by the fine-tune


def test_structured_variant_finetunes_once_and_caches(model, data, monkeypatch):
    calls = []
    real = P.finetune

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "finetune", counting)
    config = P.StructuredConfig(0.3, finetune_iters=2, finetune_batch_size=4)
    context = CompressContext(train_dataset=data)
    a = P.prune_structured(model, config, context)
    b = P.prune_structured(model, config, context)
    assert len(calls) == 1
    assert a is not b and state_equal(a, b)
    assert a.pruning_info["finetuned"] and a.pruning_info["finetune_iters"] == 2
    assert a.pruning_info["params_after"] < a.pruning_info["params_before"]
    P.prune_structured(model, P.StructuredConfig(0.5, finetune_iters=2, finetune_batch_size=4),
                       context)
    assert len(calls) == 2  # another config, another fine-tune


def test_structured_without_data_warns_loudly(model):
    with pytest.warns(P.FinetuneSkippedWarning, match="WITHOUT its recovery fine-tune"):
        out = P.prune_structured(model, P.StructuredConfig(0.3), CompressContext())
    assert out.pruning_info["finetuned"] is False


def test_structured_int8_variant(model, data, monkeypatch):
    import dataclasses

    ptq = get_variant("int8-ptq")
    # the registered variant's PTQConfig, nested; min/max observers calibrate faster than the
    # default histogram ones
    config = dataclasses.replace(ptq.config, activation_observer="minmax")
    calls = []
    real = P.finetune
    monkeypatch.setattr(P, "finetune", lambda *a, **k: calls.append(1) or real(*a, **k))
    context = CompressContext(train_dataset=data)
    structured = P.StructuredConfig(0.3, finetune_iters=1, finetune_batch_size=2)
    pruned = P.prune_structured(model, structured, context)
    q = P.prune_structured_int8(model, P.StructuredInt8Config(structured, quantize=config),
                                context)
    assert len(calls) == 1  # the int8 variant reused the cached fine-tune
    assert P.quantized_module_names(q.core)
    assert serialized_size(q).size_bytes < serialized_size(pruned).size_bytes
    with torch.no_grad():
        dets = q([torch.rand(3, SIZE, SIZE)])
    assert set(dets[0]) == {"boxes", "scores", "labels"}


def test_registered_variants():
    names = variant_names("pruned")
    for n in ("prune-l1-unstructured-10", "prune-l1-unstructured-30",
              "prune-random-unstructured-10", "prune-random-unstructured-30",
              "prune-l1-structured-30", "prune-l1-structured-30-long",
              "prune-l1-structured-30-int8"):
        assert n in names
    assert "prune-l1-structured-30-long" in variant_names("slow")
    assert "prune-l1-structured-30" not in variant_names("slow")
    assert get_variant("prune-l1-unstructured-30").config.amount == 0.3
    long, short = get_variant("prune-l1-structured-30-long"), get_variant("prune-l1-structured-30")
    assert long.config.finetune_iters > short.config.finetune_iters


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, 30, float("nan")])
def test_ratio_outside_unit_interval(bad):
    with pytest.raises(P.PruningError, match=r"fraction in \[0, 1\)"):
        P.UnstructuredConfig(bad)
    with pytest.raises(P.PruningError, match=r"fraction in \[0, 1\)"):
        P.StructuredConfig(bad)
    assert issubclass(P.PruningError, ValueError)


def test_unknown_layer_name(model):
    with pytest.raises(P.PruningError, match=r"no layer named 'core.nope'.*core.backbone"):
        P.prune_unstructured(model, P.UnstructuredConfig(0.3, layers=("core.nope",)))
    with pytest.raises(P.PruningError, match=r"no layer named 'extras.0'"):
        P.structured_prune_(copy.deepcopy(model), 0.3, ignore=["extras.0"])


def test_bad_config_values():
    with pytest.raises(P.PruningError, match="method"):
        P.UnstructuredConfig(0.3, method="l2")
    with pytest.raises(P.PruningError, match="scope"):
        P.UnstructuredConfig(0.3, scope="model")
    with pytest.raises(P.PruningError, match="layers"):
        P.UnstructuredConfig(0.3, layers="linear")
    with pytest.raises(P.PruningError, match="round_to"):
        P.StructuredConfig(0.3, round_to=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_pruning_a_quantized_model_is_refused(model, x):
    from torch.ao.quantization import convert, default_qconfig, prepare

    q = copy.deepcopy(model)
    q.core.qconfig = default_qconfig  # min/max observers: fast
    prepare(q.core, inplace=True)
    with pytest.raises(P.PruningError, match="cannot prune a quantized model"):
        P.prune_unstructured(q, P.UnstructuredConfig(0.3))  # observers attached
    with torch.no_grad():
        q.core(x)
    convert(q.core, inplace=True)
    for call in (lambda: P.prune_unstructured(q, P.UnstructuredConfig(0.3)),
                 lambda: P.prune_structured(q, P.StructuredConfig(0.3, finetune_iters=0)),
                 lambda: P.save_pruned("unused.pt", q)):
        with pytest.raises(P.PruningError, match="cannot prune a quantized model"):
            call()
