"""Network-input preparation for every task (architecture spec, section 5), numpy only.

All geometric steps run on the uint8 image (as upstream does with OpenCV), then ``normalize``
turns it into float32 CHW RGB. Images are RGB uint8 (H, W, 3) as returned by ``load_image``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sapiens_edge.errors import InputSizeError, SapiensEdgeError
from sapiens_edge.metadata import INPUT_HW, MEAN_RGB, STD_RGB

from .resample import resize, warp_scale_translate

POSE_BOX_PADDING = 1.25

_MEAN = MEAN_RGB.reshape(3, 1, 1)
_STD = STD_RGB.reshape(3, 1, 1)


def check_input_hw(input_hw: tuple[int, int] | None) -> tuple[int, int]:
    """Validate a network input size (H, W): positive multiples of 16 (the patch size)."""
    if input_hw is None:
        return INPUT_HW
    try:
        h, w = (int(v) for v in input_hw)
        ok = (h, w) == tuple(input_hw) and h > 0 and w > 0 and h % 16 == 0 and w % 16 == 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputSizeError(f"Invalid input size {input_hw!r}: height and width must be positive "
                             f"multiples of 16 (the default is {INPUT_HW[0]}x{INPUT_HW[1]}).")
    return h, w


def _check_image(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, "shape", None)
        raise SapiensEdgeError(f"Expected a uint8 RGB image of shape (H, W, 3), got {type(img).__name__} "
                               f"with shape {shape}. Use sapiens_edge.runtime.load_image().")
    return img


def normalize(img_rgb_uint8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, (x - mean) / std on the 0-255 scale."""
    chw = np.transpose(img_rgb_uint8, (2, 0, 1)).astype(np.float32)
    return (chw - _MEAN) / _STD  # subtract then divide in float32, like upstream's torch code


# ----------------------------------------------------------------------------- pose
class PoseBatch(NamedTuple):
    inputs: np.ndarray  # (N, 3, H, W) float32
    centers: np.ndarray  # (N, 2) float32, box centres in image pixels
    scales: np.ndarray  # (N, 2) float32, aspect-fixed box sizes (s_w, s_h), kept for decoding
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 actually used


def box_to_center_scale(box: np.ndarray, padding: float = POSE_BOX_PADDING,
                        aspect: float = INPUT_HW[1] / INPUT_HW[0]) -> tuple[np.ndarray, np.ndarray]:
    """Box (x1, y1, x2, y2) -> centre and padded, aspect-fixed size (spec 5.2 steps 1-2), float32.

    Works on a single box (4,) or a stack (N, 4)."""
    b = np.asarray(box, dtype=np.float32)
    center = (b[..., 2:] + b[..., :2]) * np.float32(0.5)
    size = (b[..., 2:] - b[..., :2]) * np.float32(padding)
    w, h = size[..., 0:1], size[..., 1:2]
    a = np.float32(aspect)
    scale = np.where(w > h * a, np.concatenate([w, w / a], -1), np.concatenate([h * a, h], -1))
    return center.astype(np.float32), scale.astype(np.float32)


