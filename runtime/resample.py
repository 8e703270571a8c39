"""Separable resampling with OpenCV / PyTorch semantics, numpy only.

Every resize is split into one pass per axis. A pass is described by *taps*: for each output
index a few source indices and their weights (out = sum_k w[:, k] * src[idx[:, k]]). Gathering
taps instead of multiplying by dense matrices keeps a 4000x3000 photo fast and small.

- ``resize``: ``cv2.resize`` (INTER_LINEAR / INTER_CUBIC / INTER_AREA). uint8 bilinear replays
  OpenCV's fixed-point arithmetic (bit-identical in our checks against OpenCV 5.0); cubic and
  area agree to +-1 at rounding ties (< 0.5 % of pixels).
- ``warp_scale_translate``: ``cv2.warpAffine`` without rotation, constant border (OpenCV >= 4.11
  computes these warps in floating point; we do the same).
- ``bilinear_resize_float``: ``torch.nn.functional.interpolate(mode='bilinear',
  align_corners=False, antialias=False)`` for logits, normals and pointmaps.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Method = Literal["linear", "cubic", "area"]
_METHODS = ("linear", "cubic", "area")
_COEF_BITS = 11  # OpenCV INTER_RESIZE_COEF_BITS
_COEF_SCALE = 1 << _COEF_BITS
_CUBIC_A = np.float32(-0.75)  # OpenCV's bicubic constant (PyTorch uses the same)

Taps = tuple[np.ndarray, np.ndarray]  # (idx (n_out, K) int64, weights (n_out, K) float32)


# ----------------------------------------------------------------------------- tap tables
def _cubic_weights(fx: np.ndarray) -> np.ndarray:
    """OpenCV interpolateCubic in float32 (same operation order), (n,) -> (n, 4)."""
    a, one = _CUBIC_A, np.float32(1)
    x1 = fx + one
    w0 = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
    w1 = ((a + 2) * fx - (a + 3)) * fx * fx + one
    r = one - fx
    w2 = ((a + 2) * r - (a + 3)) * r * r + one
    w3 = one - w0 - w1 - w2
    return np.stack([w0, w1, w2, w3], axis=1).astype(np.float32)


def _cv_interp_taps(n_in: int, n_out: int, method: str, area_mode: bool, pin_edges: bool) -> Taps:
    """Tap table of OpenCV's resizeGeneric for one axis (linear, cubic or area-upscale).

    ``pin_edges``: OpenCV moves out-of-range linear taps onto the edge pixel (weight 1) for the x
    axis only; on y it keeps the weights and clamps the rows. Same result in exact arithmetic,
    but not in OpenCV's fixed point, so we mirror it.
    """
    inv_scale = n_out / n_in
    scale = 1.0 / inv_scale  # OpenCV stores 1/inv_scale, not n_in/n_out
    d = np.arange(n_out, dtype=np.float64)
    if area_mode:
        s = np.floor(d * scale).astype(np.int64)
        f = ((d + 1) - (s + 1) * inv_scale).astype(np.float32)
        f = np.where(f <= 0, np.float32(0), f - np.floor(f)).astype(np.float32)
    else:
        pos = ((d + 0.5) * scale - 0.5).astype(np.float32)
        s = np.floor(pos).astype(np.int64)
        f = (pos - s.astype(np.float32)).astype(np.float32)
    if method == "cubic":
        w = _cubic_weights(f)
        idx = s[:, None] + np.arange(-1, 3)
    else:
        if pin_edges:
            lo, hi = s < 0, s >= n_in - 1
            f = np.where(lo | hi, np.float32(0), f).astype(np.float32)
            s = np.where(lo, 0, np.where(hi, n_in - 1, s))
        w = np.stack([np.float32(1) - f, f], axis=1)
        idx = s[:, None] + np.arange(2)
    return np.clip(idx, 0, n_in - 1), w.astype(np.float32)


def _cv_area_taps(n_in: int, n_out: int) -> Taps:
    """OpenCV computeResizeAreaTab: exact box-overlap weights for downscaling."""
    scale = 1.0 / (n_out / n_in)
    rows: list[list[tuple[int, float]]] = []
    for dx in range(n_out):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, n_in - fsx1)
        sx2 = min(math.floor(fsx2), n_in - 1)
        sx1 = min(math.ceil(fsx1), sx2)
        taps = []
        if sx1 - fsx1 > 1e-3:
            taps.append((sx1 - 1, (sx1 - fsx1) / cell))
        taps.extend((sx, 1.0 / cell) for sx in range(sx1, sx2))
        if fsx2 - sx2 > 1e-3:
            taps.append((sx2, min(fsx2 - sx2, 1.0, cell) / cell))
        rows.append(taps)
    k = max(len(t) for t in rows)
    idx = np.zeros((n_out, k), dtype=np.int64)
    w = np.zeros((n_out, k), dtype=np.float32)
    for i, taps in enumerate(rows):
        for j, (sx, wt) in enumerate(taps):
            idx[i, j], w[i, j] = sx, wt
    return idx, w


def torch_bilinear_taps(n_in: int, n_out: int) -> Taps:
    """PyTorch upsample_bilinear2d (align_corners=False) taps for one axis, float32 like torch."""
    scale = np.float32(n_in) / np.float32(n_out)
    # torch's CPU kernels are compiled with FMA: scale * (d + 0.5) - 0.5 is rounded once.
    d = np.arange(n_out, dtype=np.float32) + np.float32(0.5)
    src = (np.float64(scale) * d.astype(np.float64) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))  # torch clamps negative source coordinates to 0
    i0 = src.astype(np.int64)
    lam1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return np.stack([i0, i1], axis=1), np.stack([np.float32(1) - lam1, lam1], axis=1)


# ----------------------------------------------------------------------------- tap application
def apply_taps(arr: np.ndarray, taps: Taps, axis: int, dtype: type = np.float32) -> np.ndarray:
    """out[..., i, ...] = sum_k w[i, k] * arr[..., idx[i, k], ...] along ``axis``, computed in dtype."""
    idx, w = taps
    shape = [1] * arr.ndim
    shape[axis] = idx.shape[0]
    out = None
    for k in range(idx.shape[1]):
        term = np.take(arr, idx[:, k], axis=axis).astype(dtype, copy=False) * w[:, k].reshape(shape)
        out = term if out is None else np.add(out, term, out=out)
    return out


def _spatial_axes(img: np.ndarray, channels_first: bool) -> tuple[int, int]:
    if img.ndim == 2:
        return 0, 1
    if img.ndim != 3:
        raise ValueError(f"expected a (H, W), (H, W, C) or (C, H, W) array, got shape {img.shape}")
    return (1, 2) if channels_first else (0, 1)


def _check_hw(out_hw: tuple[int, int]) -> tuple[int, int]:
    h, w = int(out_hw[0]), int(out_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"output size must be positive, got {out_hw}")
    return h, w


# ----------------------------------------------------------------------------- cv2.resize
def resize(img: np.ndarray, out_hw: tuple[int, int], method: Method = "linear", *,
           channels_first: bool = False) -> np.ndarray:
    """``cv2.resize(img, (W, H), interpolation=...)`` for uint8 or float arrays.

    ``img`` is (H, W), (H, W, C) or, with ``channels_first``, (C, H, W). uint8 in -> uint8 out
    (rounded and saturated like OpenCV); float in -> float32 out.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown resize method {method!r}; use one of {_METHODS}")
    ay, ax = _spatial_axes(img, channels_first)
    h_in, w_in = img.shape[ay], img.shape[ax]
    h_out, w_out = _check_hw(out_hw)
    if (h_in, w_in) == (h_out, w_out):
        return img.copy() if img.dtype == np.uint8 else img.astype(np.float32)
    is_u8 = img.dtype == np.uint8
    if method == "area" and h_out <= h_in and w_out <= w_in:
        return _resize_area_down(img, (h_out, w_out), ay, ax, is_u8)
    # INTER_AREA with any upscaled axis runs OpenCV's "area-mode" 2-tap scheme on both axes.
    area_mode = method == "area"
    kind = "cubic" if method == "cubic" else "linear"
    tx = _cv_interp_taps(w_in, w_out, kind, area_mode, pin_edges=True)
    ty = _cv_interp_taps(h_in, h_out, kind, area_mode, pin_edges=False)
    if not is_u8:
        return apply_taps(apply_taps(img, tx, ax), ty, ay)
    if kind == "cubic":
        # OpenCV (>= 4.x SIMD paths) matches float evaluation + round-to-nearest-even here.
        out = apply_taps(apply_taps(img, tx, ax), ty, ay)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return _linear_u8_fixed_point(img, tx, ty, ax, ay)


