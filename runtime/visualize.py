"""Visualisations with Pillow: pose skeletons, seg overlays, normal maps, inverse-depth maps."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sapiens_edge import metadata

# Google's Turbo colormap, public polynomial approximation (Ruofei Du, Apache-2.0):
# rgb = c4 . (1, x, x^2, x^3) + c2 . (x^4, x^5)
_TURBO = np.array([
    [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
    [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
    [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
])
DEPTH_RANGE = (0.1, 250.0)


def _as_rgb(img: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(img, Image.Image):
        return img.convert("RGB")
    return Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).convert("RGB")


def draw_pose(img: np.ndarray | Image.Image, keypoints: np.ndarray, scores: np.ndarray,
              thr: float = 0.3) -> Image.Image:
    """Skeleton overlay: links (metadata colours) where both ends score > thr, then keypoints.

    ``keypoints`` (P, K, 2) image pixels, ``scores`` (P, K). Line width and radius scale with
    the image so overlays look alike on thumbnails and 12-Mpixel photos."""
    out = _as_rgb(img)
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, np.shape(keypoints)[-2], 2)
    sc = np.asarray(scores, dtype=np.float64).reshape(kp.shape[:2])
    info = metadata.keypoints()
    size = max(out.size)
    width = max(1, round(size / 400))
    radius = max(1.5, size / 300)
    draw = ImageDraw.Draw(out)
    for person, conf in zip(kp, sc, strict=True):
        ok = (conf > thr) & np.isfinite(person).all(axis=1)
        for (a, b), color in zip(info.skeleton, info.skeleton_colors, strict=True):
            if a < len(ok) and b < len(ok) and ok[a] and ok[b]:
                draw.line([tuple(person[a]), tuple(person[b])], fill=tuple(color), width=width)
        for k in np.flatnonzero(ok):
            x, y = person[k]
            color = tuple(info.colors[k]) if k < len(info.colors) else (255, 255, 255)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)
    return out


def overlay_seg(img: np.ndarray | Image.Image, labels: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend the dome29 class colours into the image: (1 - alpha) * image + alpha * colour."""
    base = np.asarray(_as_rgb(img), dtype=np.float32)
    lab = np.asarray(labels)
    if lab.shape != base.shape[:2]:
        raise ValueError(f"label map {lab.shape} does not match the image {base.shape[:2]}")
    palette = metadata.seg().palette.astype(np.float32)
    colors = palette[np.clip(lab, 0, len(palette) - 1)]
    blended = (1 - alpha) * base + alpha * colors
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))


def normal_to_rgb(normals: np.ndarray, mask: np.ndarray | None = None) -> Image.Image:
    """(H, W, 3) normals -> RGB: background (mask == 0) set to -1, uint8((n + 1) / 2 * 255).

    x -> red, y -> green, z -> blue; truncation like upstream (clipped first for safety)."""
    n = np.asarray(normals, dtype=np.float32)
    if mask is not None:
        n = np.where(np.asarray(mask)[..., None] > 0, n, np.float32(-1))
    rgb = np.clip((n + 1) / 2 * 255, 0, 255)
    return Image.fromarray(np.nan_to_num(rgb).astype(np.uint8))


def turbo(x: np.ndarray) -> np.ndarray:
    """Turbo colormap of values in [0, 1] (clipped) -> float RGB in [0, 1], shape x.shape + (3,)."""
    t = np.clip(np.asarray(x, dtype=np.float64), 0, 1)[..., None]
    powers = np.concatenate([t ** i for i in range(6)], axis=-1)
    return np.clip(powers @ _TURBO.T, 0, 1)


def depth_to_rgb(pointmap: np.ndarray, mask: np.ndarray | None = None,
                 bounds: tuple[float, float] | None = None) -> Image.Image:
    """Inverse-depth turbo rendering of a (H, W, 3) pointmap (Z = depth), background black.

    Depth is clamped to 0.1-250; colours span the 1st-99th percentile of inverse depth over the
    shown pixels (pass ``bounds`` = (lo, hi) inverse depths to share a scale across frames)."""
    z = np.asarray(pointmap, dtype=np.float32)[..., 2]
    shown = np.isfinite(z) & (z > 0)
    if mask is not None:
        shown &= np.asarray(mask) > 0
    inv = 1.0 / np.clip(np.nan_to_num(z, nan=DEPTH_RANGE[1]), *DEPTH_RANGE)
    rgb = np.zeros((*z.shape, 3), dtype=np.uint8)
    if shown.any():
        lo, hi = bounds if bounds is not None else np.percentile(inv[shown], [1, 99])
        norm = (inv - lo) / max(float(hi - lo), 1e-12)
        colors = (turbo(norm[shown]) * 255).astype(np.uint8)
        rgb[shown] = colors
    return Image.fromarray(rgb)
