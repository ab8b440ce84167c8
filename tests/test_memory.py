"""Tests for navya.metrics.memory (memray peak allocation, subprocess peak RSS)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from navya.metrics.memory import peak_alloc_mb, subprocess_peak_rss_mb
from navya.metrics.model_stats import serialized_size


def _allocate(n_bytes: int) -> torch.Tensor:
    return torch.empty(n_bytes // 4, dtype=torch.float32).fill_(1.0)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1)
    ).eval()


def test_peak_sees_a_tensor_allocation() -> None:
    big = peak_alloc_mb(lambda: _allocate(50_000_000))
    small = peak_alloc_mb(lambda: _allocate(5_000_000))

    assert big >= 45.0
    assert 0 < small < 45.0
    assert small < big


def test_memory_allocated_before_the_call_is_not_counted() -> None:
    kept = _allocate(50_000_000)
    assert peak_alloc_mb(lambda: kept.sum(), warmup=False) < 45.0


def test_peak_grows_with_batch_size() -> None:
    net = _net()

    def peak(batch: int) -> float:
        x = torch.randn(batch, 3, 64, 64)

        def infer() -> None:
            with torch.inference_mode():
                net(x)

        return peak_alloc_mb(infer)

    assert peak(8) > peak(1)


def test_nested_tracking_is_a_clear_error(tmp_path) -> None:
    import memray

    with memray.Tracker(tmp_path / "outer.bin"):
        with pytest.raises(RuntimeError, match="already active"):
            peak_alloc_mb(lambda: None, warmup=False)


def test_subprocess_rss_exceeds_the_model_state() -> None:
    net = _net()
    rss = subprocess_peak_rss_mb(net, (torch.randn(1, 3, 32, 32),), runs=2)

    assert isinstance(rss, float)
    assert rss > serialized_size(net).size_mb > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork/exec RSS inheritance")
def test_subprocess_rss_is_the_childs_not_the_parents() -> None:
    """With 1.5 GB resident in the parent, a tiny model's worker must report far less: on
    Linux a forked child inherits its parent's ru_maxrss across exec (the suite once reported
    6,474 MB for every variant)."""
    big = torch.ones(1_500_000_000 // 4)  # 1.5 GB, touched
    try:
        rss = subprocess_peak_rss_mb(_net(), (torch.randn(1, 3, 32, 32),), runs=1)
    finally:
        del big
    assert rss < 1_200, rss


def test_subprocess_failure_reports_the_worker_stderr() -> None:
    with pytest.raises(RuntimeError, match="stderr tail"):
        subprocess_peak_rss_mb(_net(), (torch.randn(1, 5, 8, 8),), runs=1)  # wrong channels


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"runs": 0}, {"timeout_s": 0}])
def test_subprocess_invalid_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        subprocess_peak_rss_mb(nn.Identity(), (torch.zeros(1),), **kwargs)
