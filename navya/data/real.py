"""Named sets of real photographs that live outside the repository.

A real photograph set cannot be committed here (README, "Real photographs"): it lives beside
the checkout, and the gates, tests and studies that need it find it through an environment
variable or its default folder. Where it is absent they say so, loudly, with the folder they
looked in and how to make it; they never fall back to other data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REAL_SETS", "RealSet", "real_set"]


@dataclass(frozen=True)
class RealSet:
    """A VOC folder of real photographs: where to look for it and what it is."""

    name: str
    env: str  # the variable that names the folder
    default: str  # the folder relative to the checkout's parent when the variable is unset
    description: str

    def folder(self, root: str | os.PathLike | None = None) -> Path:
        """Where the set is looked for: ``$env``, else ``<root>/../<default>`` (``root``: the
        checkout, by default this package's)."""
        value = os.environ.get(self.env, "").strip()
        if value:
            return Path(value)
        root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
        return root.parent / self.default

    def locate(self, root: str | os.PathLike | None = None) -> Path | None:
        """The set's folder if it holds a VOC set (``Annotations/`` and ``ImageSets/Main/``)."""
        path = self.folder(root)
        if (path / "Annotations").is_dir() and (path / "ImageSets" / "Main").is_dir():
            return path
        return None

    def missing(self, root: str | os.PathLike | None = None) -> str:
        """Why the set cannot be used: the folder looked in, the variable, where to read more."""
        return (f"the real photographs {self.name!r} ({self.description}) are not at "
                f"{self.folder(root)}: set {self.env} to their VOC folder (README, 'Real "
                "photographs', says how to make it)")


#: The real sets navya knows, by name.
REAL_SETS: dict[str, RealSet] = {
    "voc2012-100": RealSet(
        "voc2012-100", "NAVYA_REAL_PHOTOS", "shared/real/voc2012_100",
        "100 PASCAL VOC2012 photographs with their VOC annotations, from "
        "rafaelpadilla/review_object_detection_metrics, MIT"),
}


def real_set(name: str) -> RealSet:
    """The real set called ``name``."""
    try:
        return REAL_SETS[name]
    except KeyError:
        raise KeyError(f"unknown real photograph set {name!r}; known: "
                       f"{', '.join(REAL_SETS)}") from None
