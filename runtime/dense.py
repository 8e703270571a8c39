"""Helpers shared by the dense tasks (seg, normal, pointmap): pad cropping and chunked resizing."""

from __future__ import annotations

import numpy as np

from .resample import bilinear_resize_float

CHUNK_BYTES = 64 << 20  # working-set budget per chunk: big photos never need C x H x W at once


def crop_pad(chw: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Remove the centred padding (left, right, top, bottom) of spec 5.4 from a (C, H, W) map."""
    left, right, top, bottom = (int(p) for p in pad)
    _, h, w = chw.shape
    if left + right >= w or top + bottom >= h or min(left, right, top, bottom) < 0:
        raise ValueError(f"padding {pad} does not fit a map of size {h}x{w}")
    return chw[:, top:h - bottom, left:w - right]


def chunk_rows(channels: int, width: int, budget: int = CHUNK_BYTES) -> int:
    """Output rows per chunk so that a float32 (channels, rows, width) slab stays within budget."""
    return max(1, budget // max(1, 4 * channels * width))


def resize_to_hwc(chw: np.ndarray, out_hw: tuple[int, int], budget: int = CHUNK_BYTES) -> np.ndarray:
    """Bilinear (torch, align_corners=False) resize of (C, h, w) to (H, W, C) float32, in row chunks
    so only the output itself is full size."""
    c = chw.shape[0]
    h, w = int(out_hw[0]), int(out_hw[1])
    out = np.empty((h, w, c), dtype=np.float32)
    step = chunk_rows(c, w, budget)
    for r0 in range(0, h, step):
        part = bilinear_resize_float(chw, (h, w), rows=(r0, min(h, r0 + step)))
        out[r0:r0 + part.shape[1]] = np.moveaxis(part, 0, -1)
    return out
