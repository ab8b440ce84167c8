"""Tests for the fine-tune preset (navya.finetune, ``navya train --preset``): option resolution,
early stopping on val mAP with the best epoch kept (and resumable), the time limit, the frozen
batch norm hook and photograph augmentation without vertical flips."""

from __future__ import annotations

import argparse

import pytest
import torch

from navya.commands import TRAIN_DEFAULTS, CLIError, train_options
from navya.data.synthetic import SyntheticConfig, generate
from navya.data.voc import VOCDataset
from navya.finetune import PRESETS, EarlyStop, PresetError, frozen_backbone_bn, get_preset
from navya.models import CheckpointError, build_model
from navya.train import SSDAugment, TrainConfig, train

SIZE = 96
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SyntheticConfig(splits={"train": 8, "val": 4}, image_size=SIZE), workers=1)
    return root


@pytest.fixture(scope="module")
def sets(root):
    return VOCDataset(root, "train"), VOCDataset(root, "val")


def tiny(dataset, seed=0):
    torch.manual_seed(seed)
    return build_model("ssdlite_mobilenet_v2", len(dataset.class_names) + 1, width_mult=0.25,
                       image_size=SIZE)


def _args(**given):
    return argparse.Namespace(**{**{k: None for k in TRAIN_DEFAULTS}, "preset": None, **given})


# -- options ---------------------------------------------------------------------------------


def test_without_a_preset_the_plain_defaults_apply():
    assert train_options(_args()) == TRAIN_DEFAULTS


def test_a_preset_fills_what_the_command_line_left_out_and_gives_way_to_what_it_gave():
    p = get_preset("finetune")
    opts = train_options(_args(preset="finetune", lr=0.5, frozen_bn=False))
    assert opts["lr"] == 0.5 and opts["frozen_bn"] is False  # given: kept, False included
    assert opts["epochs"] == p.epochs and opts["early_stop"] == p.patience
    assert opts["init"] == "tfod-person" and opts["backbone_weights"] is None
    assert opts["vflip"] == p.p_vflip
    assert train_options(_args(preset="finetune", init="none"))[
        "init"] is None  # the preset's start turned off: scratch


def test_the_start_given_replaces_the_presets_and_none_turns_it_off(monkeypatch):
    """--init (a detector) and --backbone-weights (a backbone) are one choice: the one given
    replaces the preset's, whichever that is; 'none' means scratch; both given is refused."""
    import dataclasses

    import navya.finetune as finetune

    for preset_start in ({"init": "tfod-person", "backbone_weights": None},
                         {"init": None, "backbone_weights": "imagenet"}):
        monkeypatch.setitem(finetune.PRESETS, "finetune", dataclasses.replace(
            finetune.PRESETS["finetune"], **preset_start))
        opts = train_options(_args(preset="finetune"))
        assert {k: opts[k] for k in preset_start} == preset_start
        opts = train_options(_args(preset="finetune", init="my.pt"))
        assert (opts["init"], opts["backbone_weights"]) == ("my.pt", None)
        opts = train_options(_args(preset="finetune", backbone_weights="w.tflite"))
        assert (opts["init"], opts["backbone_weights"]) == (None, "w.tflite")
        for off in ({"init": "none"}, {"backbone_weights": "none"},
                    {"init": "none", "backbone_weights": "none"}):
            opts = train_options(_args(preset="finetune", **off))
            given = set(off)
            assert all(opts[k] is None for k in given), off
    with pytest.raises(CLIError, match="--init and --backbone-weights both"):
        train_options(_args(init="a.pt", backbone_weights="imagenet"))


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(PresetError, match="finetune"):
        get_preset("fast")
    with pytest.raises(CLIError, match="unknown preset 'fast'; known: finetune"):
        train_options(_args(preset="fast"))


def test_every_preset_is_a_usable_training_config():
    for p in PRESETS.values():
        TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr,
                    warmup_iters=p.warmup_iters)
        assert 0 <= p.p_vflip <= 1 and p.patience >= 1 and p.max_minutes > 0


# -- early stopping --------------------------------------------------------------------------


