"""Detectors (SSD-Lite on MobileNetV2 / V3) and their checkpoints."""

from navya.models.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from navya.models.ssdlite import MODELS, SSDLite, build_model, fusion_groups

__all__ = [
    "MODELS",
    "Checkpoint",
    "CheckpointError",
    "SSDLite",
    "build_model",
    "fusion_groups",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
