"""Task results: JSON summaries (small, serialisable), dense arrays (saved by the caller) and
overlay images. Shared by the torch reference pipeline and every exported-artifact runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from sapiens_edge import metadata

from . import visualize

POSE_SCORE_THRESHOLD = 0.3  # drawing only; all keypoints and scores are written out


def _size(hw: tuple[int, int]) -> dict[str, int]:
    return {"height": int(hw[0]), "width": int(hw[1])}


def _floats(a: np.ndarray, ndigits: int = 4) -> list:
    """Nested lists of rounded Python floats (JSON cannot hold numpy scalars, NaN becomes None)."""
    return [_floats(x, ndigits) for x in a] if np.ndim(a) > 0 else (
        round(float(a), ndigits) if np.isfinite(a) else None)


@dataclass
class TaskResult:
    task: str
    image_hw: tuple[int, int]  # original image (H, W)
    input_hw: tuple[int, int]  # network input (H, W)

    def _header(self) -> dict[str, Any]:
        return {"task": self.task, "image_size": _size(self.image_hw), "input_size": _size(self.input_hw)}

    def to_json(self) -> dict[str, Any]:
        return self._header()

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def overlay(self, image: np.ndarray | Image.Image) -> Image.Image:
        raise NotImplementedError


@dataclass
class PoseResult(TaskResult):
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 308, 2), np.float32))  # (P, K, 2)
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 308), np.float32))  # (P, K)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (P, 4)
    flip_test: bool = True

    def to_json(self) -> dict[str, Any]:
        names = metadata.keypoints().names
        persons = []
        for box, kp, sc in zip(self.boxes, self.keypoints, self.scores, strict=True):
            persons.append({
                "box": _floats(box, 2),
                "mean_score": round(float(np.mean(sc)), 4) if sc.size else 0.0,
                "num_above_threshold": int(np.sum(sc > POSE_SCORE_THRESHOLD)),
                "keypoints": _floats(kp, 2),  # [x, y] image pixels, index-aligned with keypoint_names
                "scores": _floats(sc, 4),
            })
        return {**self._header(), "flip_test": self.flip_test, "num_persons": len(persons),
                "score_threshold": POSE_SCORE_THRESHOLD,
                "keypoint_names": list(names[:self.keypoints.shape[1]]), "persons": persons}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"keypoints": self.keypoints, "scores": self.scores, "boxes": self.boxes}

    def overlay(self, image: np.ndarray | Image.Image) -> Image.Image:
        return visualize.draw_pose(image, self.keypoints, self.scores, POSE_SCORE_THRESHOLD)


@dataclass
class SegResult(TaskResult):
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))  # (H, W) class ids
    fractions: np.ndarray = field(default_factory=lambda: np.zeros(29))  # (C,) pixel share per class

    def to_json(self) -> dict[str, Any]:
        names = metadata.seg().names
        present = {names[i]: round(float(f), 6) for i, f in enumerate(self.fractions) if f > 0}
        return {**self._header(), "class_names": list(names),
                "foreground_fraction": round(float(1.0 - self.fractions[0]), 6) if self.fractions.size else 0.0,
                "class_fractions": present}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"seg": self.labels}

    def overlay(self, image: np.ndarray | Image.Image) -> Image.Image:
        return visualize.overlay_seg(image, self.labels)


@dataclass
class NormalResult(TaskResult):
    normals: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.float32))  # (H, W, 3)

    def to_json(self) -> dict[str, Any]:
        flat = self.normals.reshape(-1, 3)
        mean = flat.mean(axis=0) if flat.size else np.zeros(3)
        return {**self._header(), "channels": ["x", "y", "z"], "frame": "camera",
                "mean_normal": _floats(mean, 4)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"normal": self.normals}

    def overlay(self, image: np.ndarray | Image.Image, mask: np.ndarray | None = None) -> Image.Image:
        return visualize.normal_to_rgb(self.normals, mask)


@dataclass
class PointmapResult(TaskResult):
    pointmap: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.float32))  # (H, W, 3)
    scale: float = 1.0
    focal_length: float = metadata.CANONICAL_FOCAL_LENGTH

    def to_json(self) -> dict[str, Any]:
        z = self.pointmap[..., 2]
        z = z[np.isfinite(z)]
        depth = {k: round(float(f(z)), 4) for k, f in
                 (("min", np.min), ("median", np.median), ("max", np.max))} if z.size else {}
        return {**self._header(), "channels": ["X", "Y", "Z"], "frame": "camera",
                "scale": float(self.scale), "focal_length_px": round(self.focal_length, 4),
                "focal_length_at": f"network input ({self.input_hw[1]}x{self.input_hw[0]})",
                "depth": depth}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"pointmap": self.pointmap}

    def overlay(self, image: np.ndarray | Image.Image, mask: np.ndarray | None = None) -> Image.Image:
        return visualize.depth_to_rgb(self.pointmap, mask)
