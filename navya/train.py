"""The one training loop: baseline training, quantization-aware training, post-pruning recovery.

``train(model, dataset, config)`` runs seeded mini-batch training of an :class:`~navya.models.
SSDLite` (or any detector with the same ``model(images, targets) -> losses`` contract) with
AdamW or SGD, linear warm-up then cosine decay, SSD-style augmentation, optional bf16 autocast
(``torch.amp``), gradient clipping and a progress bar with loss and ETA. Callers adapt it with
hooks (``hooks=[fn(model, iteration)]`` run before each step): QAT freezes observers and batch
norm through them.

Resumable: with ``state_path`` the full state (model, optimizer, iteration, config) is written
atomically at the end of every epoch, and ``resume=True`` continues from it exactly (data order
and augmentation are seeded per epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from navya.data.voc import collate
from navya.errors import NavyaError
from navya.models.checkpoint import CheckpointError, atomic_torch_save

Hook = Callable[[nn.Module, int], None]



class TrainError(NavyaError, ValueError):
    """A training configuration or state that cannot be used; the message says why."""


class TrainStateMissing(NavyaError, FileNotFoundError):
    """``resume`` was asked for, but there is no saved training state."""


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters. ``lr`` is the peak learning rate after warm-up."""

    epochs: int = 12
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    warmup_iters: int = 150
    min_lr_ratio: float = 0.02
    amp: str = "none"  # "none" or "bf16" (torch.amp autocast on the CPU)
    augment: bool = True
    channels_last: bool = True
    grad_clip_norm: float | None = 10.0
    max_iters: int | None = None  # stop early (fine-tunes, tests)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainError("epochs and batch_size must be >= 1")
        if self.optimizer not in ("adamw", "sgd"):
            raise TrainError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.amp not in ("none", "bf16"):
            raise TrainError(f"amp must be 'none' or 'bf16', got {self.amp!r}")
        if not self.lr > 0 or self.warmup_iters < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise TrainError("need lr > 0, warmup_iters >= 0 and 0 <= min_lr_ratio <= 1")
        if self.max_iters is not None and self.max_iters < 1:
            raise TrainError("max_iters must be >= 1 or None")


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # per iteration, total loss
    iterations: int = 0
    seconds: float = 0.0
    images_seen: int = 0
    stopped: str = ""  # why training ended before its last iteration ("" = it did not)


# -- augmentation ----------------------------------------------------------------------------


class SSDAugment:
    """SSD-style augmentation on tensors: photometric jitter, random zoom-in crop (objects whose
    centre falls outside the crop are dropped), zoom-out onto a mean canvas, horizontal and
    vertical flips. Boxes ``[x1, y1, x2, y2]`` pixels; difficult flags follow their boxes.
    Randomness comes from the generator passed at call time (seeded per epoch)."""

    def __init__(self, p_crop: float = 0.5, p_expand: float = 0.3, max_expand: float = 1.6,
                 p_vflip: float = 0.5):
        self.p_crop, self.p_expand, self.max_expand = p_crop, p_expand, max_expand
        self.p_vflip = p_vflip  # 0 for photographs: the sky stays up

    def describe(self) -> dict[str, float]:
        return {"p_crop": self.p_crop, "p_expand": self.p_expand,
                "max_expand": self.max_expand, "p_vflip": self.p_vflip}

    def __call__(self, img: Tensor, target: dict, g: torch.Generator) -> tuple[Tensor, dict]:
        def u(a: float = 0.0, b: float = 1.0) -> float:
            return a + (b - a) * float(torch.rand((), generator=g))

        boxes, labels = target["boxes"].clone(), target["labels"].clone()
        difficult = target.get("difficult", torch.zeros(len(labels), dtype=torch.bool)).clone()
        # photometric: brightness, contrast, saturation
        img = img * u(0.75, 1.25) + u(-0.08, 0.08)
        mean = img.mean()
        img = (img - mean) * u(0.7, 1.3) + mean
        gray = img.mean(0, keepdim=True)
        img = ((img - gray) * u(0.7, 1.3) + gray).clamp(0, 1)
        _, h, w = img.shape
        if u() < self.p_expand:
            r = u(1.0, self.max_expand)
            nh, nw = int(h * r), int(w * r)
            canvas = img.mean((1, 2), keepdim=True).expand(3, nh, nw).clone()
            top, left = int(u(0, nh - h)), int(u(0, nw - w))
            canvas[:, top : top + h, left : left + w] = img
            img = canvas
            boxes = boxes + torch.tensor([left, top, left, top], dtype=boxes.dtype)
            h, w = nh, nw
        elif u() < self.p_crop and len(boxes):
            for _ in range(10):
                s = u(0.5, 1.0)
                ch, cw = int(h * s), int(w * s * u(0.8, 1.25))
                cw = min(cw, w)
                top, left = int(u(0, h - ch)), int(u(0, w - cw))
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                keep = ((centres[:, 0] > left) & (centres[:, 0] < left + cw)
                        & (centres[:, 1] > top) & (centres[:, 1] < top + ch))
                if keep.any():
                    img = img[:, top : top + ch, left : left + cw]
                    boxes = boxes[keep] - torch.tensor([left, top, left, top], dtype=boxes.dtype)
                    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, cw)
                    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ch)
                    labels, difficult = labels[keep], difficult[keep]
                    h, w = ch, cw
                    break
        if u() < 0.5:
            img = img.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        if u() < self.p_vflip:
            img = img.flip(-2)
            boxes = torch.stack([boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], 1)
        return img.contiguous(), {"boxes": boxes.reshape(-1, 4), "labels": labels,
                                  "difficult": difficult}