def _linear_u8_fixed_point(img: np.ndarray, tx: Taps, ty: Taps, ax: int, ay: int) -> np.ndarray:
    """OpenCV's uint8 bilinear: 11-bit weights, exact horizontal sums, then the SIMD vertical
    step ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16), rounded by (v + 2) >> 2. Emulating
    the truncations (not just the ideal rounding) makes the result bit-identical to cv2.resize."""
    # int32 is enough: horizontal sums <= 255 * 2048, products (S >> 4) * b < 2**27.
    ax_w = np.rint(tx[1] * _COEF_SCALE).astype(np.int32)
    by_w = np.rint(ty[1] * _COEF_SCALE).astype(np.int32)
    horiz = apply_taps(img, (tx[0], ax_w), ax, np.int32) >> 4
    shape = [1] * img.ndim
    shape[ay] = ty[0].shape[0]
    acc = None
    for k in range(2):
        term = (np.take(horiz, ty[0][:, k], axis=ay) * by_w[:, k].reshape(shape)) >> 16
        acc = term if acc is None else acc + term
    return np.clip((acc + 2) >> 2, 0, 255).astype(np.uint8)


def _resize_area_down(img: np.ndarray, out_hw: tuple[int, int], ay: int, ax: int,
                      is_u8: bool) -> np.ndarray:
    h_in, w_in = img.shape[ay], img.shape[ax]
    h_out, w_out = out_hw
    tx, ty = _cv_area_taps(w_in, w_out), _cv_area_taps(h_in, h_out)
    out = apply_taps(apply_taps(img, tx, ax), ty, ay)  # float32 like OpenCV's area code
    if not is_u8:
        return out
    if w_in == 2 * w_out and h_in == 2 * h_out:
        out = np.floor(out + 0.5)  # OpenCV's 2x2 fast path rounds halves up: (sum + 2) >> 2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_chw(img: np.ndarray, out_hw: tuple[int, int], method: Method = "linear") -> np.ndarray:
    """``resize`` for channel-first (C, H, W) arrays."""
    return resize(img, out_hw, method, channels_first=True)


