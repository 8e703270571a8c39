"""Pose post-processing: flip test merge, UDP + DARK heatmap decoding, heatmap -> image coords.

Follows mmpose's ``UDPHeatmap.decode`` / ``refine_keypoints_dark_udp`` (architecture spec 6.1)
without OpenCV. The 11x11 Gaussian blur of DARK is only evaluated where it matters (the 3x3
stencil around each peak, plus the blurred maximum where clipping makes it matter), so
decoding 308 keypoints costs milliseconds instead of blurring 308 full maps.
"""

from __future__ import annotations

import numpy as np

_BLUR_K = 11  # mmpose UDPHeatmap blur_kernel_size
_R = _BLUR_K // 2
_EPS = np.finfo(np.float32).eps
_MAX_BOX = 64  # above this many rows/cols a keypoint's map is blurred on its own


def _gaussian_kernel(ksize: int = _BLUR_K) -> np.ndarray:
    """cv2.getGaussianKernel(ksize, 0) as float32: sigma = 0.3 * ((ksize - 1) / 2 - 1) + 0.8."""
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return (k / k.sum()).astype(np.float32)


_G = _gaussian_kernel()


def flip_back(flipped: np.ndarray, flip_indices: np.ndarray) -> np.ndarray:
    """Heatmaps of a horizontally flipped input -> heatmaps of the original.

    Mirror the width axis, then permute channels: out[:, k] = in[:, flip[k]] (no pixel shift)."""
    return np.ascontiguousarray(flipped[..., ::-1][:, np.asarray(flip_indices)])


def merge_flip(heatmaps: np.ndarray, flipped: np.ndarray, flip_indices: np.ndarray) -> np.ndarray:
    """Flip-test average (P + flip_back(Pf)) / 2, both (N, K, h, w)."""
    return (heatmaps + flip_back(flipped, flip_indices)) * np.float32(0.5)


def _blur_boxes(hm: np.ndarray, k: np.ndarray, y0: np.ndarray, x0: np.ndarray,
                bh: int, bw: int) -> np.ndarray:
    """Blurred values (zero border, like mmpose's 5-px zero pad) on boxes [y0, y0+bh) x [x0, x0+bw)
    of maps ``hm[k]``. Returns (n, bh, bw) float32."""
    _, h, w = hm.shape
    rows = y0[:, None] + np.arange(bh + 2 * _R) - _R
    cols = x0[:, None] + np.arange(bw + 2 * _R) - _R
    rv, cv = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    win = hm[k[:, None, None], np.clip(rows, 0, h - 1)[:, :, None], np.clip(cols, 0, w - 1)[:, None, :]]
    win = np.where(rv[:, :, None] & cv[:, None, :], win, np.float32(0))
    t = sum(_G[i] * win[:, :, i:i + bw] for i in range(_BLUR_K))
    return sum(_G[i] * t[:, i:i + bh, :] for i in range(_BLUR_K)).astype(np.float32)


def _window_max(m: np.ndarray) -> np.ndarray:
    """Sliding max over +-5 along the last axis (upper bound of what the blur can reach)."""
    n = m.shape[-1]
    pad = np.full((*m.shape[:-1], n + 2 * _R), -np.inf, dtype=m.dtype)
    pad[..., _R:_R + n] = m
    out = pad[..., 0:n].copy()
    for i in range(1, _BLUR_K):
        np.maximum(out, pad[..., i:i + n], out=out)
    return out


