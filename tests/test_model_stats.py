"""Tests for navya.metrics.model_stats: params/sparsity, serialized size, MACs."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from navya.metrics.model_stats import (
    MacStats,
    ParamStats,
    SizeStats,
    count_macs,
    param_stats,
    serialized_size,
)


class TinyNet(nn.Module):
    """Quantizable conv net: conv+ReLU (fused), depthwise + pointwise, quantized add, linear."""

    def __init__(self) -> None:
        super().__init__()
        from torch.ao.nn.quantized import FloatFunctional
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant = QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.block = nn.Sequential(
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # depthwise
            nn.Conv2d(8, 8, 1),
        )
        self.down = nn.Conv2d(8, 8, 1, stride=2)
        self.skip = FloatFunctional()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(self.quant(x)))
        x = self.skip.add(self.block(x), self.down(x))
        return self.dequant(self.fc(self.pool(x).flatten(1)))


def _quantize(model: nn.Module, fuse: list[list[str]], calib: torch.Tensor) -> nn.Module:
    """Eager static PTQ of a copy of ``model`` with the x86 engine (restored afterwards)."""
    import torch.ao.quantization as tq

    q = copy.deepcopy(model).eval()
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated")
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize")
        try:
            torch.backends.quantized.engine = "x86"
            q.qconfig = tq.get_default_qconfig("x86")
            if fuse:
                tq.fuse_modules(q, fuse, inplace=True)
            tq.prepare(q, inplace=True)
            with torch.no_grad():
                q(calib)
            tq.convert(q, inplace=True)
        finally:
            torch.backends.quantized.engine = previous
    return q


def _stub(kind: str) -> nn.Module:
    from torch.ao.quantization import DeQuantStub, QuantStub

    return QuantStub() if kind == "quant" else DeQuantStub()


@pytest.fixture(scope="module")
def twins() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    fp32 = TinyNet().eval()
    int8 = _quantize(fp32, [["conv", "relu"]], torch.randn(4, 3, 16, 16))
    return fp32, int8


def _conv_macs(conv: nn.Conv2d, x: torch.Tensor) -> int:
    out = conv(x)
    n, c_out, h, w = out.shape
    k_h, k_w = conv.kernel_size
    return n * c_out * h * w * (conv.in_channels // conv.groups) * k_h * k_w


# ---------------------------------------------------------------------------- size


def test_size_is_the_bytes_torch_save_writes(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Linear(4, 2))
    # torch.save names the zip's top folder after the file stem ("archive" for a buffer):
    # the byte count depends on it, so compare with a file named like the buffer's folder.
    path = tmp_path / "archive.pt"
    torch.save(model.state_dict(), path)

    stats = serialized_size(model)

    assert isinstance(stats, SizeStats)
    assert stats.size_bytes == path.stat().st_size
    assert stats.size_mb == stats.size_bytes / 1e6
    assert stats.size_zip_mb == stats.size_zip_bytes / 1e6


def test_zip_size_shows_unstructured_sparsity() -> None:
    torch.manual_seed(0)
    dense = nn.Linear(200, 200)
    sparse = copy.deepcopy(dense)
    with torch.no_grad():
        sparse.weight.mul_((torch.rand_like(sparse.weight) >= 0.9).float())  # ~90% zeros

    d, s = serialized_size(dense), serialized_size(sparse)

    assert s.size_bytes == d.size_bytes  # zeros still take 4 bytes each
    assert s.size_zip_bytes < s.size_bytes
    assert s.size_zip_bytes < 0.5 * d.size_zip_bytes


def test_size_refuses_attached_pruning_masks() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 4))
    dense_size = serialized_size(model).size_bytes
    prune.l1_unstructured(model[0], "weight", amount=0.5)

    with pytest.raises(ValueError, match=r"prune\.remove"):
        serialized_size(model)
    # With the masks attached, the mask's zeros are seen as sparsity.
    assert param_stats(model).prunable_nonzero == 8 * 3 * 3 * 3 // 2 + 8 * 4

    prune.remove(model[0], "weight")
    assert abs(serialized_size(model).size_bytes - dense_size) < 100  # names/pickle only


# ---------------------------------------------------------------------------- params


def test_param_counts_and_sparsity_are_exact() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(5, 2))
    k_conv, k_lin = 17, 3
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
        model[0].weight.view(-1)[:k_conv] = 0.0
        model[2].weight.view(-1)[:k_lin] = 0.0

    stats = param_stats(model)

    conv_w, lin_w = 4 * 3 * 3 * 3, 2 * 5
    total = conv_w + 4 + 4 + 4 + lin_w + 2  # conv w+b, bn w+b, linear w+b
    assert stats == ParamStats(
        params=total,
        nonzero_params=total - k_conv - k_lin,
        prunable_params=conv_w + lin_w,
        prunable_nonzero=conv_w + lin_w - k_conv - k_lin,
    )
    assert stats.sparsity == pytest.approx((k_conv + k_lin) / total)
    assert stats.prunable_sparsity == pytest.approx((k_conv + k_lin) / (conv_w + lin_w))


def test_shared_parameters_are_counted_once() -> None:
    lin = nn.Linear(3, 3)
    assert param_stats(nn.Sequential(lin, nn.ReLU(), lin)).params == 12


def test_quantized_twin_counts_the_same_params(twins) -> None:
    fp32, int8 = twins
    assert param_stats(int8).params == param_stats(fp32).params > 0
    assert param_stats(int8).prunable_params == param_stats(fp32).prunable_params


def test_quantized_zero_weights_are_counted_as_zero() -> None:
    conv = nn.Sequential(nn.Conv2d(4, 6, 3), nn.Conv2d(6, 2, 1))
    with torch.no_grad():  # weights in {-1, 0, 1}: exact under per-channel quantization
        for layer in conv:
            layer.weight.copy_(torch.randint(-1, 2, layer.weight.shape).float())
            layer.weight.view(-1)[:5] = 0.0
    q = _quantize(
        nn.Sequential(_stub("quant"), conv, _stub("dequant")), [], torch.randn(2, 4, 8, 8)
    )

    assert param_stats(q).prunable_nonzero == param_stats(conv).prunable_nonzero
    assert param_stats(q).prunable_params == param_stats(conv).prunable_params


def test_nonzero_uses_the_per_channel_zero_points() -> None:
    from navya.metrics.model_stats import _nonzero

    w = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]])
    q = torch.quantize_per_channel(
        w, torch.tensor([0.1, 0.2]), torch.tensor([10, 100]), axis=0, dtype=torch.quint8
    )
    assert _nonzero(q) == 3
    assert _nonzero(torch.quantize_per_tensor(w, 0.1, 7, torch.quint8)) == 3


# ---------------------------------------------------------------------------- MACs


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
        nn.Conv2d(8, 4, (1, 5), bias=False),
    ],
    ids=["conv", "depthwise", "rect-kernel"],
)
def test_conv_macs_follow_the_formula(conv: nn.Conv2d) -> None:
    x = torch.randn(2, conv.in_channels, 17, 15)
    stats = count_macs(conv, (x,))
    assert isinstance(stats, MacStats)
    assert stats.macs == stats.effective_macs == _conv_macs(conv, x)


def test_linear_macs_follow_the_formula() -> None:
    lin = nn.Linear(10, 7)
    assert count_macs(lin, (torch.randn(3, 10),)).macs == 3 * 10 * 7


def test_int8_twin_reports_the_float_macs(twins) -> None:
    fp32, int8 = twins
    x = torch.randn(1, 3, 16, 16)

    f, q = count_macs(fp32, (x,)), count_macs(int8, (x,))

    assert f.macs > 0
    assert q.macs == f.macs
    for name in ("conv", "block.0", "block.1", "down", "fc"):
        assert q.by_module[name] == f.by_module[name] > 0, name
    dw = fp32.block[0]
    assert f.by_module["block.0"] == _conv_macs(dw, torch.randn(1, 8, 16, 16))
    assert q.by_module["skip"] == 0


def test_dynamic_quantized_linear_reports_the_float_macs() -> None:
    import torch.ao.quantization as tq

    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning
        )
        dyn = tq.quantize_dynamic(model, {nn.Linear})
    x = torch.randn(5, 16)
    assert count_macs(dyn, (x,)).macs == count_macs(model, (x,)).macs == 5 * (16 * 8 + 8 * 4)


def test_effective_macs_scale_with_weight_density() -> None:
    conv = nn.Conv2d(4, 8, 3)
    x = torch.randn(1, 4, 10, 10)
    with torch.no_grad():
        conv.weight.view(-1)[::2] = 0.0  # exactly half the weights
        conv.weight.view(-1)[1::2] = 1.0

    stats = count_macs(conv, (x,))

    assert stats.macs == _conv_macs(conv, x)
    assert stats.effective_macs * 2 == stats.macs


def test_unhandled_mac_operator_is_an_error() -> None:
    class Baddbmm(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.baddbmm(x, x, x)

    with pytest.raises(RuntimeError, match="baddbmm"):
        count_macs(Baddbmm(), (torch.randn(2, 3, 3),))


def test_count_macs_does_not_change_the_model(twins) -> None:
    fp32, _ = twins
    before = io.BytesIO()
    torch.save(fp32.state_dict(), before)
    count_macs(fp32, (torch.randn(1, 3, 16, 16),))
    after = io.BytesIO()
    torch.save(fp32.state_dict(), after)
    assert before.getvalue() == after.getvalue()
    assert not fp32.training
