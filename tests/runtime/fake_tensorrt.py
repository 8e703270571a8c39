"""A fake TensorRT (the `tensorrt` Python module) and a fake CUDA device for the tensorrt backend's tests: no GPU
here. They record what the backend asks for (network flags, parser, memory pool limit, builds, deserializations,
tensor addresses) and really compute: the "engine" carries the ONNX model it was built from (external data
included) and runs it with ONNX Runtime on the CPU, reading and writing the fake device buffers at the addresses
the backend bound. Like TensorRT, deserializing refuses (None) bytes that are no engine, or an engine built for
another GPU or TensorRT version.
"""

from __future__ import annotations

import ctypes
import enum
import json
import types

import numpy as np

MAGIC = b"FAKE-TRT-ENGINE\0"
_ONNX_DTYPES = {1: np.float32, 10: np.float16, 3: np.int8, 7: np.int64, 6: np.int32}


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    INT64 = 4


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
       DataType.INT64: np.int64}
_DT = {np.dtype(v): k for k, v in _NP.items()}


def _host_view(ptr: int, nbytes: int) -> memoryview:
    return memoryview((ctypes.c_char * nbytes).from_address(ptr)).cast("B")


def _cudart(gpu: FakeGpu) -> types.ModuleType:
    """cuda-python's `cuda.bindings.runtime` calls the backend makes, same shapes ((error, value) tuples, bytes
    device name), over host memory: a "device pointer" is the address of a ctypes buffer."""
    rt = types.ModuleType("cuda.bindings.runtime")

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    ok = cudaError_t.cudaSuccess

    def malloc(nbytes: int):
        if gpu.fail_malloc:
            return cudaError_t.cudaErrorMemoryAllocation, None
        buf = ctypes.create_string_buffer(nbytes)
        gpu.memory[ctypes.addressof(buf)] = buf
        return ok, ctypes.addressof(buf)

    def free(ptr: int):
        del gpu.memory[ptr]
        return (ok,)

    def memcpy(dst: int, src: int, nbytes: int, kind, stream):
        device = dst if kind == cudaMemcpyKind.cudaMemcpyHostToDevice else src
        assert device in gpu.memory and len(gpu.memory[device]) == nbytes, "copy outside a device buffer"
        assert stream in gpu.streams, "copy on an unknown stream"
        gpu.log.append(("memcpy", kind.name, nbytes))
        ctypes.memmove(dst, src, nbytes)
        return (ok,)

    def stream_create():
        gpu.streams.add(0x5EA + len(gpu.streams))
        return ok, max(gpu.streams)

    def stream_destroy(stream):
        gpu.streams.remove(stream)
        return (ok,)

    def properties(device: int):
        return ok, types.SimpleNamespace(name=gpu.name.encode() + b"\0" * 8, major=int(gpu.compute_capability[0]),
                                         minor=int(gpu.compute_capability.split(".")[1]))

    rt.cudaError_t, rt.cudaMemcpyKind = cudaError_t, cudaMemcpyKind
    rt.cudaGetDeviceCount = lambda: (ok, 1)
    rt.cudaGetDeviceProperties = properties
    rt.cudaMalloc, rt.cudaFree, rt.cudaMemcpyAsync = malloc, free, memcpy
    rt.cudaStreamCreate, rt.cudaStreamDestroy = stream_create, stream_destroy
    rt.cudaStreamSynchronize = lambda stream: (gpu.log.append(("synchronize", stream)), (ok,))[1]
    return rt