# ----------------------------------------------------------------------------- cv2.warpAffine
def _warp_taps(n_in: int, n_out: int, scale: float, offset: float, method: str) -> Taps:
    """Taps of the inverse map src = (dst - offset) / scale; out-of-range taps get weight 0."""
    inv = 1.0 / scale
    pos = np.arange(n_out, dtype=np.float64) * inv - offset * inv
    s = np.floor(pos).astype(np.int64)
    f = (pos - s).astype(np.float32)
    if method == "cubic":
        w, idx = _cubic_weights(f), s[:, None] + np.arange(-1, 3)
    else:
        w, idx = np.stack([np.float32(1) - f, f], axis=1), s[:, None] + np.arange(2)
    inside = (idx >= 0) & (idx < n_in)
    return np.clip(idx, 0, n_in - 1), np.where(inside, w, np.float32(0)).astype(np.float32)


def warp_scale_translate(img: np.ndarray, out_hw: tuple[int, int], scale_xy: tuple[float, float],
                         offset_xy: tuple[float, float], method: Method = "linear",
                         border_value: float = 0) -> np.ndarray:
    """``cv2.warpAffine`` with M = [[sx, 0, ox], [0, sy, oy]] (dst = scale * src + offset).

    Constant border (``border_value``), bilinear ('linear'; 'area' is executed as bilinear like
    OpenCV) or bicubic ('cubic'). uint8 (H, W[, C]) in -> uint8 out (rounded, saturated).
    Only the source window the taps touch is read, so small crops of big photos stay cheap.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown warp method {method!r}; use one of {_METHODS}")
    if scale_xy[0] == 0 or scale_xy[1] == 0:
        raise ValueError("warp scale must be non-zero")
    h_out, w_out = _check_hw(out_hw)
    kind = "cubic" if method == "cubic" else "linear"
    tx = _warp_taps(img.shape[1], w_out, float(scale_xy[0]), float(offset_xy[0]), kind)
    ty = _warp_taps(img.shape[0], h_out, float(scale_xy[1]), float(offset_xy[1]), kind)
    (r0, r1), (c0, c1) = _touched(ty), _touched(tx)
    window = img[r0:r1, c0:c1]
    # Zero-weight taps may point outside the window: clip them (their value is never used).
    tx, ty = (np.clip(tx[0] - c0, 0, c1 - c0 - 1), tx[1]), (np.clip(ty[0] - r0, 0, r1 - r0 - 1), ty[1])
    # Pass over the axis that shrinks the data most first (float64, so the order is immaterial).
    if h_out * window.shape[1] < window.shape[0] * w_out:
        out = apply_taps(apply_taps(window, ty, 0, np.float64), tx, 1, np.float64)
    else:
        out = apply_taps(apply_taps(window, tx, 1, np.float64), ty, 0, np.float64)
    if border_value:
        # Outside taps carry weight 0; the border's share is 1 - (inside weight) per pixel.
        inside = np.outer(ty[1].sum(axis=1), tx[1].sum(axis=1)).astype(np.float64)
        out += border_value * (1 - inside).reshape(inside.shape + (1,) * (out.ndim - 2))
    if img.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(np.float32)


def _touched(taps: Taps) -> tuple[int, int]:
    """[first, last + 1) source index with a non-zero weight (a 1-pixel window if none)."""
    used = taps[0][taps[1] != 0]
    return (int(used.min()), int(used.max()) + 1) if used.size else (0, 1)


# ----------------------------------------------------------------------------- torch bilinear
def bilinear_resize_float(chw: np.ndarray, out_hw: tuple[int, int],
                          rows: tuple[int, int] | None = None) -> np.ndarray:
    """``F.interpolate(x[None], out_hw, mode='bilinear', align_corners=False)[0]`` in numpy.

    ``chw`` is (C, H, W) (or (H, W)); returns float32. ``rows=(r0, r1)`` computes only output rows
    r0..r1-1, so callers can process huge outputs in chunks.
    """
    x = np.asarray(chw)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) array, got shape {x.shape}")
    h_out, w_out = _check_hw(out_hw)
    r0, r1 = (0, h_out) if rows is None else (max(0, rows[0]), min(h_out, rows[1]))
    ty = torch_bilinear_taps(x.shape[1], h_out)
    ty = (ty[0][r0:r1], ty[1][r0:r1])
    # Only the source rows this chunk touches are resampled horizontally (torch order: x, then y).
    lo, hi = int(ty[0].min()), int(ty[0].max()) + 1
    part = x[:, lo:hi].astype(np.float32, copy=False)
    if x.shape[2] != w_out:
        part = apply_taps(part, torch_bilinear_taps(x.shape[2], w_out), 2)
    out = apply_taps(part, (ty[0] - lo, ty[1]), 1)
    return out[0] if squeeze else out
