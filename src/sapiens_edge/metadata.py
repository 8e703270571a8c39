"""Sapiens2 task metadata (keypoints, flip table, skeleton, classes, palette). Torch-free."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class KeypointInfo:
    names: tuple[str, ...]
    flip_indices: np.ndarray  # (308,) int: channel permutation for flip test (an involution)
    skeleton: tuple[tuple[int, int], ...]
    skeleton_colors: tuple[tuple[int, int, int], ...]
    colors: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class SegInfo:
    names: tuple[str, ...]
    palette: np.ndarray  # (29, 3) uint8 RGB
    background_id: int


@lru_cache(maxsize=1)
def bundled_photo() -> Path:
    """The bundled astronaut photo (NASA, public domain): the demo and validation default (never calibrated on)."""
    return Path(str(resources.files("sapiens_edge").joinpath("assets/astronaut.jpg")))


def raw() -> dict:
    """The metadata JSON shipped with the package (schema in the architecture spec, 7.4)."""
    text = resources.files("sapiens_edge").joinpath("data/sapiens2-metadata.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def keypoints() -> KeypointInfo:
    k = raw()["keypoints308"]
    return KeypointInfo(
        names=tuple(k["names"]),
        flip_indices=np.asarray(k["flip_indices"], dtype=np.int64),
        skeleton=tuple((int(a), int(b)) for a, b in k["skeleton_links"]),
        skeleton_colors=tuple(tuple(c) for c in k["skeleton_link_colors_rgb"]),
        colors=tuple(tuple(c) for c in k["colors_rgb"]),
    )


@lru_cache(maxsize=1)
def seg() -> SegInfo:
    s = raw()["seg29"]
    return SegInfo(
        names=tuple(s["names"]),
        palette=np.asarray(s["palette_rgb"], dtype=np.uint8),
        background_id=int(s["background_id"]),
    )


def preprocessing() -> dict:
    return raw()["preprocessing"]


MEAN_RGB = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD_RGB = np.array([58.395, 57.12, 57.375], dtype=np.float32)
INPUT_HW = (1024, 768)
HEATMAP_HW = (256, 192)
CANONICAL_FOCAL_LENGTH = 768.0
