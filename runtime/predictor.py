"""`load(artifact_dir) -> Predictor`: run an exported artifact folder, torch-free.

The manifest says what the folder holds (task, input size, tensor names/shapes, target); the
backend registry picks the engine for its target (onnx -> onnxruntime); the task registry
(``runtime.tasks``) does the same pre/post-processing as the PyTorch reference pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge import metadata
from sapiens_edge.errors import ArtifactError, InputShapeError, SapiensEdgeError
from sapiens_edge.manifest import Manifest, TensorSpec, read_manifest

from .backends import Session, open_session
from .decoded import is_decoded
from .image import ImageSource
from .results import TaskResult
from .tasks import PROCESSORS, run_task

_FLOAT_INPUTS = ("float32", "float16")


def _dim(d: Any) -> int | None:
    """A fixed dimension, or None for a dynamic one (negative/zero/None/symbolic name)."""
    return int(d) if isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 else None


def _fmt_shape(shape: list[Any]) -> str:
    names = "NCHW"
    return "(" + ", ".join(str(d) if _dim(d) else names[i] for i, d in enumerate(shape)) + ")"


def nchw_shape(spec: TensorSpec) -> list[Any]:
    """The spec's shape in NCHW order: the order `Predictor.run` takes and gives for every artifact
    (a channels-last model file is transposed to and from by its backend)."""
    shape = list(spec.shape)
    if spec.layout == "NHWC" and len(shape) == 4:
        return [shape[0], shape[3], shape[1], shape[2]]
    return shape


def _check_manifest(m: Manifest, folder: Path) -> None:
    where = f"{folder / 'manifest.json'}"
    if m.task not in PROCESSORS and m.task != "backbone":
        raise ArtifactError(f"{where}: unknown task {m.task!r} (known: {', '.join([*PROCESSORS, 'backbone'])}). "
                            "Re-export the artifact or upgrade sapiens-edge.")
    if len(m.inputs) != 1:
        raise ArtifactError(f"{where} lists {len(m.inputs)} inputs; sapiens-edge models take one image tensor.")
    if not m.outputs:
        raise ArtifactError(f"{where} lists no outputs; re-export the artifact.")
    spec = m.inputs[0]
    if spec.layout not in ("NCHW", "NHWC"):
        raise ArtifactError(f"{where}: input '{spec.name}' has layout {spec.layout!r}; this runtime reads NCHW or "
                            f"NHWC images. Re-export the artifact or upgrade sapiens-edge.")
    shape = nchw_shape(spec)
    if len(shape) != 4 or _dim(shape[1]) not in (None, 3):
        want = "(N, H, W, 3)" if spec.layout == "NHWC" else "(N, 3, H, W)"
        raise ArtifactError(f"{where}: input '{spec.name}' has shape {spec.shape}; expected {want}.")
    if spec.dtype not in _FLOAT_INPUTS:
        raise ArtifactError(f"{where}: input '{spec.name}' is {spec.dtype}; this runtime feeds normalized "
                            f"float32/float16 images. Re-export the artifact.")
    if len(m.input_hw) != 2 or any(_dim(d) is None for d in m.input_hw):
        raise ArtifactError(f"{where}: input_hw {m.input_hw!r} is not [height, width].")
    for axis, want in ((2, m.input_hw[0]), (3, m.input_hw[1])):
        if _dim(shape[axis]) not in (None, want):
            raise ArtifactError(f"{where}: input shape {spec.shape} disagrees with input_hw {m.input_hw}.")


class Predictor:
    """An opened artifact: ``run`` (raw tensors) and ``predict`` (image -> task result).

    Made by ``load()``; usable as a context manager (``close()`` releases the engine's session).

    Attributes:
        manifest: the artifact's ``Manifest`` (model, task, recipe, input and output specs, ...).
        backend: the name of the runtime backend running it (e.g. "onnxruntime").
        artifact_dir: the artifact folder.
    """

    def __init__(self, manifest: Manifest, session: Session, artifact_dir: Path, backend: str) -> None:
        self.manifest = manifest
        self.session = session
        self.artifact_dir = Path(artifact_dir)
        self.backend = backend
        self._closed = False

    # --- properties -------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def input_hw(self) -> tuple[int, int]:
        h, w = self.manifest.input_hw
        return int(h), int(w)

    @property
    def input_spec(self) -> TensorSpec:
        return self.manifest.inputs[0]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.manifest.outputs]

    # --- inference --------------------------------------------------------------------------
    def _shape_error(self, x: Any, problem: str) -> InputShapeError:
        spec = self.input_spec
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        return InputShapeError(
            f"{self.manifest.model} ({self.manifest.recipe}) expects input '{spec.name}' as a float32 array of "
            f"shape {_fmt_shape(nchw_shape(spec))} (NCHW, normalized; every artifact, whatever its file's layout); "
            f"got {got}: {problem}. "
            f"predictor.predict(image) does the pre-processing (resize/pad to {self.input_hw[0]}x"
            f"{self.input_hw[1]}, normalize) for you; for run() pass such a batch, e.g. x.astype(np.float32) "
            f"or x[None] for a single (3, H, W) image.")

    def check_input(self, x: Any) -> np.ndarray:
        """Validate ``x`` against the manifest's input and return it contiguous in the artifact's dtype."""
        if not isinstance(x, np.ndarray):
            raise self._shape_error(x, "not a numpy array")
        spec = self.input_spec
        if x.ndim != 4:
            raise self._shape_error(x, f"{x.ndim} dimension(s) instead of 4")
        if x.dtype != np.float32 and x.dtype.name != spec.dtype:
            raise self._shape_error(x, f"dtype {x.dtype} instead of float32")
        shape = nchw_shape(spec)
        for axis, label in ((1, "channels"), (2, "height"), (3, "width")):
            want = _dim(shape[axis])
            if want is not None and x.shape[axis] != want:
                raise self._shape_error(x, f"{label} {x.shape[axis]} instead of {want}")
        if x.shape[0] == 0:
            raise self._shape_error(x, "empty batch")
        batch = _dim(shape[0])
        if batch not in (None, 1) and x.shape[0] != batch:
            raise self._shape_error(x, f"batch {x.shape[0]} instead of {batch}")
        return np.ascontiguousarray(x, dtype=spec.dtype)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Raw network outputs for a normalized input batch. An artifact exported with batch 1 runs an
        N > 1 batch item by item.

        Args:
            x: float32 (N, 3, H, W), normalized as ``manifest.normalization`` says, at the artifact's H x W
                (NCHW for every artifact: a channels-last model file is transposed by its backend).

        Returns:
            The outputs as NumPy arrays, in ``manifest.outputs`` order (NCHW).

        Raises:
            InputShapeError: ``x`` has the wrong shape or dtype (the message gives the expected one).
            SapiensEdgeError: the predictor is closed.
        """
        if self._closed:
            raise SapiensEdgeError(f"This predictor ({self.artifact_dir}) is closed; load the artifact again.")
        x = self.check_input(x)
        name = self.input_spec.name
        if _dim(self.input_spec.shape[0]) == 1 and x.shape[0] > 1:
            parts = [self.session.run({name: x[i:i + 1]}) for i in range(x.shape[0])]
            return [np.concatenate([p[j] for p in parts], axis=0) for j in range(len(parts[0]))]
        return list(self.session.run({name: x}))

    __call__ = run

    def predict(self, image: ImageSource, boxes: Any = None, flip_test: bool | None = None) -> TaskResult:
        """Run the model on one image with the same pre- and post-processing as ``sapiens-edge predict``.

        Args:
            image: a path, bytes, a PIL image or an RGB uint8 array.
            boxes: pose only: person boxes x1,y1,x2,y2 (default: the whole image).
            flip_test: pose only: average with the mirrored image (None: the task's default; off for an
                artifact with decoded outputs, which refuses it: OptionError).

        Returns:
            The task result (seg mask, keypoints, normals or point map; ``runtime.results``).

        Raises:
            ImageError: the image cannot be read.
            SapiensEdgeError: the artifact is a bare backbone (use ``run``).
            ArtifactError: the artifact's normalization is not this runtime's.
        """
        if self.task == "backbone":
            raise SapiensEdgeError(f"{self.manifest.model} is a bare backbone (feature maps only); predict() "
                                   "needs a task artifact. Use run(x) for the raw features.")
        self._check_normalization()
        return run_task(self.run, image, self.task, boxes=boxes, flip_test=flip_test, input_hw=self.input_hw,
                        decoded=is_decoded(self.manifest))

    def _check_normalization(self) -> None:
        norm = self.manifest.normalization or {}
        for key, ref in (("mean_rgb", metadata.MEAN_RGB), ("std_rgb", metadata.STD_RGB)):
            if key in norm and not np.allclose(np.asarray(norm[key], dtype=np.float64), ref, atol=1e-3):
                raise ArtifactError(
                    f"{self.manifest.model}: the artifact was exported for {key} {norm[key]}, but this runtime "
                    f"normalizes with {ref.tolist()}. Upgrade sapiens-edge or re-export the artifact.")

    # --- bookkeeping ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {"model": m.model, "task": m.task, "recipe": m.recipe, "target": m.target,
                "precision": m.precision, "input_hw": list(self.input_hw), "artifact": str(self.artifact_dir),
                **self.session.describe()}

    def close(self) -> None:
        if not self._closed:
            close = getattr(self.session, "close", None)
            if close is not None:
                close()
            self._closed = True

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.manifest
        state = " closed" if self._closed else ""
        return f"<Predictor {m.model} {m.recipe} via {self.backend}{state} at {self.artifact_dir}>"