def udp_warp_params(center: np.ndarray, scale: np.ndarray,
                    input_hw: tuple[int, int]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Rotation-free UDP affine as (scale_xy, offset_xy): x' = sx * (x - c_x + s_w / 2).

    Computed in float32 like upstream's ``get_udp_warp_matrix`` (its matrix is float32)."""
    h_in, w_in = input_hw
    c = np.asarray(center, dtype=np.float32)
    s = np.asarray(scale, dtype=np.float32)
    sx = np.float32(w_in - 1) / s[0]
    sy = np.float32(h_in - 1) / s[1]
    ox = sx * (np.float32(-0.5) * (c[0] * 2) + np.float32(0.5) * s[0])
    oy = sy * (np.float32(-0.5) * (c[1] * 2) + np.float32(0.5) * s[1])
    return (float(sx), float(sy)), (float(ox), float(oy))


def _check_boxes(boxes: object, image_hw: tuple[int, int]) -> np.ndarray:
    h, w = image_hw
    if boxes is None or len(boxes) == 0:  # type: ignore[arg-type]
        return np.array([[0, 0, w - 1, h - 1]], dtype=np.float32)  # whole image, as upstream
    b = np.asarray(boxes, dtype=np.float32)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise SapiensEdgeError(f"Person boxes must be finite (N, 4) arrays of x1, y1, x2, y2 pixels; got "
                               f"shape {b.shape}.")
    size = b[:, 2:] - b[:, :2]
    if (size < 0).any() or (size.max(axis=1) <= 0).any():
        raise SapiensEdgeError("Each person box needs x2 >= x1, y2 >= y1 and a non-zero size "
                               "(format: x1, y1, x2, y2 in pixels).")
    return b


def preprocess_pose(img: np.ndarray, boxes: object = None,
                    input_hw: tuple[int, int] = INPUT_HW) -> PoseBatch:
    """Top-down pose inputs: one UDP-warped crop per box (spec 5.2).

    ``boxes``: (N, 4) x1, y1, x2, y2 in image pixels; None/empty -> the whole image
    [0, 0, W-1, H-1]. Bilinear when the crop shrinks (upstream's INTER_AREA request, which
    warpAffine executes as bilinear), bicubic otherwise; constant 0 border.
    """
    img = _check_image(img)
    h_in, w_in = check_input_hw(input_hw)
    b = _check_boxes(boxes, img.shape[:2])
    centers, scales = box_to_center_scale(b, aspect=w_in / h_in)
    inputs = np.empty((len(b), 3, h_in, w_in), dtype=np.float32)
    for i in range(len(b)):
        (sx, sy), offset = udp_warp_params(centers[i], scales[i], (h_in, w_in))
        method = "linear" if min(sx, sy) < 1 else "cubic"
        crop = warp_scale_translate(img, (h_in, w_in), (sx, sy), offset, method)
        inputs[i] = normalize(crop)
    return PoseBatch(inputs, centers, scales, b)


# ----------------------------------------------------------------------------- seg / dense
def preprocess_seg(img: np.ndarray, input_hw: tuple[int, int] = INPUT_HW) -> np.ndarray:
    """Plain resize to the input size, no aspect preservation (spec 5.3) -> (1, 3, H, W)."""
    img = _check_image(img)
    h_in, w_in = check_input_hw(input_hw)
    method = "area" if w_in < img.shape[1] else "cubic"  # upstream decides on the width only
    return normalize(resize(img, (h_in, w_in), method))[None]


def dense_resize_shape(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
    """Aspect-preserving size (h', w') of spec 5.4 step 1 (Python float maths, int() truncation)."""
    h, w = image_hw
    h_in, w_in = input_hw
    r = min(w_in / w, h_in / h)
    # max(1, .) keeps extreme aspect ratios (e.g. a 1-pixel-high strip) from collapsing to 0 rows.
    return max(1, int(h * r)), max(1, int(w * r))


def preprocess_dense(img: np.ndarray, input_hw: tuple[int, int] = INPUT_HW
                     ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Normal/pointmap inputs: aspect-preserving bilinear resize + centred zero pad (spec 5.4).

    Returns ((1, 3, H, W) float32, pad (left, right, top, bottom))."""
    img = _check_image(img)
    h_in, w_in = check_input_hw(input_hw)
    nh, nw = dense_resize_shape(img.shape[:2], (h_in, w_in))
    left, top = (w_in - nw) // 2, (h_in - nh) // 2
    pad = (left, w_in - nw - left, top, h_in - nh - top)
    canvas = np.zeros((h_in, w_in, 3), dtype=np.uint8)  # black pad, normalized like real pixels
    canvas[top:top + nh, left:left + nw] = resize(img, (nh, nw), "linear")
    return normalize(canvas)[None], pad
