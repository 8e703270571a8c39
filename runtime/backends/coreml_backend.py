"""Core ML backend: runs `coreml` artifacts (.mlpackage) through coremltools' `predict`, on macOS.

Core ML itself exists only on Apple platforms: elsewhere `open` fails with a clear error before
anything is loaded. Image-input models (the default export) take an RGB image: the backend turns
the normalized tensor every backend receives back into 8-bit RGB (x * std + mean, rounded), which
is what the image was before normalization up to the resize's sub-integer values.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import ArtifactError, OptionError, PlatformUnavailableError, require

NAME = "coreml"
OPTIONS = ("compute_units",)
COMPUTE_UNITS = {"all": "ALL", "cpu": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE"}


def unavailable_reason(platform: str = sys.platform) -> str | None:
    """Why Core ML cannot run here (None on macOS)."""
    if platform == "darwin":
        return None
    return (f"Core ML runs on Apple platforms only (macOS 13+ / iOS 16+); this machine is {platform!r}. Run the "
            f".mlpackage on a Mac (`sapiens-edge validate` there, or the macOS workflow in "
            f".github/workflows/coreml-validate.yml), in the iOS demo, or export an onnx-* / executorch-xnnpack-* "
            f"recipe for this machine.")


def open(manifest: Any, artifact_dir: Path, *, compute_units: str | None = None, **options: Any) -> CoreMLSession:
    reason = unavailable_reason()
    if reason:  # first: no option makes it run here
        raise PlatformUnavailableError(reason)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise OptionError(f"The coreml backend has no option(s) {', '.join(unknown)}; it takes: "
                               f"{', '.join(OPTIONS)}.")
    return CoreMLSession(manifest, Path(artifact_dir), compute_units=compute_units or "all")


class CoreMLSession:
    def __init__(self, manifest: Any, artifact_dir: Path, *, compute_units: str) -> None:
        ct = require("coremltools", "coreml", "Running Core ML (.mlpackage) artifacts")
        if compute_units not in COMPUTE_UNITS:
            raise OptionError(f"compute_units must be one of {', '.join(COMPUTE_UNITS)}, not {compute_units!r}.")
        self.manifest = manifest
        self.compute_units = compute_units
        self.path = artifact_dir / manifest.model_file
        if not self.path.is_dir():
            raise ArtifactError(f"{self.path} is missing; re-export the artifact.")
        try:
            self.model = ct.models.MLModel(str(self.path), compute_units=getattr(ct.ComputeUnit,
                                                                                 COMPUTE_UNITS[compute_units]))
        except Exception as exc:  # Core ML raises RuntimeError / its own errors for damaged packages
            target = manifest.export_options.get("deployment_target")
            raise ArtifactError(f"Core ML could not load {self.path}: {exc}. The package is damaged or needs a newer "
                                f"macOS (deployment target {target}).") from exc
        self.image_input = manifest.export_options.get("input", {}).get("kind") == "image"
        self._version = ct.__version__

    def _feed(self, name: str, x: np.ndarray) -> Any:
        if not self.image_input:
            return np.ascontiguousarray(x, dtype=np.float32)
        from PIL import Image

        norm = self.manifest.normalization
        mean = np.asarray(norm["mean_rgb"], np.float32).reshape(3, 1, 1)
        std = np.asarray(norm["std_rgb"], np.float32).reshape(3, 1, 1)
        pixels = np.clip(np.rint(x[0] * std + mean), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        return Image.fromarray(pixels, "RGB")

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        feed = {spec.name: self._feed(spec.name, inputs[spec.name]) for spec in self.manifest.inputs}
        out = self.model.predict(feed)
        return [np.asarray(out[spec.name], dtype=np.float32) for spec in self.manifest.outputs]

    def describe(self) -> dict[str, Any]:
        return {"backend": NAME, "version": self._version, "compute_units": self.compute_units,
                "summary": f"Core ML {self._version} ({self.compute_units})"}
