"""Pointmap post-processing (spec 6.4): metric XYZ per pixel in the camera frame."""

from __future__ import annotations

import numpy as np

from sapiens_edge.metadata import CANONICAL_FOCAL_LENGTH

from .dense import crop_pad, resize_to_hwc

_BLUR_SIGMA = 0.8
_BLUR_PASSES = 4


def _torchvision_kernel(ksize: int = 3, sigma: float = _BLUR_SIGMA) -> np.ndarray:
    """torchvision's gaussian_blur 1-D kernel (linspace(-r, r), exp(-0.5 (x/sigma)^2), sum 1)."""
    x = np.linspace(-(ksize - 1) / 2, (ksize - 1) / 2, ksize, dtype=np.float32)
    pdf = np.exp(np.float32(-0.5) * (x / np.float32(sigma)) ** 2)
    return (pdf / pdf.sum()).astype(np.float32)


_K = _torchvision_kernel()


def gaussian_blur3(chw: np.ndarray) -> np.ndarray:
    """One 3x3 Gaussian blur (sigma 0.8) with reflect padding, per channel (torchvision semantics)."""
    mode = "reflect" if min(chw.shape[1:]) > 1 else "edge"  # reflect needs 2+ pixels per axis
    p = np.pad(chw, ((0, 0), (1, 1), (1, 1)), mode=mode)
    h, w = chw.shape[1:]
    t = _K[0] * p[:, :, 0:w] + _K[1] * p[:, :, 1:w + 1] + _K[2] * p[:, :, 2:w + 2]
    return (_K[0] * t[:, 0:h] + _K[1] * t[:, 1:h + 1] + _K[2] * t[:, 2:h + 2]).astype(np.float32)


def focal_length(scale: float) -> float:
    """Focal length (pixels, at the network input) implied by the predicted scale: 768 / scale."""
    return float(CANONICAL_FOCAL_LENGTH / float(scale))


def postprocess_pointmap(raw: np.ndarray, scale: float | np.ndarray, pad: tuple[int, int, int, int],
                         out_hw: tuple[int, int]) -> np.ndarray:
    """(3, h, w) pointmap and its scalar scale -> metric (H, W, 3) float32 X, Y, Z.

    pointmap / scale -> crop pad -> (4x 3x3 Gaussian blur if upsampling in either dimension) ->
    bilinear (align_corners=False) to ``out_hw``."""
    x = np.asarray(raw, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a raw pointmap of shape (3, h, w), got {x.shape}")
    s = np.asarray(scale, dtype=np.float32).reshape(-1)
    if s.size != 1:
        raise ValueError(f"expected one scale value per image, got {s.size}")
    x = crop_pad(x / s[0], pad)
    if out_hw[0] > x.shape[1] or out_hw[1] > x.shape[2]:
        # A blur per pass smooths patch seams before upsampling them, as upstream does.
        for _ in range(_BLUR_PASSES):
            x = gaussian_blur3(x)
    return resize_to_hwc(x, out_hw)
