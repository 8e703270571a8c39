"""The interface every export target implements (its module is named in export.target_table, imported lazily)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sapiens_edge.manifest import TensorSpec

from .recipes import Recipe

# Names of the graph inputs/outputs, per task (the runtime returns outputs in this order).
INPUT_NAME = "image"
OUTPUT_NAMES = {
    "backbone": ["features"],
    "pose": ["heatmaps"],
    "seg": ["logits"],
    "normal": ["normal"],
    "pointmap": ["pointmap", "scale"],
}


def decodes(model: Any) -> bool:
    """Whether `model` is (or wraps) a decoded-output model (`export.decode.DecodedModel`)."""
    return getattr(model, "sapiens_output_names", None) is not None


def output_names(model: Any, task: str) -> list[str]:
    """The names of `model`'s graph outputs: a decoded-output model's own (`export.decode.DecodedModel`, and
    the targets' wrappers around it pass them on), else the raw ones of `task`."""
    names = getattr(model, "sapiens_output_names", None)
    return list(names) if names else list(OUTPUT_NAMES[task])


@dataclass
class CalibrationData:
    """Normalized float32 (1, 3, H, W) batches for PTQ, produced lazily (stream, don't hoard)."""

    batches: Callable[[], Iterator[np.ndarray]]
    count: int
    source: str  # folder path or "built-in"
    note: str = ""
    method: str | None = None  # calibration method asked for by the user (None: the recipe's default)
    keep_float: tuple[str, ...] = ()  # parameter-name patterns the user wants left unquantized


@dataclass
class Lowered:
    """What a target wrote into the work folder."""

    model_file: str  # relative to the work folder
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tool_versions: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)  # what was done (opset, quantizer settings ...)


class Target(Protocol):
    def lower(self, model: Any, recipe: Recipe, input_hw: tuple[int, int], workdir: Path,
              calibration: CalibrationData | None, progress: Callable[[str], None]) -> Lowered:
        """Write the model file(s) for `recipe` into `workdir` (which is empty)."""


def get_target(name: str) -> Target:
    from .target_table import TARGETS

    return importlib.import_module(TARGETS[name].module)  # each target module defines a module-level lower()
