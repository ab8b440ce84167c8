"""Half-precision inference (``bf16``, ``fp16``): the detector's network (``core``) cast to the
half dtype; pre- and post-processing stay float32, inputs are cast in and outputs cast back.

bf16 runs fast only where the CPU has bf16 instructions (AVX512-BF16, AMX): the variants say so
in their tags, and their figures are kept per CPU class (README, "CPU classes").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from navya.compress.base import CompressContext, register_transform
from navya.errors import NavyaError

__all__ = ["HalfConfig", "HalfCore", "HalfPrecisionError", "half_precision"]


class HalfPrecisionError(NavyaError, ValueError):
    """A half-precision config or model that cannot be cast (the message says why)."""


_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


class HalfCore(nn.Module):
    """Runs a core in half precision: casts the input batch to ``dtype``, runs ``core`` (its
    parameters and buffers in ``dtype``), returns its output tensors cast back to float32.

    ``forward(x [N, 3, S, S] float)`` -> tuple of float32 tensors, as the wrapped core's.
    """

    def __init__(self, core: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.core = core.to(dtype)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self.core(x.to(self.dtype))
        return tuple(t.float() for t in out)


@dataclass(frozen=True)
class HalfConfig:
    """Half-precision inference: ``dtype`` is ``bf16`` or ``fp16``; ``fuse`` folds Conv-BN in
    float32 first (fewer kernels, and the folding itself done at full precision)."""

    dtype: str = "bf16"
    fuse: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in _HALF:
            raise HalfPrecisionError(f"dtype must be one of {', '.join(_HALF)}, got "
                                    f"{self.dtype!r}")


@register_transform(HalfConfig)
def half_precision(model: nn.Module, config: HalfConfig,
                   context: CompressContext | None = None) -> nn.Module:
    """A copy of ``model`` whose ``core`` runs in bf16/fp16 (:class:`HalfCore`); pre- and
    post-processing stay float32, boxes come back float32."""
    if not isinstance(getattr(model, "core", None), nn.Module):
        raise HalfPrecisionError(f"{type(model).__name__} has no `core` submodule to cast")
    out = copy.deepcopy(model).eval()
    if config.fuse and hasattr(out, "fuse_model"):
        out.fuse_model(is_qat=False)
    out.core = HalfCore(out.core, _HALF[config.dtype])
    out.compute_dtype = _HALF[config.dtype]
    return out