def _blurred_max(hm: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Exact max of each blurred map, given a lower bound already reached (a value of the blur).

    A blurred pixel never exceeds max(0, max of the map within +-5 columns / rows), so only the
    columns (then rows) whose bound beats ``lower`` can hold the maximum; only those are blurred.
    (Column maxima first: numpy reduces over rows ~2x faster than along short rows.)"""
    _, h, w = hm.shape
    best = lower.astype(np.float32).copy()
    cols_c = np.maximum(_window_max(hm.max(axis=1)), 0) > lower[:, None]
    todo = np.flatnonzero(cols_c.any(axis=1))
    if todo.size == 0:
        return best
    x0 = cols_c[todo].argmax(axis=1)
    x1 = w - cols_c[todo, ::-1].argmax(axis=1)
    small = (x1 - x0) <= _MAX_BOX
    for k in todo[~small]:  # multi-modal or noisy maps: blur that map completely
        full = _blur_boxes(hm, np.array([k]), np.array([0]), np.array([0]), h, w)
        best[k] = max(best[k], full.max())
    sel = todo[small]
    if sel.size == 0:
        return best
    bw = int((x1 - x0)[small].max())
    xs = np.minimum(x0[small], w - bw)
    # Row bound from the columns that can reach the band only (cheaper and tighter). Windows
    # are shifted inside the map at the borders: extra columns only loosen the bound.
    span = min(bw + 2 * _R, w)
    start = np.clip(xs - _R, 0, w - span)
    band = np.lib.stride_tricks.sliding_window_view(hm, span, axis=2)[sel, :, start]
    rows_c = np.maximum(_window_max(band.max(axis=2)), 0) > lower[sel][:, None]
    keep = rows_c.any(axis=1)
    if not keep.any():
        return best
    sel, xs, rows_c = sel[keep], xs[keep], rows_c[keep]
    y0 = rows_c.argmax(axis=1)
    bh = int((h - rows_c[:, ::-1].argmax(axis=1) - y0).max())
    ys = np.minimum(y0, h - bh)
    vals = _blur_boxes(hm, sel, ys, xs, bh, bw).reshape(sel.size, -1).max(axis=1)
    best[sel] = np.maximum(best[sel], vals)
    return best


def decode_udp_dark(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, h, w) heatmaps -> (coords (K, 2) float32 in heatmap pixels (x, y), scores (K,)).

    Spec 6.1: first argmax, score = unblurred max (score <= 0 -> (-1, -1), not refined); DARK-UDP
    on the blurred map rescaled to the original max, clipped to [0.001, 50] and log'd."""
    hm = np.ascontiguousarray(heatmaps, dtype=np.float32)
    if hm.ndim != 3:
        raise ValueError(f"expected heatmaps of shape (K, h, w), got {hm.shape}")
    k_all, h, w = hm.shape
    kk = np.arange(k_all)
    flat_idx = hm.reshape(k_all, -1).argmax(axis=1)
    scores = hm.reshape(k_all, -1)[kk, flat_idx]
    ys, xs = np.divmod(flat_idx, w)
    coords = np.stack([xs, ys], axis=1).astype(np.float32)
    valid = scores > 0
    coords[~valid] = -1
    if not valid.any():
        return coords, scores

    # Blurred values on the 3x3 stencil (edge-replicated at the border) around each peak.
    bh, bw = min(3, h), min(3, w)
    y0, x0 = np.clip(ys - 1, 0, h - bh), np.clip(xs - 1, 0, w - bw)
    nb = _blur_boxes(hm, kk, y0, x0, bh, bw)
    # Rescaling by score / max(blur) shifts the log map by a constant, which cancels in every
    # derivative, unless clipping to [0.001, 50] kicks in. The factor lies in [1, score / lower],
    # so the exact blurred maximum is only needed where a stencil value could be clipped.
    lower = nb.reshape(k_all, -1).max(axis=1)
    bmax = lower.copy()
    need = np.flatnonzero(valid & ((nb.reshape(k_all, -1).min(axis=1) < 1e-3) | (scores > 50)))
    if need.size:
        bmax[need] = _blurred_max(hm[need], lower[need])
    ok = valid & (bmax > 0)  # a map whose blur is nowhere positive cannot be rescaled
    factor = np.where(ok, scores / np.where(ok, bmax, 1), 1).astype(np.float32)
    logs = np.log(np.clip(nb * factor[:, None, None], np.float32(1e-3), np.float32(50)))

    def at(dy: int, dx: int) -> np.ndarray:
        r = np.clip(ys + dy, 0, h - 1) - y0
        c = np.clip(xs + dx, 0, w - 1) - x0
        return logs[kk, r, c]

    i_, ix1, ix1_, iy1, iy1_ = at(0, 0), at(0, 1), at(0, -1), at(1, 0), at(-1, 0)
    ix1y1, ix1_y1_ = at(1, 1), at(-1, -1)
    dx = np.float32(0.5) * (ix1 - ix1_)
    dy = np.float32(0.5) * (iy1 - iy1_)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = np.float32(0.5) * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    # inv([[dxx, dxy], [dxy, dyy]] + eps * I) @ (dx, dy), in float64 like mmpose's np.linalg.inv.
    a, b, d = dxx.astype(np.float64) + _EPS, dxy.astype(np.float64), dyy.astype(np.float64) + _EPS
    det = a * d - b * b
    ok &= np.isfinite(det) & (det != 0)
    det = np.where(ok, det, 1.0)
    step_x = (d * dx - b * dy) / det
    step_y = (-b * dx + a * dy) / det
    coords[ok, 0] -= step_x[ok].astype(np.float32)
    coords[ok, 1] -= step_y[ok].astype(np.float32)
    return coords, scores


def heatmap_to_image(coords: np.ndarray, center: np.ndarray, scale: np.ndarray,
                     heatmap_hw: tuple[int, int], input_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Heatmap pixels -> original image pixels (spec 6.1 steps 3-4, upstream's float32 order).

    Net effect: x_img = x_hm * s_w / (w_hm - 1) + c_x - s_w / 2 (same for y)."""
    h_hm, w_hm = heatmap_hw
    h_in, w_in = input_hw if input_hw is not None else (4 * h_hm, 4 * w_hm)
    c = np.asarray(center, dtype=np.float32)
    s = np.asarray(scale, dtype=np.float32)
    in_size = np.array([w_in, h_in], dtype=np.float32)
    kp_in = np.asarray(coords, dtype=np.float32) / np.array([w_hm - 1, h_hm - 1], dtype=np.float32) * in_size
    return (kp_in / in_size * s + c - np.float32(0.5) * s).astype(np.float32)
