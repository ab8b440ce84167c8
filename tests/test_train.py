"""Tests for navya.train: the training loop (tiny runs), resume, schedule, config, augmentation."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from navya.data.synthetic import SyntheticConfig, generate
from navya.data.voc import VOCDataset
from navya.models import CheckpointError, build_model
from navya.train import SSDAugment, TrainConfig, lr_at, train

SIZE = 128


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one thread, restored after: the losses checked below were measured that way
    (the same numbers on any core count), and two OpenMP threads on a busy 2-core machine stall
    each other for seconds per step."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> VOCDataset:
    root = tmp_path_factory.mktemp("synth")
    generate(root, SyntheticConfig(splits={"train": 16, "val": 8}, image_size=SIZE), workers=1)
    return VOCDataset(root, "train")


def tiny_model(dataset: VOCDataset, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("ssdlite_mobilenet_v2", len(dataset.class_names) + 1, width_mult=0.25,
                       image_size=SIZE)


# -- training lowers the loss ----------------------------------------------------------------


# Checked on seeds 0-5: last-5 mean / first-5 mean was 0.59 to 0.62 (first-5 mean about 15.6,
# last-5 about 9.5), so 0.85 leaves a wide margin and still fails a loop that does not learn.
@pytest.mark.parametrize("seed", [0, 1])
def test_short_training_run_lowers_the_loss(dataset, seed):
    model = tiny_model(dataset, seed)
    config = TrainConfig(epochs=100, batch_size=8, lr=3e-3, warmup_iters=3, max_iters=30,
                         augment=False, seed=seed)
    result = train(model, dataset, config, progress=False)
    losses = result.losses
    assert result.iterations == 30 and len(losses) == 30
    assert result.images_seen == 30 * 8
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.85 * first, (first, last, losses)
    assert not model.training  # left in eval mode
    assert model.memory_format == torch.contiguous_format  # and in its own memory format


# -- resume ----------------------------------------------------------------------------------


def test_a_lone_last_image_is_dropped_not_fatal(dataset):
    # 5 images in batches of 4: a last batch of one would give BatchNorm a single value per
    # channel on SSD-Lite's 1x1 levels, which it cannot train on
    data = VOCDataset(dataset.voc_dir, "train", limit=5)
    config = TrainConfig(epochs=2, batch_size=4, warmup_iters=1, augment=False)
    result = train(tiny_model(dataset), data, config, progress=False)
    assert result.iterations == 2 and result.images_seen == 8


class _Interrupted(Exception):
    pass


def test_resume_gives_the_same_weights_as_a_straight_run(dataset, tmp_path):
    # 8 images, batch 4: 2 iterations per epoch; augmentation on, so the per-epoch seeding of
    # the data order and of the augmentation is part of what must resume exactly.
    data = VOCDataset(dataset.voc_dir, "train", limit=8)
    config = TrainConfig(epochs=2, batch_size=4, warmup_iters=1, augment=True, seed=3)
    per_epoch = 2

    straight = tiny_model(dataset)
    full = train(straight, data, config, state_path=tmp_path / "straight.state.pt",
                 progress=False)

    def stop_mid_second_epoch(model, iteration):
        if iteration == per_epoch + 1:
            raise _Interrupted

    state = tmp_path / "resumed.state.pt"
    first = tiny_model(dataset)
    with pytest.raises(_Interrupted):  # the state is saved within the epoch (every 0 s here)
        train(first, data, config, state_path=state, hooks=[stop_mid_second_epoch],
              progress=False, state_every_s=0)
    assert torch.load(state, weights_only=True)["iteration"] == per_epoch + 1
    # a fresh process would build a fresh model: the state file must hold everything
    resumed = tiny_model(dataset, seed=123)
    rest = train(resumed, data, config, state_path=state, resume=True, progress=False)

    assert rest.iterations == full.iterations == 2 * per_epoch
    # Bitwise: both runs apply the same ops to the same values in the same memory format
    # (channels_last) with the same thread count, and CPU kernels partition work statically.
    # (Checked with 1 and 2 threads; were it ever not bitwise, allclose at 1e-6 is the fallback,
    # far below the ~1e-3 change one AdamW step makes.)
    assert rest.losses == full.losses
    want, got = straight.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    moved = any(not torch.equal(v, tiny_model(dataset).state_dict()[k])
                for k, v in want.items() if v.is_floating_point())
    assert moved  # training did change the weights


def test_resume_refuses_another_config(dataset, tmp_path):
    data = VOCDataset(dataset.voc_dir, "train", limit=2)
    config = TrainConfig(epochs=1, batch_size=2, max_iters=1, augment=False)
    state = tmp_path / "run.state.pt"
    train(tiny_model(dataset), data, config, state_path=state, progress=False)
    other = TrainConfig(**{**asdict(config), "lr": 1e-4})
    with pytest.raises(CheckpointError, match="another training config"):
        train(tiny_model(dataset), data, other, state_path=state, resume=True, progress=False)
    more = VOCDataset(dataset.voc_dir, "train", limit=4)
    with pytest.raises(CheckpointError, match="saved while training on .'images': 2"):
        train(tiny_model(dataset), more, config, state_path=state, resume=True, progress=False)


def test_resume_without_state(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="no training state"):
        train(tiny_model(dataset), dataset, TrainConfig(), state_path=tmp_path / "none.pt",
              resume=True, progress=False)


# -- config and schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"amp": "fp16"}, "amp"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"warmup_iters": -1}, "warmup_iters"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"max_iters": 0}, "max_iters"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_train_config_is_frozen():
    with pytest.raises(AttributeError):
        TrainConfig().lr = 1.0  # type: ignore[misc]


def test_lr_warm_up_then_cosine_endpoints():
    c = TrainConfig(lr=1e-2, warmup_iters=10, min_lr_ratio=0.05)
    total = 110
    assert lr_at(c, 0, total) == pytest.approx(1e-2 / 10)  # first step: lr / warmup
    assert lr_at(c, 4, total) == pytest.approx(1e-2 * 5 / 10)  # linear
    assert lr_at(c, 9, total) == pytest.approx(1e-2)  # warm-up ends at the peak
    assert lr_at(c, 10, total) == pytest.approx(1e-2)  # cosine starts at the peak
    assert lr_at(c, 60, total) == pytest.approx(1e-2 * (0.05 + 0.95 * 0.5))  # half way
    assert lr_at(c, total, total) == pytest.approx(1e-2 * 0.05)  # ends at min_lr_ratio * lr
    assert lr_at(c, total + 50, total) == pytest.approx(1e-2 * 0.05)  # and stays there
    lrs = [lr_at(c, i, total) for i in range(total)]
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))  # rising
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))  # then falling


def test_lr_without_warm_up():
    c = TrainConfig(lr=2e-3, warmup_iters=0, min_lr_ratio=0.0)
    assert lr_at(c, 0, 100) == pytest.approx(2e-3)
    assert lr_at(c, 100, 100) == pytest.approx(0.0)


# -- augmentation ----------------------------------------------------------------------------


@st.composite
def samples(draw):
    h = draw(st.integers(8, 48))
    w = draw(st.integers(8, 48))
    n = draw(st.integers(0, 6))
    boxes = []
    for _ in range(n):
        x1 = draw(st.integers(0, w - 2))
        y1 = draw(st.integers(0, h - 2))
        x2 = draw(st.integers(x1 + 1, w))
        y2 = draw(st.integers(y1 + 1, h))
        boxes.append([x1, y1, x2, y2])
    # labels tag each box (1..n, unique), difficult is a function of the label: alignment shows
    labels = torch.arange(1, n + 1, dtype=torch.int64)
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
              "labels": labels, "difficult": labels % 3 == 0}
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    return image, target


@settings(max_examples=60, deadline=None)
@given(sample=samples(), seed=st.integers(0, 2**31 - 1),
       p_crop=st.sampled_from([0.0, 0.5, 1.0]), p_expand=st.sampled_from([0.0, 0.3, 1.0]))
def test_augment_keeps_boxes_inside_and_aligned(sample, seed, p_crop, p_expand):
    image, target = sample
    before = {k: v.clone() for k, v in target.items()}
    aug = SSDAugment(p_crop=p_crop, p_expand=p_expand)
    img, out = aug(image, target, torch.Generator().manual_seed(seed))

    assert all(torch.equal(target[k], before[k]) for k in before)  # input not mutated
    assert img.dtype == torch.float32 and img.dim() == 3 and img.shape[0] == 3
    assert img.min() >= 0 and img.max() <= 1
    _, h, w = img.shape
    boxes, labels, difficult = out["boxes"], out["labels"], out["difficult"]
    assert boxes.shape == (len(labels), 4) and difficult.shape == labels.shape
    assert labels.dtype == torch.int64 and difficult.dtype == torch.bool
    # inside the (new) image and not degenerate
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    # aligned: kept objects in their original order, difficult still that object's flag,
    # and a box never grows (flips and zoom-out keep its size, a crop can only cut it)
    kept = labels.tolist()
    assert kept == sorted(set(kept)) and set(kept) <= set(before["labels"].tolist())
    assert torch.equal(difficult, labels % 3 == 0)
    if len(kept):
        orig = before["boxes"][labels - 1]
        size, orig_size = boxes[:, 2:] - boxes[:, :2], orig[:, 2:] - orig[:, :2]
        assert (size <= orig_size + 1e-4).all()
    if p_crop == 0.0:  # nothing dropped nor cut without a crop: flips and zoom-out only move
        assert kept == before["labels"].tolist()
        if kept:
            torch.testing.assert_close(size, orig_size)
    if len(before["labels"]):  # a crop always keeps at least one object
        assert len(kept) >= 1


def test_augment_is_reproducible_from_the_generator():
    image = torch.rand(3, 40, 30, generator=torch.Generator().manual_seed(0))
    target = {"boxes": torch.tensor([[2.0, 3.0, 20.0, 30.0], [10.0, 5.0, 28.0, 12.0]]),
              "labels": torch.tensor([4, 7])}
    aug = SSDAugment(p_crop=0.7, p_expand=0.3)
    a = aug(image, target, torch.Generator().manual_seed(5))
    b = aug(image, target, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0])
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    assert a[1]["difficult"].tolist() == [False] * len(a[1]["labels"])  # default flags


# -- distillation ----------------------------------------------------------------------------


def _outputs(n: int = 2, a: int = 50, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, a, 4, generator=g), torch.randn(n, a, k, generator=g) * 3


def test_distillation_losses_vanish_for_the_teacher_itself_and_grow_with_the_gap():
    from navya.train import distillation_losses

    teacher = _outputs()
    same = distillation_losses(teacher, teacher)
    assert float(same["kd_cls"]) == pytest.approx(0.0, abs=1e-6)
    assert float(same["kd_reg"]) == 0.0
    near = distillation_losses(tuple(t + 0.1 for t in teacher), teacher)
    far = distillation_losses(tuple(t + 1.0 for t in (teacher[0], teacher[1] * 2)), teacher)
    assert 0 < float(near["kd_reg"]) < float(far["kd_reg"])
    assert 0 < float(far["kd_cls"])


def test_distillation_ignores_boxes_where_the_teacher_sees_background():
    from navya.train import distillation_losses

    reg, logits = _outputs()
    logits[:, :, 0] = 50.0  # the teacher is sure every anchor is background
    student = (reg + 5.0, logits)
    assert float(distillation_losses(student, (reg, logits))["kd_reg"]) < 1e-6


def test_distilled_training_pulls_the_student_towards_the_teacher(dataset):
    """A student trained only a few steps with a teacher (its own starting point, perturbed)
    gets closer to the teacher's outputs than the same student trained without one; the
    teacher is left unchanged and in its mode."""
    import copy

    from navya.train import distillation_losses

    teacher = tiny_model(dataset, seed=1)
    images = [dataset[i][0] for i in range(4)]
    config = TrainConfig(epochs=10, batch_size=4, lr=3e-3, warmup_iters=1, max_iters=12,
                         augment=False, seed=0)
    before = copy.deepcopy(teacher.state_dict())
    gaps = {}
    for name, kwargs in (("plain", {}), ("distilled", {"teacher": teacher, "distill_weight": 5.0})):
        student = tiny_model(dataset, seed=0)
        train(student, dataset, config, progress=False, **kwargs)
        with torch.no_grad():
            x = student.preprocess(images)
            kd = distillation_losses(student.core(x), teacher.eval().core(x))
        gaps[name] = float(kd["kd_cls"])
        teacher.train()
    assert gaps["distilled"] < gaps["plain"], gaps
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items()
               if not k.endswith("num_batches_tracked"))
    assert teacher.training
