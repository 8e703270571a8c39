"""Decoded outputs (an artifact exported with `--decode`; contract in runtime/golden.py's docstring): the Python
decoders that give a raw model's outputs in that form (what the gate compares a decoded artifact with), and the
mapping of decoded outputs onto the image (what the task processors and the app-side kits do)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .dense import crop_pad, resize_to_hwc
from .normal import unit_normals
from .pose import decode_udp_dark, heatmap_to_image

HEATMAP_STRIDE = 4  # pose heatmaps are a quarter of the input size (task_metadata heatmap_stride)


def is_decoded(manifest: Any) -> bool:
    """Whether the artifact of `manifest` returns decoded outputs (export_options.decoded)."""
    return bool((getattr(manifest, "export_options", None) or {}).get("decoded"))


def decode_raw(task: str, outputs: Sequence[np.ndarray], labels_dtype: str = "uint8") -> list[np.ndarray]:
    """A raw model's outputs -> the decoded contract, by the Python decoders: seg argmax over classes
    (first maximum on ties) as `labels_dtype`; pose `decode_udp_dark` per person; normal `unit_normals`."""
    raw = np.asarray(outputs[0], dtype=np.float32)
    if task == "seg":
        return [raw.argmax(axis=1).astype(labels_dtype)]
    if task == "pose":
        decoded = [decode_udp_dark(hm) for hm in raw]
        return [np.stack([c for c, _ in decoded]).astype(np.float32), np.stack([s for _, s in decoded])]
    if task == "normal":
        return [np.stack([unit_normals(n) for n in raw])]
    raise ValueError(f"the {task} task has no decoded outputs")


def decoded_seg_labels(labels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) class ids -> (H, W) by nearest neighbour on pixel centres."""
    h, w = labels.shape
    ys = np.minimum(((np.arange(out_hw[0]) + 0.5) * h / out_hw[0]).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(out_hw[1]) + 0.5) * w / out_hw[1]).astype(np.int64), w - 1)
    return labels[ys[:, None], xs[None, :]]


def decoded_pose(keypoints: np.ndarray, ctx: Any, heatmap_hw: tuple[int, int]) -> np.ndarray:
    """(N, K, 2) heatmap-pixel keypoints -> image pixels with each box's centre and scale."""
    return np.stack([heatmap_to_image(kp, ctx.centers[i], ctx.scales[i], heatmap_hw, ctx.input_hw)
                     for i, kp in enumerate(keypoints)])


def decoded_normals(normals: np.ndarray, pad: tuple[int, int, int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """(3, h, w) unit normals -> crop pad -> bilinear -> (H, W, 3)."""
    return resize_to_hwc(crop_pad(np.asarray(normals, np.float32), pad), out_hw)
