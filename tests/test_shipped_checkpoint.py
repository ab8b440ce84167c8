"""The shipped reference checkpoint reproduces the val mAP recorded in its metadata.

Synthetic images are seeded per (split, index), so generating only the val split gives exactly
the 500 val images of the default data set the checkpoint was scored on.
"""

import math

import pytest
import torch

from navya.data.synthetic import SyntheticConfig, generate
from navya.data.voc import VOCDataset
from navya.metrics.evaluate import evaluate_model
from navya.models import load_checkpoint, read_checkpoint
from navya.models.checkpoint import DEFAULT_CHECKPOINT
from navya.runtime import num_threads

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="no shipped checkpoint"),
]


def test_shipped_checkpoint_metadata_is_complete():
    meta = read_checkpoint(DEFAULT_CHECKPOINT).meta
    for key in ("class_names", "train_config", "data_fingerprint", "val", "torch_version",
                "train_seconds", "command"):
        assert key in meta, key
    val = meta["val"]
    assert 0.60 <= val["map"] <= 0.90, val["map"]
    ap = [a for a in val["ap"].values() if not math.isnan(a)]
    assert max(ap) - min(ap) >= 0.25


@pytest.mark.slow  # 25 s: 500 images generated and evaluated; `pytest benchmarks/` checks the
# same model on the same images every run (fp32's deterministic baseline)
def test_shipped_checkpoint_reproduces_its_val_map(tmp_path):
    model, ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    recorded = ckpt.meta["val"]
    generate(tmp_path, SyntheticConfig(splits={"val": recorded["images"]}))
    val = VOCDataset(tmp_path, "val", class_names=ckpt.class_names)
    with num_threads(torch.get_num_threads()):
        ev = evaluate_model(model, val, batch_size=8)
    assert ev.map("all-point") == pytest.approx(recorded["map"], abs=0.005)
    for cls, ap in recorded["ap"].items():
        assert ev.ap["all-point"][cls] == pytest.approx(ap, abs=0.02), cls
