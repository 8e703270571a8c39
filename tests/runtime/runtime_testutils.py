"""Shared helpers for the runtime tests (numpy + Pillow only). Not a conftest on purpose: the
module name stays unique next to other test folders."""

from __future__ import annotations

import numpy as np


def ramp_image(h: int, w: int, c: int = 3) -> np.ndarray:
    """Deterministic 'random-looking' uint8 image (no RNG, so golden values never drift)."""
    return ((np.arange(h * w * c) * 37 + 11) % 256).astype(np.uint8).reshape(h, w, c)


def gaussian_map(h: int, w: int, x: float, y: float, sigma: float, amp: float = 1.0) -> np.ndarray:
    """amp * exp(-r^2 / (2 sigma^2)) centred at sub-pixel (x, y), float32 (h, w)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return (amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma * sigma))).astype(np.float32)


def make_rng(seed: int = 1234) -> np.random.Generator:
    return np.random.default_rng(seed)
