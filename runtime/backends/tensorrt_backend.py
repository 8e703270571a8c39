"""TensorRT backend: runs `onnx` artifacts (made for TensorRT: the tensorrt-* recipes) as a TensorRT engine.

Named, never picked: ``--backend tensorrt`` (``runtime.load(..., backend="tensorrt")``); ONNX Runtime stays
the default for onnx artifacts. On open it uses the engine cached for this GPU, TensorRT version, model and
recipe (tensorrt_cache.py), or builds one (tensorrt_build.py: the static TensorRT check first, then a
strongly typed build) and caches it, by default in ``<artifact>/engines/``. Tensors go to and from the GPU
through cuda-python (tensorrt_cuda.py) and the engine's named IO tensors (``set_tensor_address`` +
``execute_async_v3``, TensorRT 8.5+). TensorRT older than 10.0 is refused.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import (
    ArtifactError,
    InputShapeError,
    MissingDependencyError,
    OptionError,
    PlatformUnavailableError,
    SapiensEdgeError,
)

from . import positive_int_option, tensorrt_build, tensorrt_cuda
from .tensorrt_cache import ENGINE_DIR, EngineSlot, engine_key

NAME = "tensorrt"
OPTIONS = ("engine_cache", "workspace_mib")
MIN_VERSION = (10, 0)
INSTALL_HINT = ("On a Jetson, TensorRT comes with JetPack (JetPack 6: TensorRT 10.3, JetPack 7: 10.13; the "
                "Python package is `sudo apt install python3-libnvinfer`; in a venv made with "
                "--system-site-packages it is visible), then pip install cuda-python onnx. On a desktop NVIDIA GPU: "
                "pip install 'sapiens-edge[tensorrt]'")


def _import_trt() -> Any:
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise MissingDependencyError(
            f"The tensorrt backend needs NVIDIA TensorRT's Python package ('tensorrt'), which is not installed. "
            f"{INSTALL_HINT}.") from exc


class TensorRTSession:
    """One engine, its execution context and one device buffer per IO tensor."""

    def __init__(self, manifest: Any, artifact_dir: Path, *, engine_cache: str | Path | None = None,
                 workspace_mib: int | None = None) -> None:
        self.manifest = manifest
        self.model_path = artifact_dir / manifest.model_file
        workspace_mib = positive_int_option("workspace_mib", workspace_mib, "TensorRT's default: the GPU's memory")
        for spec in (*manifest.inputs, *manifest.outputs):
            if spec.layout not in ("NCHW", ""):
                raise ArtifactError(f"{manifest.model}: tensor '{spec.name}' has layout {spec.layout!r}; the "
                                    f"tensorrt backend runs NCHW ONNX models only. Re-export the artifact.")
        if self.model_path.suffix != ".onnx" or not self.model_path.is_file():
            raise ArtifactError(f"{artifact_dir} has no ONNX model {manifest.model_file}; copy the whole artifact "
                                f"folder (the tensorrt backend builds its engine from the .onnx file).")
        trt = self._trt = _import_trt()
        self.version = str(trt.__version__)
        if tensorrt_build.version_tuple(self.version)[:2] < MIN_VERSION:
            raise PlatformUnavailableError(
                f"TensorRT {self.version} is too old for the tensorrt backend, which needs 10.0 or newer (strongly "
                f"typed networks, named IO tensors): JetPack 6 (TensorRT 10.3) or newer on a Jetson.")
        self._cuda = tensorrt_cuda.open_cuda()
        self.gpu = self._cuda.gpu
        self._ptrs: list[int] = []
        self._closed = True  # until opened; close() frees only what was allocated
        self._context = self.engine = None
        try:
            self._open(trt, artifact_dir, engine_cache, workspace_mib)
        except BaseException:
            self.close()
            raise
        self._closed = False

    def _open(self, trt: Any, artifact_dir: Path, engine_cache: str | Path | None, workspace_mib: int | None) -> None:
        self._logger = tensorrt_build.make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        key = engine_key(self.manifest, gpu=self.gpu.name, compute_capability=self.gpu.compute_capability,
                         tensorrt=self.version, workspace_mib=workspace_mib)
        self.slot = EngineSlot(Path(engine_cache) if engine_cache is not None else artifact_dir / ENGINE_DIR, key)
        self.rules: str | None = None
        self.engine = self._cached_engine()
        self.cache = "hit" if self.engine is not None else "miss"
        self.build_seconds = self.slot.build_seconds() if self.engine is not None else None
        if self.engine is None:
            self.engine, self.build_seconds = self._build(workspace_mib)
        self._context = self.engine.create_execution_context()
        self._bind()

    def _cached_engine(self) -> Any:
        with self.slot.mapped() as blob:
            if blob is None:
                return None
            try:  # an engine TensorRT refuses (None) counts as a miss, like a damaged file
                return self._runtime.deserialize_cuda_engine(blob)
            except Exception:  # TensorRT raises its own pybind exception types
                return None

    def _build(self, workspace_mib: int | None) -> tuple[Any, float]:
        self.rules = tensorrt_build.static_check(self.model_path, self.version)
        self.slot.check_writable()
        print(f"building a TensorRT {self.version} engine for {self.manifest.model} ({self.manifest.recipe}) on "
              f"{self.gpu.name}: once per GPU and TensorRT version, minutes for large models; cached as "
              f"{self.slot.engine}", file=sys.stderr, flush=True)
        blob, seconds = tensorrt_build.build_engine(self._trt, self._logger, self.model_path, workspace_mib)
        self.slot.store(blob, seconds)
        engine = self._runtime.deserialize_cuda_engine(blob)
        if engine is None:  # TensorRT refusing the engine it just built is not the user's to fix
            raise RuntimeError(f"TensorRT {self.version} could not load the engine it built from {self.model_path}: "
                               f"{'; '.join(self._logger.errors[-5:])}")
        return engine, seconds

    def _bind(self) -> None:
        """One device buffer per IO tensor, checked against the manifest; shapes are static."""
        trt, engine, m = self._trt, self.engine, self.manifest
        self._io: dict[str, tuple[tuple[int, ...], np.dtype, int]] = {}
        kinds: dict[str, bool] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            if any(d < 0 for d in shape):
                raise ArtifactError(f"{self.model_path.name}: tensor '{name}' has a dynamic shape {shape}; export "
                                    f"at a fixed size (--input-size).")
            ptr = self._cuda.malloc(int(np.prod(shape)) * dtype.itemsize)
            self._ptrs.append(ptr)
            self._context.set_tensor_address(name, ptr)
            self._io[name] = (shape, dtype, ptr)
            kinds[name] = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        for kind, specs, is_input in (("input", m.inputs, True), ("output", m.outputs, False)):
            for spec in specs:
                if spec.name not in self._io or kinds[spec.name] != is_input:
                    raise ArtifactError(f"The engine built from {self.model_path.name} has no {kind} '{spec.name}' "
                                        f"(it has: {', '.join(self._io)}); the manifest does not describe this model. "
                                        f"Re-export the artifact.")
                shape, dtype, _ = self._io[spec.name]
                if dtype.name != spec.dtype or list(shape) != [int(d) for d in spec.shape]:
                    raise ArtifactError(f"{self.model_path.name}: {kind} '{spec.name}' is {shape} {dtype.name} in the "
                                        f"engine but {tuple(spec.shape)} {spec.dtype} in the manifest. Re-export.")
        extra = sorted(n for n, is_in in kinds.items() if is_in and n not in {s.name for s in m.inputs})
        if extra:
            raise ArtifactError(f"{self.model_path.name} needs inputs the manifest does not list: {', '.join(extra)}. "
                                f"Re-export the artifact.")

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._closed:
            raise SapiensEdgeError("This TensorRT session is closed; load the artifact again.")
        staged = []  # the host arrays stay alive until the stream is synchronized
        for spec in self.manifest.inputs:
            shape, dtype, ptr = self._io[spec.name]
            x = np.ascontiguousarray(inputs[spec.name], dtype=dtype)
            if x.shape != shape:
                raise InputShapeError(f"TensorRT engine input '{spec.name}' is {shape}, got {x.shape}.")
            staged.append(x)
            self._cuda.to_device(ptr, x)
        if not self._context.execute_async_v3(self._cuda.stream):
            raise SapiensEdgeError(f"TensorRT failed to run {self.model_path.name}: "
                                   f"{'; '.join(self._logger.errors[-5:]) or 'no error reported'}")
        outs = []
        for spec in self.manifest.outputs:
            shape, dtype, ptr = self._io[spec.name]
            outs.append(np.empty(shape, dtype))
            self._cuda.to_host(outs[-1], ptr)
        self._cuda.synchronize()
        return outs

    def describe(self) -> dict[str, Any]:
        built = f"{self.build_seconds:.1f} s" if self.build_seconds is not None else "unknown time"
        how = "built now" if self.cache == "miss" else "loaded from the cache"
        return {
            "backend": NAME,
            "version": self.version,
            "gpu": self.gpu.name,
            "compute_capability": self.gpu.compute_capability,
            "engine": str(self.slot.engine),
            "engine_cache": self.cache,  # "hit": loaded; "miss": built on this open
            "build_seconds": self.build_seconds,  # this open's build, or the cached engine's
            "check_rules": self.rules,  # the static-check rules applied before a build (None on a hit)
            "workspace_mib": self.slot.key["workspace_mib"],
            "summary": f"TensorRT {self.version} on {self.gpu.name} (sm {self.gpu.compute_capability}), strongly "
                       f"typed engine {how} (cache {self.cache}; build {built})",
        }

    def close(self) -> None:
        """Free the device buffers and the stream (idempotent; also after a failed open)."""
        self._closed = True
        if self._cuda is not None:
            for ptr in self._ptrs:
                self._cuda.free(ptr)
            self._ptrs = []
            self._cuda.close()
            self._cuda = None
        self._context = self.engine = None


def open(manifest: Any, artifact_dir: str | Path, **options: Any) -> TensorRTSession:
    """Open ``manifest.model_file`` as a TensorRT engine. Options: engine_cache (folder for the engines; default
    ``<artifact>/engines``), workspace_mib (the builder's workspace memory pool limit; default TensorRT's)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise OptionError(f"Unknown option(s) for the tensorrt backend: {', '.join(unknown)}. "
                          f"It accepts: {', '.join(OPTIONS)}.")
    return TensorRTSession(manifest, Path(artifact_dir), **options)
