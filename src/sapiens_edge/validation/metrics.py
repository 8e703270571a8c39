"""Parity metrics between a reference (PyTorch fp32) and a candidate (exported artifact).

Numpy only (no torch), so reports can be recomputed on a device. Every function takes the
reference first and the candidate second. Names match the recipe thresholds
(``<metric>_<min|max>`` in ``sapiens_edge.export.recipes``).

Tensor metrics (raw network outputs, any shape, computed in float64):

==========  =====================================================  ==========================
name        definition                                             units / perfect value
==========  =====================================================  ==========================
max_abs     max |r - c|                                            output units; 0
mean_abs    mean |r - c|                                           output units; 0
rel_l2      ||r - c||_2 / ||r||_2                                  ratio; 0
cosine      <r, c> / (||r|| ||c||) over the flattened tensor       [-1, 1]; 1
snr_db      10 log10(||r||^2 / ||r - c||^2)                        dB; +inf (identical)
==========  =====================================================  ==========================

Task metrics (after the shared task post-processing):

* pose: ``keypoint_err_px``: mean Euclidean distance between the reference's and the
  candidate's decoded keypoints, in **heatmap pixels** (1 heatmap px = 4 input px at stride 4);
  ``pck``: fraction of keypoints whose distance is <= ``PCK_THRESHOLD_PX`` heatmap px. Both count
  only keypoints whose *reference* score is > ``MIN_KEYPOINT_SCORE`` (0.3, the drawing threshold):
  low-score keypoints sit on flat heatmaps whose argmax moves freely and would only add noise.
* seg: ``pixel_agreement``: fraction of pixels with the same label (0-1); ``miou``: mean over the
  classes present in either label map of |R=c and C=c| / |R=c or C=c| (0-1), the reference
  labels playing the role of ground truth.
* normal: ``angle_mean_deg`` / ``angle_median_deg``: angle between the reference and candidate
  normals, per pixel, in degrees (both re-normalized to unit length; pixels where either vector
  is ~zero, or the reference is not finite, are ignored; a non-finite candidate gives NaN).
* pointmap: ``depth_rel_err``: median over valid pixels of |Zc - Zr| / |Zr| (ratio; valid:
  reference finite with |Zr| > 1e-6; a non-finite candidate there gives NaN); ``scale_rel_err``:
  |sc - sr| / |sr| of the predicted scale (ratio).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_KEYPOINT_SCORE = 0.3  # only reference keypoints scoring above this count (pose)
PCK_THRESHOLD_PX = 1.0  # heatmap pixels; issue #4's int8 target is a 1 heatmap-px mean error
_EPS = 1e-6

TENSOR_METRICS = ("max_abs", "mean_abs", "rel_l2", "cosine", "snr_db")
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "pose": ("keypoint_err_px", "pck", "keypoints_compared"),
    "seg": ("pixel_agreement", "miou"),
    "normal": ("angle_mean_deg", "angle_median_deg"),
    "pointmap": ("depth_rel_err", "scale_rel_err"),
}
# Metrics where a larger value is better (the "worst" over images is then the minimum).
HIGHER_IS_BETTER = frozenset({"cosine", "snr_db", "pck", "pixel_agreement", "miou", "keypoints_compared"})
UNITS = {
    "max_abs": "output units", "mean_abs": "output units", "rel_l2": "ratio", "cosine": "[-1, 1]",
    "snr_db": "dB", "keypoint_err_px": "heatmap px", "pck": f"fraction within {PCK_THRESHOLD_PX:g} heatmap px",
    "keypoints_compared": "count (reference score > 0.3)", "pixel_agreement": "fraction", "miou": "fraction",
    "angle_mean_deg": "degrees", "angle_median_deg": "degrees", "depth_rel_err": "ratio (median)",
    "scale_rel_err": "ratio",
}


def _pair(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cand, dtype=np.float64)
    if r.shape != c.shape:
        raise ValueError(f"reference shape {r.shape} != candidate shape {c.shape}")
    return r, c


# ----------------------------------------------------------------------------- tensor metrics

def max_abs(ref: np.ndarray, cand: np.ndarray) -> float:
    """Largest absolute difference (output units; 0 = identical)."""
    r, c = _pair(ref, cand)
    return float(np.max(np.abs(r - c))) if r.size else 0.0


def mean_abs(ref: np.ndarray, cand: np.ndarray) -> float:
    """Mean absolute difference (output units; 0 = identical)."""
    r, c = _pair(ref, cand)
    return float(np.mean(np.abs(r - c))) if r.size else 0.0


def rel_l2(ref: np.ndarray, cand: np.ndarray) -> float:
    """||ref - cand|| / ||ref|| (ratio; 0 = identical). A zero reference gives 0 if the candidate is
    zero too, else +inf."""
    r, c = _pair(ref, cand)
    diff, norm = float(np.linalg.norm((r - c).ravel())), float(np.linalg.norm(r.ravel()))
    if norm == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / norm


def cosine(ref: np.ndarray, cand: np.ndarray) -> float:
    """Cosine similarity of the flattened tensors ([-1, 1]; 1 = same direction). Two zero tensors
    count as identical (1); one zero tensor gives 0."""
    r, c = _pair(ref, cand)
    nr, nc = float(np.linalg.norm(r.ravel())), float(np.linalg.norm(c.ravel()))
    if nr == 0.0 or nc == 0.0:
        return 1.0 if nr == nc else 0.0
    return float(np.clip(np.dot(r.ravel(), c.ravel()) / (nr * nc), -1.0, 1.0))


def snr_db(ref: np.ndarray, cand: np.ndarray) -> float:
    """Signal-to-noise ratio 10 log10(||ref||^2 / ||ref - cand||^2) in dB (+inf = identical)."""
    r, c = _pair(ref, cand)
    noise = float(np.sum((r - c) ** 2))
    signal = float(np.sum(r * r))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def tensor_metrics(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    """All tensor metrics of one output pair. Non-finite candidate values make them NaN/inf (and
    the corresponding checks fail)."""
    return {"max_abs": max_abs(ref, cand), "mean_abs": mean_abs(ref, cand), "rel_l2": rel_l2(ref, cand),
            "cosine": cosine(ref, cand), "snr_db": snr_db(ref, cand)}


# ----------------------------------------------------------------------------- pose

def keypoint_distances(ref_xy: np.ndarray, cand_xy: np.ndarray,
                       units_per_px: Sequence[float] | np.ndarray = (1.0, 1.0)) -> np.ndarray:
    """Per-keypoint Euclidean distances (..., K) between (..., K, 2) coordinate arrays.

    ``units_per_px`` converts the coordinate units to heatmap pixels per axis (x, y), e.g.
    ((w_hm - 1) / s_w, (h_hm - 1) / s_h) for image-pixel keypoints of a box of scale (s_w, s_h);
    (1, 1) when the coordinates already are heatmap pixels. It may also be (..., 2) per person."""
    r, c = _pair(ref_xy, cand_xy)
    k = np.asarray(units_per_px, dtype=np.float64)
    if k.ndim > 1:  # per person (P, 2) -> (P, 1, 2)
        k = k[..., None, :]
    return np.sqrt(np.sum(((r - c) * k) ** 2, axis=-1))


def _confident(ref_scores: np.ndarray, shape: tuple[int, ...], min_score: float) -> np.ndarray:
    s = np.asarray(ref_scores, dtype=np.float64)
    if s.shape != shape:
        raise ValueError(f"scores shape {s.shape} does not match keypoints {shape}")
    return s > min_score


def keypoint_err_px(ref_xy: np.ndarray, cand_xy: np.ndarray, ref_scores: np.ndarray, *,
                    units_per_px: Sequence[float] | np.ndarray = (1.0, 1.0),
                    min_score: float = MIN_KEYPOINT_SCORE) -> float:
    """Mean keypoint distance in heatmap px over keypoints with reference score > ``min_score``.
    NaN when no keypoint qualifies (nothing to compare)."""
    d = keypoint_distances(ref_xy, cand_xy, units_per_px)
    mask = _confident(ref_scores, d.shape, min_score)
    return float(np.mean(d[mask])) if mask.any() else float("nan")


def pck(ref_xy: np.ndarray, cand_xy: np.ndarray, ref_scores: np.ndarray, *,
        threshold_px: float = PCK_THRESHOLD_PX, units_per_px: Sequence[float] | np.ndarray = (1.0, 1.0),
        min_score: float = MIN_KEYPOINT_SCORE) -> float:
    """PCK agreement: fraction (0-1) of keypoints with reference score > ``min_score`` whose
    candidate lies within ``threshold_px`` heatmap px of the reference. NaN if none qualifies."""
    d = keypoint_distances(ref_xy, cand_xy, units_per_px)
    mask = _confident(ref_scores, d.shape, min_score)
    return float(np.mean(d[mask] <= threshold_px)) if mask.any() else float("nan")


def pose_metrics(ref_xy: np.ndarray, cand_xy: np.ndarray, ref_scores: np.ndarray, *,
                 units_per_px: Sequence[float] | np.ndarray = (1.0, 1.0),
                 min_score: float = MIN_KEYPOINT_SCORE, threshold_px: float = PCK_THRESHOLD_PX) -> dict[str, float]:
    """keypoint_err_px, pck and keypoints_compared (how many keypoints passed the score filter)."""
    d = keypoint_distances(ref_xy, cand_xy, units_per_px)
    mask = _confident(ref_scores, d.shape, min_score)
    n = int(mask.sum())
    return {"keypoint_err_px": float(np.mean(d[mask])) if n else float("nan"),
            "pck": float(np.mean(d[mask] <= threshold_px)) if n else float("nan"),
            "keypoints_compared": float(n)}


def pose_heatmap_metrics(ref_heatmaps: np.ndarray, cand_heatmaps: np.ndarray, **kw) -> dict[str, float]:
    """Decode both (K, h, w) or (P, K, h, w) heatmap stacks with UDP + DARK
    (``runtime.decode_udp_dark``) and compare them in heatmap pixels (see ``pose_metrics``)."""
    from sapiens_edge.runtime.pose import decode_udp_dark

    r, c = np.asarray(ref_heatmaps, np.float32), np.asarray(cand_heatmaps, np.float32)
    if r.shape != c.shape or r.ndim not in (3, 4):
        raise ValueError(f"expected two equal (K, h, w) or (P, K, h, w) heatmap stacks, got {r.shape}, {c.shape}")
    if r.ndim == 3:
        r, c = r[None], c[None]
    ref = [decode_udp_dark(m) for m in r]
    cand = [decode_udp_dark(m) for m in c]
    return pose_metrics(np.stack([x for x, _ in ref]), np.stack([x for x, _ in cand]),
                        np.stack([s for _, s in ref]), **kw)


# ----------------------------------------------------------------------------- seg

def _labels(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.asarray(ref), np.asarray(cand)
    if r.shape != c.shape:
        raise ValueError(f"reference labels {r.shape} != candidate labels {c.shape}")
    return r.astype(np.int64).ravel(), c.astype(np.int64).ravel()


def pixel_agreement(ref_labels: np.ndarray, cand_labels: np.ndarray) -> float:
    """Fraction (0-1) of pixels where the candidate label equals the reference label."""
    r, c = _labels(ref_labels, cand_labels)
    return float(np.mean(r == c)) if r.size else 1.0


def miou(ref_labels: np.ndarray, cand_labels: np.ndarray) -> float:
    """Mean IoU (0-1) of the candidate against the reference labels, over classes present in
    either map: IoU_c = |R=c and C=c| / |R=c or C=c|."""
    r, c = _labels(ref_labels, cand_labels)
    if r.size == 0:
        return 1.0
    n = int(max(r.max(), c.max())) + 1
    conf = np.bincount(r * n + c, minlength=n * n).reshape(n, n)  # rows: reference, cols: candidate
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(axis=0) + conf.sum(axis=1) - inter
    present = union > 0
    return float(np.mean(inter[present] / union[present]))


def seg_metrics(ref_labels: np.ndarray, cand_labels: np.ndarray) -> dict[str, float]:
    return {"pixel_agreement": pixel_agreement(ref_labels, cand_labels), "miou": miou(ref_labels, cand_labels)}


# ----------------------------------------------------------------------------- normal

def angular_errors_deg(ref: np.ndarray, cand: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """Per-pixel angle (degrees) between normal maps (channels on ``channel_axis``, 3 of them),
    both re-normalized; pixels where either vector has length < 1e-6, or the reference is not
    finite, are dropped (the result is 1-D). A non-finite candidate gives NaN there."""
    r, c = _pair(ref, cand)
    r = np.moveaxis(r, channel_axis, -1).reshape(-1, r.shape[channel_axis])
    c = np.moveaxis(c, channel_axis, -1).reshape(-1, c.shape[channel_axis])
    nr, nc = np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)
    # A non-finite candidate is kept on purpose: its NaN angle makes the mean fail the check.
    ok = np.isfinite(nr) & (nr > _EPS) & ~(nc <= _EPS)
    cos = np.sum(r[ok] * c[ok], axis=1) / (nr[ok] * nc[ok])
    # arctan2 of |r x c| and r.c is accurate at tiny angles, where arccos(cos) is not.
    cross = np.linalg.norm(np.cross(r[ok], c[ok]), axis=1) / (nr[ok] * nc[ok]) if r.shape[1] == 3 else \
        np.sqrt(np.clip(1 - cos * cos, 0, None))
    return np.degrees(np.arctan2(cross, cos))


def normal_metrics(ref: np.ndarray, cand: np.ndarray, channel_axis: int = -1) -> dict[str, float]:
    """angle_mean_deg and angle_median_deg (NaN if no valid pixel)."""
    a = angular_errors_deg(ref, cand, channel_axis)
    if a.size == 0:
        return {"angle_mean_deg": float("nan"), "angle_median_deg": float("nan")}
    return {"angle_mean_deg": float(np.mean(a)), "angle_median_deg": float(np.median(a))}


# ----------------------------------------------------------------------------- pointmap

def depth_rel_err(ref_points: np.ndarray, cand_points: np.ndarray, channel_axis: int = -1) -> float:
    """Median over valid pixels of |Zc - Zr| / |Zr| (Z = channel 2 = depth). Valid: reference
    finite with |Zr| > 1e-6. NaN if no pixel is valid or the candidate is non-finite there."""
    r, c = _pair(ref_points, cand_points)
    zr, zc = np.take(r, 2, axis=channel_axis), np.take(c, 2, axis=channel_axis)
    ok = np.isfinite(zr) & (np.abs(zr) > _EPS)
    return float(np.median(np.abs(zc[ok] - zr[ok]) / np.abs(zr[ok]))) if ok.any() else float("nan")


def scale_rel_err(ref_scale: float, cand_scale: float) -> float:
    """|sc - sr| / |sr| of the pointmap scale (ratio; +inf if the reference scale is 0)."""
    r, c = float(ref_scale), float(cand_scale)
    if r == 0.0:
        return 0.0 if c == 0.0 else float("inf")
    return abs(c - r) / abs(r)


def pointmap_metrics(ref_points: np.ndarray, cand_points: np.ndarray, ref_scale: float, cand_scale: float,
                     channel_axis: int = -1) -> dict[str, float]:
    return {"depth_rel_err": depth_rel_err(ref_points, cand_points, channel_axis),
            "scale_rel_err": scale_rel_err(ref_scale, cand_scale)}
