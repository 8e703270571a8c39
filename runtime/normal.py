"""Surface-normal post-processing (spec 6.3)."""

from __future__ import annotations

import numpy as np

from .dense import crop_pad, resize_to_hwc


def unit_normals(raw: np.ndarray) -> np.ndarray:
    """(3, h, w) raw output -> unit vectors (norm over channels clamped to >= 1e-8), float32."""
    x = np.asarray(raw, dtype=np.float32)
    norm = np.sqrt(np.sum(x * x, axis=0, keepdims=True))
    return x / np.maximum(norm, np.float32(1e-8))


def postprocess_normal(raw: np.ndarray, pad: tuple[int, int, int, int],
                       out_hw: tuple[int, int]) -> np.ndarray:
    """(3, h, w) raw normals -> normalize -> crop pad -> bilinear to ``out_hw`` -> (H, W, 3) float32.

    Not re-normalized after resizing (upstream saves exactly this); channels are x, y, z."""
    x = np.asarray(raw, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected raw normals of shape (3, h, w), got {x.shape}")
    return resize_to_hwc(crop_pad(unit_normals(x), pad), out_hw)