# -- loop ------------------------------------------------------------------------------------


def lr_at(config: TrainConfig, it: int, total: int) -> float:
    """Learning rate at iteration ``it`` of ``total``: linear warm-up then cosine decay."""
    if it < config.warmup_iters:
        return config.lr * (it + 1) / config.warmup_iters
    progress = (it - config.warmup_iters) / max(1, total - config.warmup_iters)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cos)


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


class _Augmented(Dataset):
    def __init__(self, dataset: Dataset, augment: SSDAugment | None, seed: int):
        self.dataset, self.augment, self.seed, self.epoch = dataset, augment, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        img, target = self.dataset[i]
        if self.augment is None:
            return img, target
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 100_003 + i)
        return self.augment(img, target, g)


def distillation_losses(student: tuple[Tensor, Tensor], teacher: tuple[Tensor, Tensor],
                        temperature: float = 1.0) -> dict[str, Tensor]:
    """Knowledge-distillation losses of an SSD student against its teacher, on every anchor.

    ``student`` / ``teacher``: ``(bbox_regression [N, A, 4], cls_logits [N, A, K])`` of the same
    batch. ``kd_cls``: KL(teacher || student) of the class distributions at temperature
    ``temperature`` (times T^2), summed over anchors; ``kd_reg``: smooth-L1 between the box
    regressions, each anchor weighted by the teacher's foreground probability. Both are divided
    by the teacher's expected number of foreground anchors (at least 1), the normalization the
    SSD loss uses for matched anchors, so they sit on the same scale as the detection losses.
    """
    s_reg, s_logits = (t.float() for t in student)
    t_reg, t_logits = (t.float().detach() for t in teacher)
    t_prob = torch.softmax(t_logits, dim=-1)
    fg = 1.0 - t_prob[..., 0]  # [N, A]
    norm = fg.sum().clamp_min(1.0)
    log_s = torch.log_softmax(s_logits / temperature, dim=-1)
    log_t = torch.log_softmax(t_logits / temperature, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1) * temperature ** 2
    reg = nn.functional.smooth_l1_loss(s_reg, t_reg, reduction="none").sum(-1)
    return {"kd_cls": kl.sum() / norm, "kd_reg": (reg * fg).sum() / norm}


class _CoreCapture:
    """Forward hook on ``model.core``: keeps the last input batch and outputs (distillation)."""

    def __init__(self) -> None:
        self.x: Tensor | None = None
        self.out: tuple[Tensor, Tensor] | None = None

    def __call__(self, module: nn.Module, args, output) -> None:
        self.x, self.out = args[0], output