class FakeGpu:
    """One fake GPU with a fake TensorRT and cuda-python installed: `modules` go into sys.modules. `parser_errors`
    makes parsing fail with these (node name, op, desc); `fail_build` / `fail_malloc` fail those steps."""

    def __init__(self, name: str = "Orin", compute_capability: str = "8.7", version: str = "10.3.0.30") -> None:
        self.name, self.compute_capability, self.version = name, compute_capability, version
        self.memory: dict[int, ctypes.Array] = {}  # device pointer -> its buffer
        self.streams: set[int] = set()
        self.log: list[tuple] = []
        self.parser_errors: list[tuple[str, str, str]] = []
        self.fail_build = self.fail_malloc = False
        self.module = self._module()
        runtime = _cudart(self)
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = runtime
        cuda = types.ModuleType("cuda")
        cuda.bindings = bindings
        self.modules = {"tensorrt": self.module, "cuda": cuda, "cuda.bindings": bindings,
                        "cuda.bindings.runtime": runtime}

    def count(self, what: str) -> int:
        return sum(1 for entry in self.log if entry[0] == what)

    def _module(self) -> types.ModuleType:
        gpu = self
        m = types.ModuleType("tensorrt")
        m.__version__ = self.version
        m.DataType = DataType

        class ILogger:
            class Severity(enum.IntEnum):
                INTERNAL_ERROR = 0
                ERROR = 1
                WARNING = 2
                INFO = 3
                VERBOSE = 4

            def __init__(self) -> None:
                pass

        class NetworkDefinitionCreationFlag(enum.IntEnum):
            EXPLICIT_BATCH = 0  # TensorRT 10's values: STRONGLY_TYPED is bit 1
            STRONGLY_TYPED = 1

        class MemoryPoolType(enum.IntEnum):
            WORKSPACE = 0

        class TensorIOMode(enum.IntEnum):
            NONE = 0
            INPUT = 1
            OUTPUT = 2

        class Network:
            def __init__(self, flags: int) -> None:
                self.flags, self.model = flags, None

        class Config:
            def __init__(self) -> None:
                self.pools: dict[int, int] = {}

            def set_memory_pool_limit(self, pool, size: int) -> None:
                gpu.log.append(("set_memory_pool_limit", pool, size))
                self.pools[pool] = size

        class ParserError:
            def __init__(self, index: int, name: str, op: str, desc: str) -> None:
                self._index, self._name, self._op, self._desc = index, name, op, desc

            def node(self) -> int:
                return self._index

            def node_name(self) -> str:
                return self._name

            def node_operator(self) -> str:
                return self._op

            def desc(self) -> str:
                return self._desc

        class OnnxParser:
            def __init__(self, network: Network, logger: ILogger) -> None:
                self.network, self.errors = network, []

            def parse_from_file(self, path: str) -> bool:
                import onnx

                gpu.log.append(("parse_from_file", path))
                if gpu.parser_errors:
                    self.errors = [ParserError(i, *e) for i, e in enumerate(gpu.parser_errors)]
                    return False
                self.network.model = onnx.load(path)  # external data resolved beside the file, as TensorRT does
                return True

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, i: int) -> ParserError:
                return self.errors[i]

        class Builder:
            def __init__(self, logger: ILogger) -> None:
                self.logger = logger

            def create_network(self, flags: int) -> Network:
                gpu.log.append(("create_network", flags))
                return Network(flags)

            def create_builder_config(self) -> Config:
                return Config()

            def build_serialized_network(self, network: Network, config: Config) -> bytearray | None:
                gpu.log.append(("build", network.flags, dict(config.pools)))
                if gpu.fail_build:
                    self.logger.log(ILogger.Severity.ERROR, "out of device memory")
                    return None
                header = {"gpu": gpu.name, "cc": gpu.compute_capability, "version": gpu.version}
                head = json.dumps(header).encode()
                return bytearray(MAGIC + len(head).to_bytes(4, "little") + head + network.model.SerializeToString())

        class Runtime:
            def __init__(self, logger: ILogger) -> None:
                pass

            def deserialize_cuda_engine(self, buffer):
                blob = bytes(buffer)  # any buffer, as TensorRT's binding takes (the backend passes a mapped file)
                ok = blob.startswith(MAGIC)
                if ok:
                    n = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 4], "little")
                    try:
                        header = json.loads(blob[len(MAGIC) + 4:len(MAGIC) + 4 + n])
                    except ValueError:
                        header = {}
                    ok = header == {"gpu": gpu.name, "cc": gpu.compute_capability, "version": gpu.version}
                gpu.log.append(("deserialize", ok))
                return Engine(blob[len(MAGIC) + 4 + n:]) if ok else None

        class Engine:
            def __init__(self, model_bytes: bytes) -> None:
                import onnx
                import onnxruntime as ort

                self.session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
                graph = onnx.load_from_string(model_bytes).graph
                io = [(v, TensorIOMode.INPUT) for v in graph.input] + [(v, TensorIOMode.OUTPUT) for v in graph.output]
                self.io = {v.name: (mode, tuple(d.dim_value for d in v.type.tensor_type.shape.dim),
                                    _DT[np.dtype(_ONNX_DTYPES[v.type.tensor_type.elem_type])]) for v, mode in io}
                self.names = list(self.io)

            @property
            def num_io_tensors(self) -> int:
                return len(self.names)

            def get_tensor_name(self, i: int) -> str:
                return self.names[i]

            def get_tensor_mode(self, name: str):
                return self.io[name][0]

            def get_tensor_shape(self, name: str) -> tuple[int, ...]:
                return self.io[name][1]

            def get_tensor_dtype(self, name: str) -> DataType:
                return self.io[name][2]

            def create_execution_context(self):
                return Context(self)

        class Context:
            def __init__(self, engine: Engine) -> None:
                self.engine, self.addresses = engine, {}

            def set_tensor_address(self, name: str, ptr: int) -> None:
                self.addresses[name] = ptr

            def execute_async_v3(self, stream: int) -> bool:
                gpu.log.append(("execute", stream))
                feed = {}
                for name, (mode, shape, dtype) in self.engine.io.items():
                    nbytes = int(np.prod(shape)) * np.dtype(_NP[dtype]).itemsize
                    if mode == TensorIOMode.INPUT:
                        raw = bytes(_host_view(self.addresses[name], nbytes))
                        feed[name] = np.frombuffer(raw, _NP[dtype]).reshape(shape)
                outputs = [n for n, (mode, _, _) in self.engine.io.items() if mode == TensorIOMode.OUTPUT]
                for name, value in zip(outputs, self.engine.session.run(outputs, feed), strict=True):
                    data = np.ascontiguousarray(value, _NP[self.engine.io[name][2]]).tobytes()
                    _host_view(self.addresses[name], len(data))[:] = data
                return True

        m.ILogger, m.NetworkDefinitionCreationFlag = ILogger, NetworkDefinitionCreationFlag
        m.MemoryPoolType, m.TensorIOMode = MemoryPoolType, TensorIOMode
        m.Builder, m.OnnxParser, m.Runtime = Builder, OnnxParser, Runtime
        m.nptype = lambda dt: _NP[dt]
        return m

