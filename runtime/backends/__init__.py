"""Runtime backends: one module per inference engine, imported only when used.

A backend module exposes ``open(manifest, artifact_dir, **options) -> Session``; a Session has

- ``run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]``: raw outputs in the order of
  ``manifest.outputs`` (inputs keyed by ``manifest.inputs[i].name``, NCHW float arrays; a
  backend whose model file uses another layout converts inside);
- ``describe() -> dict``: at least ``backend``, ``version`` and ``summary`` (one line), plus what
  was actually used (providers, threads, ...);
- optionally ``close()``.

The engine itself (onnxruntime, executorch, ...) is imported inside the backend module only, so
this package stays importable with nothing but numpy installed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sapiens_edge.errors import OptionError, SapiensEdgeError


class Session(Protocol):
    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class BackendInfo:
    name: str
    module: str  # absolute module path, imported on first use
    targets: tuple[str, ...]  # manifest.target values this backend can run
    extra: str  # pip extra that installs the engine


# name -> backend.
BACKENDS: dict[str, BackendInfo] = {
    "onnxruntime": BackendInfo("onnxruntime", f"{__name__}.onnxruntime_backend", ("onnx",), "onnx-runtime"),
    "executorch": BackendInfo("executorch", f"{__name__}.executorch_backend", ("executorch",), "executorch"),
    "coreml": BackendInfo("coreml", f"{__name__}.coreml_backend", ("coreml",), "coreml"),
    "tflite": BackendInfo("tflite", f"{__name__}.tflite_backend", ("tflite",), "tflite-runtime"),
    "openvino": BackendInfo("openvino", f"{__name__}.openvino_backend", ("openvino",), "openvino-runtime"),
    # Named only (--backend tensorrt): onnx artifacts made for TensorRT (the tensorrt-* recipes), NVIDIA GPUs.
    "tensorrt": BackendInfo("tensorrt", f"{__name__}.tensorrt_backend", ("onnx",), "tensorrt"),
}

# manifest.target -> the backend used when none is named.
DEFAULT_FOR_TARGET = {"onnx": "onnxruntime", "executorch": "executorch", "coreml": "coreml", "tflite": "tflite",
                      "openvino": "openvino"}


def positive_int_option(name: str, value: Any, default: str) -> int | None:
    """A backend option that is a positive integer or None (`default` says what None means)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise OptionError(f"{name} must be a positive integer (or None for {default}); got {value!r}.")
    return int(value)


def register_backend(name: str, module: str, targets: tuple[str, ...] | list[str], extra: str = "",
                     *, default_for: tuple[str, ...] | list[str] = ()) -> None:
    """Add (or replace) a backend; ``default_for`` lists targets it becomes the default of."""
    BACKENDS[name] = BackendInfo(name, module, tuple(targets), extra)
    for target in default_for:
        DEFAULT_FOR_TARGET[target] = name


def known_backends() -> list[str]:
    return sorted(BACKENDS)


def get_backend(name: str) -> BackendInfo:
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise OptionError(
            f"Unknown runtime backend {name!r}. Known backends: {', '.join(known_backends())}.") from None


def default_backend(manifest: Any) -> str:
    """The backend that runs ``manifest.target`` when the caller names none ('onnx' -> 'onnxruntime')."""
    target = manifest.target
    name = DEFAULT_FOR_TARGET.get(target)
    if name is None or name not in BACKENDS:
        runnable = sorted({t for b in BACKENDS.values() for t in b.targets})
        raise SapiensEdgeError(
            f"This sapiens-edge has no runtime backend for {target!r} artifacts ({manifest.model}, "
            f"{manifest.recipe}). It can run: {', '.join(runnable)}. Upgrade sapiens-edge or export "
            f"with a recipe for one of those targets (see `sapiens-edge recipes`).")
    return name


def check_target(info: BackendInfo, manifest: Any) -> None:
    if manifest.target not in info.targets:
        able = sorted(b.name for b in BACKENDS.values() if manifest.target in b.targets)
        hint = (f"use backend {', '.join(repr(a) for a in able)} (or leave the backend unset)" if able
                else "this sapiens-edge has no backend for it")
        raise SapiensEdgeError(
            f"Backend {info.name!r} runs {', '.join(info.targets)} artifacts, but {manifest.model} "
            f"({manifest.recipe}) is a {manifest.target!r} artifact: {hint}.")


def backend_options(name: str) -> tuple[str, ...]:
    """The options backend `name` takes (its module's OPTIONS), e.g. ('threads',); importing the
    backend module does not import its engine."""
    return tuple(getattr(importlib.import_module(get_backend(name).module), "OPTIONS", ()))


def open_session(manifest: Any, artifact_dir: str | Path, backend: str | None = None,
                 **options: Any) -> tuple[str, Session]:
    """Pick the backend (``backend`` or the manifest's default), check it can run this target,
    import it and open a session. Returns (backend name, session)."""
    name = default_backend(manifest) if backend is None else backend
    info = get_backend(name)
    check_target(info, manifest)
    module = importlib.import_module(info.module)
    return name, module.open(manifest, Path(artifact_dir), **options)


__all__ = ["BACKENDS", "DEFAULT_FOR_TARGET", "BackendInfo", "Session", "backend_options", "check_target",
           "default_backend",
           "get_backend", "known_backends", "open_session", "register_backend"]