def test_early_stop_keeps_the_best_epoch_and_stops_after_its_patience(sets, tmp_path,
                                                                      monkeypatch):
    """Scores 0.2, 0.5, 0.4, 0.3: the best is epoch 2, patience 2 stops after epoch 4, and the
    model ends with epoch 2's weights (each epoch's weights are marked by a scale)."""
    train_set, val = sets
    scores = iter([0.2, 0.5, 0.4, 0.3, 0.9])
    import navya.metrics.evaluate as evaluate

    class Ev:
        def __init__(self, m):
            self.m = m

        def map(self, method):
            return self.m

    monkeypatch.setattr(evaluate, "evaluate_model", lambda model, data: Ev(next(scores)))
    lines = []
    stop = EarlyStop(val, 2, best_path=tmp_path / "m.best.pt", iterations_per_epoch=2,
                     log=lines.append, data_id={"d": 1})
    model = tiny(train_set)
    marks = []
    for epoch in range(5):
        with torch.no_grad():
            model.core.reg_heads[5][1].bias.fill_(epoch)
        marks.append(epoch)
        if stop(model, epoch):
            break
    assert epoch == 3 and stop.best.epoch == 2 and stop.best.map == 0.5
    assert [h.map for h in stop.history] == [0.2, 0.5, 0.4, 0.3]
    assert "epoch 3: val mAP 0.4000  (best 0.5000 at epoch 2)" in lines[2]
    stop.restore_best(model)
    assert torch.all(model.core.reg_heads[5][1].bias == 1)  # epoch index 1 = the second epoch
    record = stop.record()
    assert record["best_epoch"] == 2 and len(record["history"]) == 4

    # an interrupted run continues the record from <out>.best.pt; other data is refused
    again = EarlyStop(val, 2, best_path=tmp_path / "m.best.pt", resume=True, data_id={"d": 1})
    assert again.best.epoch == 2 and len(again.history) == 2  # saved at the best epoch
    with pytest.raises(CheckpointError, match="m.best.pt: cannot continue early stopping"):
        EarlyStop(val, 2, best_path=tmp_path / "m.best.pt", resume=True, data_id={"d": 2})


def test_patience_must_be_positive(sets):
    with pytest.raises(PresetError, match="patience"):
        EarlyStop(sets[1], 0)


def test_train_calls_the_epoch_hook_and_stops_when_it_says_so(sets):
    train_set, _ = sets
    seen = []

    def hook(model, epoch):
        assert not model.training  # scored in eval mode
        seen.append(epoch)
        return epoch == 1

    config = TrainConfig(epochs=6, batch_size=4, warmup_iters=1, augment=False)
    result = train(tiny(train_set), train_set, config, progress=False, on_epoch_end=hook)
    assert seen == [0, 1] and result.iterations == 4
    assert result.stopped == "early stop after epoch 2"
    done = train(tiny(train_set), train_set, TrainConfig(epochs=1, batch_size=4, augment=False),
                 progress=False, on_epoch_end=lambda m, e: True)
    assert done.stopped == ""  # the last epoch is not an early stop


def test_the_time_limit_stops_training_and_the_epoch_hook_still_scores(sets):
    train_set, _ = sets
    seen = []
    config = TrainConfig(epochs=50, batch_size=4, warmup_iters=1, augment=False)
    result = train(tiny(train_set), train_set, config, progress=False, max_seconds=0.0,
                   on_epoch_end=lambda m, e: seen.append(e))
    assert result.iterations == 1 and result.stopped.startswith("time limit")
    assert seen == [0]


# -- frozen batch norm and augmentation ------------------------------------------------------


def test_frozen_backbone_bn_keeps_its_statistics_while_the_heads_train(sets):
    train_set, _ = sets
    model = tiny(train_set)
    bn = [m for m in model.core.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    config = TrainConfig(epochs=1, batch_size=4, warmup_iters=1, augment=False)
    train(model, train_set, config, progress=False, hooks=[frozen_backbone_bn])
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bn, strict=True))
    free = tiny(train_set)
    train(free, train_set, config, progress=False)
    moved = [m.running_mean for m in free.core.backbone.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    assert any(not torch.equal(a, b) for a, b in zip(before, moved, strict=True))


def test_photographs_are_never_flipped_upside_down(sets):
    """With p_vflip=0 a box's vertical order is kept: an image whose top half is bright stays
    so whatever the generator draws."""
    img = torch.zeros(3, 40, 40)
    img[:, :20] = 1.0
    target = {"boxes": torch.tensor([[5.0, 2.0, 15.0, 10.0]]), "labels": torch.tensor([1])}
    aug = SSDAugment(p_crop=0.0, p_expand=0.0, p_vflip=0.0)
    flipped = 0
    for seed in range(40):
        out, t = aug(img, target, torch.Generator().manual_seed(seed))
        assert out[:, :5].mean() > out[:, -5:].mean()
        assert float(t["boxes"][0, 1]) == 2.0
        plain = SSDAugment(p_crop=0.0, p_expand=0.0)(img, target,
                                                     torch.Generator().manual_seed(seed))[0]
        flipped += bool(plain[:, :5].mean() < plain[:, -5:].mean())
    assert 5 < flipped < 35  # the default still flips about half (the synthetic set)
    assert aug.describe()["p_vflip"] == 0.0