def load(artifact_dir: str | Path, backend: str | None = None, *, verify: bool = True, **options: Any) -> Predictor:
    """Open an exported artifact folder.

    Reads ``manifest.json`` and (``verify=True``) checks every file's sha256; picks ``backend``
    (default: the one for the manifest's target, e.g. 'onnxruntime' for onnx); passes ``options``
    to it (onnxruntime: provider='cpu'|'cuda'|'tensorrt'|'coreml', threads, graph_optimization,
    profile). Providers are never chosen silently.

    Args:
        artifact_dir: the folder ``export()`` / ``sapiens-edge export`` wrote.
        backend: a name from ``runtime.backends.BACKENDS`` (default: the manifest target's).
        verify: check every file's sha256 against the manifest first.
        **options: the backend's options (onnxruntime: provider, provider_options, threads, ...;
            coreml: compute_units; tflite: threads, xnnpack).

    Returns:
        A ``Predictor`` (close it, or use it in a ``with`` block).

    Raises:
        ArtifactError: missing or tampered files, or a manifest this version cannot read.
        SapiensEdgeError: an unknown backend, one that cannot run this target, or a bad option.
        MissingDependencyError: the backend's engine is not installed (names the pip extra).
    """
    folder = Path(artifact_dir)
    manifest = read_manifest(folder, verify=verify)
    _check_manifest(manifest, folder)
    name, session = open_session(manifest, folder, backend, **options)
    return Predictor(manifest, session, folder, name)