def freeze_backbone_for(iterations: int) -> Hook:
    """A hook that keeps ``model.core.backbone``'s parameters fixed (no gradient, so the
    optimizer leaves them alone) for the first ``iterations`` steps, then trains them."""
    if iterations < 0:
        raise TrainError(f"freeze iterations must be >= 0, got {iterations!r}")

    def hook(model: nn.Module, iteration: int) -> None:
        frozen = iteration < iterations
        for p in model.core.backbone.parameters():
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None

    return hook


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    state_path: str | Path | None = None,
    resume: bool = False,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
    desc: str = "train",
    teacher: nn.Module | None = None,
    distill_weight: float = 1.0,
    state_every_s: float = 120.0,
    data_id: Any = None,
    augment: SSDAugment | None = None,
    on_epoch_end: Callable[[nn.Module, int], bool] | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``dataset`` (items ``(image [3,H,W] in [0,1], target)``).

    ``teacher``: a detector with the same anchors and classes (e.g. the model before pruning);
    if given, ``distill_weight`` times :func:`distillation_losses` of the student's core
    outputs against the teacher's, on the same (augmented, pre-processed) batch, is added to
    the detection loss. The teacher runs in eval mode without gradients and is not changed.

    ``state_path``: the training state (model, optimizer, iteration, losses) is saved there,
    atomically, every ``state_every_s`` seconds of training and at each epoch's end, so an
    interrupt loses at most that much work; ``resume`` continues from it, mid-epoch too.
    ``data_id`` (JSON-like: e.g. the data folder, split, limit and fingerprint) is saved with
    the state, and a resume on other data (or another number of images) is refused.

    ``augment``: the augmentation when ``config.augment`` (default :class:`SSDAugment` ()).
    ``on_epoch_end(model, epoch)`` runs after each epoch (and after the last, partial one) with
    the model in eval mode; it returns True to stop training there (early stopping).
    ``max_seconds``: stop after the first iteration that ends past this much training time
    (``on_epoch_end`` still sees the model as it stopped); ``result.stopped`` says why it
    stopped.

    Returns the per-iteration losses and timing. The model is left in eval mode, in its
    original memory format.
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    data = _Augmented(dataset, (augment or SSDAugment()) if config.augment else None,
                      config.seed)
    # A lone image in the last batch is dropped: BatchNorm cannot train on one value per
    # channel, which is what SSD-Lite's 1x1 extra levels give for a batch of one.
    drop_last = len(data) > config.batch_size and len(data) % config.batch_size == 1
    per_epoch = len(data) // config.batch_size if drop_last else math.ceil(len(data) / config.batch_size)
    total = per_epoch * config.epochs
    if config.max_iters is not None:
        total = min(total, config.max_iters)
    optimizer = _make_optimizer(model, config)
    result = TrainResult()
    start_it = 0
    state_path = Path(state_path) if state_path else None
    if resume:
        if state_path is None or not state_path.exists():
            raise TrainStateMissing(f"cannot resume: no training state at {state_path}")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except Exception as exc:
            raise CheckpointError(f"{state_path}: cannot resume from it: {exc}") from exc
        if state["config"] != asdict(config):
            raise CheckpointError(f"{state_path}: saved with another training config "
                                  f"({state['config']}); resume with the same one")
        saved_data = state.get("data", {"images": len(dataset), "id": data_id})
        if saved_data != {"images": len(dataset), "id": data_id}:
            raise CheckpointError(
                f"{state_path}: saved while training on {saved_data}, this run's data is "
                f"{ {'images': len(dataset), 'id': data_id} }; resume on the same data and "
                "limit, or start over without --resume")
        start_it = int(state["iteration"])
        result.losses = list(state["losses"])

    memory_format = getattr(model, "memory_format", torch.contiguous_format)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
        if hasattr(model, "memory_format"):
            model.memory_format = torch.channels_last
    model.train()
    capture = _CoreCapture()
    handle = model.core.register_forward_hook(capture) if teacher is not None else None
    if teacher is not None:
        if not distill_weight > 0:
            raise TrainError(f"distill_weight must be > 0, got {distill_weight!r}")
        teacher_was_training = teacher.training
        teacher.eval()
    t0 = time.perf_counter()
    it = start_it

    def save_state() -> None:
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "iteration": it, "losses": result.losses, "config": asdict(config),
                           "data": {"images": len(dataset), "id": data_id}}, state_path)

    last_save = time.perf_counter()
    bar = tqdm(total=total, initial=start_it, desc=desc, disable=not progress, unit="it",
               dynamic_ncols=True)
    try:
        while it < total:
            epoch = it // per_epoch
            data.epoch = epoch
            g = torch.Generator().manual_seed(config.seed + epoch)
            loader = DataLoader(data, batch_size=config.batch_size, collate_fn=collate,
                                sampler=RandomSampler(data, generator=g), drop_last=drop_last)
            skip = it - epoch * per_epoch  # resume mid-epoch: skip what was done
            for b, (images, targets) in enumerate(loader):
                if b < skip:
                    continue
                for hook in hooks:
                    hook(model, it)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, it, total)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.amp == "bf16"):
                    losses = model(images, targets)
                    if teacher is not None:
                        with torch.no_grad():
                            t_out = teacher.core(capture.x)
                        kd = distillation_losses(capture.out, t_out)
                        losses.update({k: distill_weight * v for k, v in kd.items()})
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at iteration {it}; "
                                             f"lower the learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
                optimizer.step()
                loss_value = float(loss.detach())  # float() of a grad tensor warns
                result.losses.append(loss_value)
                result.images_seen += len(images)
                it += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}",
                                **{k[:4]: f"{float(v.detach()):.3f}" for k, v in losses.items()},
                                lr=f"{optimizer.param_groups[0]['lr']:.2e}", epoch=epoch)
                if it >= total:
                    break
                if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                    result.stopped = f"time limit {max_seconds / 60:.1f} min"
                    break
                if state_path is not None and time.perf_counter() - last_save >= state_every_s:
                    save_state()
                    last_save = time.perf_counter()
            if state_path is not None:
                save_state()
                last_save = time.perf_counter()
            if on_epoch_end is not None:
                model.eval()
                stop = on_epoch_end(model, epoch)
                model.train()
                if stop and not result.stopped and it < total:
                    result.stopped = f"early stop after epoch {epoch + 1}"
            if result.stopped:
                break
    finally:
        bar.close()
        if handle is not None:
            handle.remove()
            teacher.train(teacher_was_training)
        model.to(memory_format=torch.contiguous_format)
        if hasattr(model, "memory_format"):
            model.memory_format = memory_format
        model.eval()
    result.iterations = it
    result.seconds = time.perf_counter() - t0
    return result
