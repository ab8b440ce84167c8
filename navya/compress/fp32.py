"""The float transforms: the fp32 reference, Conv-BN(-ReLU) fusion, channels-last memory format.

Each has its own (empty) config class, since the config's type selects the transform
(:mod:`navya.compress.base`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from navya.compress.base import CompressContext, register_transform

__all__ = ["ChannelsLastConfig", "FuseConfig", "Fp32Config", "channels_last", "fuse", "identity"]


@dataclass(frozen=True)
class Fp32Config:
    """The float reference itself: no options."""


@dataclass(frozen=True)
class FuseConfig:
    """Conv-BN(-ReLU) fused in eval mode: no options."""


@dataclass(frozen=True)
class ChannelsLastConfig:
    """NHWC memory format: no options."""


@register_transform(Fp32Config)
def identity(model: nn.Module, config: Fp32Config,
             context: CompressContext | None = None) -> nn.Module:
    """The fp32 reference itself (a copy, in eval mode)."""
    return copy.deepcopy(model).eval()


@register_transform(FuseConfig)
def fuse(model: nn.Module, config: FuseConfig,
         context: CompressContext | None = None) -> nn.Module:
    """Conv-BN(-ReLU) fused into single convolutions (eval-mode fusion): same function, fewer
    kernels."""
    out = copy.deepcopy(model).eval()
    out.fuse_model(is_qat=False)
    return out


@register_transform(ChannelsLastConfig)
def channels_last(model: nn.Module, config: ChannelsLastConfig,
                  context: CompressContext | None = None) -> nn.Module:
    """Weights and inputs in NHWC memory format: same arithmetic, other kernels."""
    out = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    out.memory_format = torch.channels_last
    return out
