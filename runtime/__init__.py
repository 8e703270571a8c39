"""Torch-free runtime: image I/O, pre-processing, post-processing and visualisation (numpy +
Pillow only, so it runs on a Raspberry Pi).

Names are resolved lazily: ``import sapiens_edge.runtime`` is cheap and loads nothing heavy
until a function is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_MODULES = {
    "image": ("load_image", "save_png_atomic", "expand_image_paths", "image_files"),
    "resample": ("resize", "resize_chw", "warp_scale_translate", "bilinear_resize_float"),
    "preprocess": ("normalize", "check_input_hw", "box_to_center_scale", "preprocess_pose",
                   "preprocess_seg", "preprocess_dense", "PoseBatch"),
    "pose": ("flip_back", "merge_flip", "decode_udp_dark", "heatmap_to_image"),
    "seg": ("seg_labels", "class_fractions"),
    "normal": ("postprocess_normal",),
    "pointmap": ("postprocess_pointmap", "focal_length"),
    "visualize": ("draw_pose", "overlay_seg", "normal_to_rgb", "depth_to_rgb"),
    "results": ("TaskResult", "PoseResult", "SegResult", "NormalResult", "PointmapResult"),
    "tasks": ("Prepared", "TaskProcessor", "PROCESSORS", "get_processor", "run_task"),
    "predictor": ("load", "Predictor"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [  # noqa: RUF022 - grouped by module, mirrors _MODULES
    "load_image", "save_png_atomic", "expand_image_paths", "image_files",
    "resize", "resize_chw", "warp_scale_translate", "bilinear_resize_float",
    "normalize", "check_input_hw", "box_to_center_scale", "preprocess_pose", "preprocess_seg",
    "preprocess_dense", "PoseBatch",
    "flip_back", "merge_flip", "decode_udp_dark", "heatmap_to_image",
    "seg_labels", "class_fractions",
    "postprocess_normal",
    "postprocess_pointmap", "focal_length",
    "draw_pose", "overlay_seg", "normal_to_rgb", "depth_to_rgb",
    "TaskResult", "PoseResult", "SegResult", "NormalResult", "PointmapResult",
    "Prepared", "TaskProcessor", "PROCESSORS", "get_processor", "run_task",
    "load", "Predictor",
]

if TYPE_CHECKING:  # pragma: no cover
    from .image import expand_image_paths, image_files, load_image, save_png_atomic
    from .normal import postprocess_normal
    from .pointmap import focal_length, postprocess_pointmap
    from .pose import decode_udp_dark, flip_back, heatmap_to_image, merge_flip
    from .predictor import Predictor, load
    from .preprocess import (
        PoseBatch,
        box_to_center_scale,
        check_input_hw,
        normalize,
        preprocess_dense,
        preprocess_pose,
        preprocess_seg,
    )
    from .resample import bilinear_resize_float, resize, resize_chw, warp_scale_translate
    from .results import NormalResult, PointmapResult, PoseResult, SegResult, TaskResult
    from .seg import class_fractions, seg_labels
    from .tasks import PROCESSORS, Prepared, TaskProcessor, get_processor, run_task
    from .visualize import depth_to_rgb, draw_pose, normal_to_rgb, overlay_seg


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
