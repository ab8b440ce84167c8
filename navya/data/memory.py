"""A data set's images decoded once and kept in memory as uint8 (every variant of a run is
scored on the same evaluation images; decoding them once per variant would cost more than some
variants' whole evaluation)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

__all__ = ["UInt8Images"]


class UInt8Images(Dataset):
    """``dataset``'s items, images kept as uint8 after their first decoding: the same
    ``(image float32 [3, H, W] in [0, 1], target)`` items (pixels rounded to 1/255, which a
    decoded 8-bit image already is)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.class_names = tuple(dataset.class_names)
        self._images: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def target(self, i: int) -> dict:
        return self.dataset.target(i)

    def fingerprint(self, file_digest: Callable[[Path], str] | None = None) -> str:
        """The wrapped data set's fingerprint (the same items)."""
        return self.dataset.fingerprint(file_digest)

    def __getitem__(self, i: int):
        if i not in self._images:
            img, _ = self.dataset[i]
            self._images[i] = (img * 255).round().to(torch.uint8)
        return self._images[i].float() / 255, self.dataset.target(i)
