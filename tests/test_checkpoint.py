"""Tests for navya.models.checkpoint: save/load with metadata, clear errors, atomic writes."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch

from navya.models import (
    CheckpointError,
    build_model,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from navya.models.checkpoint import FORMAT, FORMAT_VERSION, load_into

ARCH = "ssdlite_mobilenet_v2"
TINY = {"width_mult": 0.25, "image_size": 128}
META = {
    "class_names": ["disc", "square", "ring"],
    "data_fingerprint": "ab" * 32,
    "val": {"split": "val", "map": 0.625, "ap": {"disc": 0.9, "square": 0.5, "ring": 0.475}},
    "train_config": {"epochs": 2, "lr": 0.003, "max_iters": None},
}


def tiny(arch: str = ARCH, num_classes: int = 4, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, num_classes, **{**TINY, **config})


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A trained-looking tiny model (BN statistics moved) and its checkpoint file."""
    model = tiny()
    with torch.no_grad():  # move BN running statistics away from their defaults
        model.train()
        model.core(torch.randn(2, 3, 128, 128))
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, META)
    return path, model


def _outputs(model, seed: int = 0):
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval().core(x)


def _names_file(exc: pytest.ExceptionInfo, path: Path) -> bool:
    return str(path) in str(exc.value)


# -- round trip ----------------------------------------------------------------------------


def test_round_trip_same_outputs_and_meta(saved):
    path, model = saved
    loaded, ckpt = load_checkpoint(path)
    assert not loaded.training
    assert loaded.arch == ARCH and loaded.num_classes == 4
    assert loaded.config == model.config
    for a, b in zip(_outputs(loaded), _outputs(model), strict=True):
        assert torch.equal(a, b)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert ckpt.path == path
    assert ckpt.arch == ARCH and ckpt.num_classes == 4
    assert ckpt.model_config == TINY
    assert ckpt.class_names == tuple(META["class_names"])
    for k, v in META.items():
        assert ckpt.meta[k] == v
    assert ckpt.meta["torch_version"] == torch.__version__


def test_file_loads_with_plain_weights_only_torch_load(saved):
    # the file is plain data: no navya (or torch.torch_version) class needs unpickling
    payload = torch.load(saved[0], map_location="cpu", weights_only=True)
    assert payload["format"] == FORMAT and payload["format_version"] == FORMAT_VERSION
    assert type(payload["meta"]["torch_version"]) is str


def test_round_trip_mobilenet_v3(tmp_path):
    model = tiny("ssdlite_mobilenet_v3_large", 6).eval()
    save_checkpoint(tmp_path / "v3.pt", model)
    loaded, ckpt = load_checkpoint(tmp_path / "v3.pt")
    assert ckpt.arch == "ssdlite_mobilenet_v3_large" and ckpt.class_names == ()
    for a, b in zip(_outputs(loaded), _outputs(model), strict=True):
        assert torch.equal(a, b)


# -- models that do not fit -----------------------------------------------------------------


def test_wrong_architecture(saved):
    path, _ = saved
    other = tiny("ssdlite_mobilenet_v3_large")
    with pytest.raises(CheckpointError) as exc:
        load_into(other, read_checkpoint(path))
    assert _names_file(exc, path)
    assert "ssdlite_mobilenet_v2" in str(exc.value)
    assert "ssdlite_mobilenet_v3_large" in str(exc.value)


def test_wrong_class_count(saved):
    path, _ = saved
    other = tiny(num_classes=11)
    with pytest.raises(CheckpointError) as exc:
        load_into(other, read_checkpoint(path))
    assert _names_file(exc, path)
    assert re.search(r"\b4 classes\b", str(exc.value)) and re.search(r"\b11\b", str(exc.value))


def test_wrong_width_names_a_mismatched_weight(saved):
    path, _ = saved
    other = tiny(width_mult=0.5)
    with pytest.raises(CheckpointError) as exc:
        load_into(other, read_checkpoint(path))
    assert _names_file(exc, path)
    assert "shape" in str(exc.value) and "core." in str(exc.value)


# -- unreadable files -------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.99])
def test_truncated_file(saved, tmp_path, fraction):
    data = saved[0].read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert _names_file(exc, path)


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes(tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "noise.pt"
    path.write_bytes(rng.randbytes(rng.choice([7, 4096, 70_000])))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert _names_file(exc, path)


@pytest.mark.parametrize("payload", [{"state_dict": {"w": torch.zeros(2)}}, [1, 2, 3],
                                     {"format": "someone-else", "arch": ARCH}])
def test_not_a_navya_checkpoint(tmp_path, payload):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="not a navya checkpoint") as exc:
        read_checkpoint(path)
    assert _names_file(exc, path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="not found") as exc:
        load_checkpoint(path)
    assert _names_file(exc, path)


def test_newer_format_version(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="newer") as exc:
        read_checkpoint(path)
    assert _names_file(exc, path)


def test_incomplete_checkpoint(tmp_path):
    path = tmp_path / "partial.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "arch": ARCH}, path)
    with pytest.raises(CheckpointError, match="lacks") as exc:
        read_checkpoint(path)
    assert _names_file(exc, path)
    assert "state_dict" in str(exc.value)


def test_checkpoint_that_describes_an_unknown_model(tmp_path):
    path = tmp_path / "alien.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "arch": "yolo",
                "num_classes": 4, "model_config": {}, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="cannot rebuild") as exc:
        load_checkpoint(path)
    assert _names_file(exc, path)


# -- atomic writes -------------------------------------------------------------------------


def test_save_leaves_no_temporary_file(tmp_path):
    model = tiny()
    path = tmp_path / "sub" / "model.pt"  # the folder is created
    save_checkpoint(path, model)
    save_checkpoint(path, model, {"again": True})  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]
    assert read_checkpoint(path).meta["again"] is True


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    model = tiny()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, {"version": "old"})
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")  # some bytes reach the disk, then it fails
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, model, {"version": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert read_checkpoint(path).meta["version"] == "old"
