"""The CUDA memory route of the TensorRT backend: device buffers, copies and a stream, through cuda-python.

Why cuda-python (`cuda.bindings.runtime`, formerly `cuda.cudart`): it is NVIDIA's thin binding of the CUDA
runtime that TensorRT's own Python samples use, with wheels for x86-64 and aarch64 (Jetson), and it brings no
framework along (torch.cuda would pull torch onto the board; polygraphy's wrapper loads libcudart through
ctypes by name and is a debugging tool's internals, not an API of its own).

Everything the backend needs from CUDA is the small `CudaDevice` surface below, so the tests replace it with
a fake (`open_cuda` is looked up at call time), or fake the cuda-python module itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sapiens_edge.errors import MissingDependencyError, PlatformUnavailableError, SapiensEdgeError

CUDA_PYTHON_HINT = ("pip install cuda-python (the major version of the board's CUDA: 12.x on JetPack 6, "
                    "13.x on JetPack 7), or pip install 'sapiens-edge[tensorrt]' on a desktop GPU")


@dataclass(frozen=True)
class GpuInfo:
    name: str  # e.g. "Orin", "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "8.7"


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError as exc:
            raise MissingDependencyError(
                f"The tensorrt backend moves tensors to and from the GPU with cuda-python, which is not "
                f"installed: {CUDA_PYTHON_HINT}.") from exc
    return runtime


class CudaDevice:
    """Device 0 of the CUDA runtime: allocations, host<->device copies on one stream."""

    def __init__(self) -> None:
        self._rt = _import_cudart()
        count = self._call("cudaGetDeviceCount", self._rt.cudaGetDeviceCount(), platform=True)
        if not count:
            raise PlatformUnavailableError("The tensorrt backend needs an NVIDIA GPU; CUDA sees none on this machine.")
        prop = self._call("cudaGetDeviceProperties", self._rt.cudaGetDeviceProperties(0), platform=True)
        name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        self.gpu = GpuInfo(name, f"{prop.major}.{prop.minor}")
        self._stream = self._call("cudaStreamCreate", self._rt.cudaStreamCreate())

    def _call(self, what: str, result: Any, platform: bool = False) -> Any:
        """cuda-python returns (error, value...) tuples; raise on an error, return the value. Every CUDA failure
        is the machine's (no GPU, driver, out of memory), reported as such."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            if platform:
                raise PlatformUnavailableError(
                    f"The tensorrt backend needs an NVIDIA GPU and its driver: CUDA {what} failed with {err} (no GPU, "
                    f"or no or too old a driver; check nvidia-smi, or tegrastats on a Jetson).")
            raise SapiensEdgeError(f"CUDA {what} failed with {err} (out of GPU memory? Close other GPU work or pick "
                                   f"a smaller model for this board: docs/jetson.md).")
        return values[0] if len(values) == 1 else (values or None)

    @property
    def stream(self) -> int:
        return int(self._stream)

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", self._rt.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", self._rt.cudaFree(ptr))

    def to_device(self, ptr: int, array: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", self._rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, kind,
                                                               self._stream))

    def to_host(self, array: np.ndarray, ptr: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", self._rt.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes, kind,
                                                               self._stream))

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        if self._stream is not None:
            self._call("cudaStreamDestroy", self._rt.cudaStreamDestroy(self._stream))
            self._stream = None


def open_cuda() -> CudaDevice:
    return CudaDevice()
