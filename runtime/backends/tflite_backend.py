"""TFLite / LiteRT backend: runs `tflite` artifacts with the LiteRT interpreter.

The interpreter comes from `ai-edge-litert` (pip install 'sapiens-edge[tflite-runtime]': numpy
and a ~20 MB wheel, no torch, no converter), or from `tflite-runtime` where that is what a device
has (its last wheels, 2.14, are built against numpy 1.x). XNNPACK, LiteRT's CPU delegate, is on
by default (`xnnpack=False` runs the reference kernels, for comparison only). The artifact's
tensors are channels-last where the manifest says so (`layout: NHWC`); this backend takes and
gives NCHW like every other and transposes at the boundary.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import ArtifactError, MissingDependencyError, OptionError

NAME = "tflite"
OPTIONS = ("threads", "xnnpack")
SIGNATURE = "serving_default"


def _interpreter_module():
    """(module providing Interpreter, distribution name); ai-edge-litert first."""
    try:
        from ai_edge_litert import interpreter

        return interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter

        return interpreter, "tflite-runtime"
    except ImportError as exc:
        raise MissingDependencyError(
            "Running TFLite artifacts needs the LiteRT interpreter, which is not installed. Install it with: "
            "pip install 'sapiens-edge[tflite-runtime]' (ai-edge-litert; no torch needed).") from exc


def make_interpreter(path: Path, *, threads: int | None = None, xnnpack: bool = True):
    module, _ = _interpreter_module()
    kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": int(threads) if threads else None}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = module.Interpreter(**kwargs)
    interpreter.allocate_tensors()
    return interpreter


def open(manifest: Any, artifact_dir: Path, *, threads: int | None = None, xnnpack: bool = True,
         **options: Any) -> TFLiteSession:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise OptionError(f"The tflite backend has no option(s) {', '.join(unknown)}; it takes: "
                               f"{', '.join(OPTIONS)}.")
    if threads is not None and int(threads) < 1:
        raise OptionError(f"threads must be a positive number, not {threads!r}.")
    return TFLiteSession(manifest, Path(artifact_dir), threads=threads, xnnpack=xnnpack)


class TFLiteSession:
    def __init__(self, manifest: Any, artifact_dir: Path, *, threads: int | None = None, xnnpack: bool = True) -> None:
        self.manifest = manifest
        self.path = artifact_dir / manifest.model_file
        if not self.path.is_file():
            raise ArtifactError(f"{self.path} is missing; re-export the artifact.")
        self.threads = int(threads) if threads else os.cpu_count()
        self.xnnpack = bool(xnnpack)
        _, self.engine = _interpreter_module()
        try:
            self.interpreter = make_interpreter(self.path, threads=self.threads, xnnpack=self.xnnpack)
            self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        except (ValueError, RuntimeError) as exc:  # LiteRT's errors for a damaged flatbuffer
            raise ArtifactError(f"LiteRT could not load {self.path}: {exc}. The file is damaged or was written "
                                f"by an incompatible converter; re-export it.") from exc
        outputs = self.interpreter.get_signature_list()[SIGNATURE]["outputs"]
        expected = [spec.name for spec in manifest.outputs]
        if sorted(outputs) != sorted(expected):
            raise ArtifactError(f"{self.path} has outputs {outputs}, the manifest lists {expected}; re-export it.")

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        feed = {}
        for spec in self.manifest.inputs:
            x = inputs[spec.name]
            feed[spec.name] = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if spec.layout == "NHWC" else x)
        result = self.runner(**feed)
        return [np.ascontiguousarray(result[spec.name].transpose(0, 3, 1, 2)) if spec.layout == "NHWC"
                else result[spec.name] for spec in self.manifest.outputs]

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        kernels = "XNNPACK" if self.xnnpack else "reference kernels"
        return {"backend": NAME, "engine": self.engine, "version": version(self.engine), "threads": self.threads,
                "xnnpack": self.xnnpack,
                "summary": f"LiteRT {version(self.engine)} ({self.engine}, {kernels}, {self.threads} threads)"}

    def close(self) -> None:
        self.runner = None
        self.interpreter = None


def delegation_report(path: str | Path) -> dict[str, Any]:
    """Which ops of a .tflite model XNNPACK takes. The interpreter lists the model's ops followed by
    one DELEGATE node per XNNPACK partition; walking back from each partition's outputs to its
    inputs finds the ops inside it, and whatever is left runs on LiteRT's own kernels."""
    interpreter = make_interpreter(Path(path), threads=1)
    ops = interpreter._get_ops_details()
    producers = {int(t): op["index"] for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    inside: set[int] = set()
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    for part in partitions:
        stop = {int(t) for t in part["inputs"]}
        stack, seen = [int(t) for t in part["outputs"]], set()
        while stack:
            t = stack.pop()
            if t in stop or t in seen or t not in producers:
                continue
            seen.add(t)
            k = producers[t]
            inside.add(k)
            stack.extend(int(i) for i in ops[k]["inputs"] if i >= 0)
    model_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    outside = Counter(op["op_name"] for op in model_ops if op["index"] not in inside)
    return {"delegate": "XNNPACK", "ops": len(model_ops), "delegated_ops": len(model_ops) - sum(outside.values()),
            "partitions": len(partitions), "outside": dict(sorted(outside.items())),
            "op_counts": dict(Counter(op["op_name"] for op in model_ops).most_common())}


def weight_types(path: str | Path) -> dict[str, dict[str, int]]:
    """{op: {"int8": layers whose weight is int8, "total": layers}} for the FULLY_CONNECTED and
    CONV_2D ops of a .tflite model (what the manifest reports as quantized)."""
    interpreter = make_interpreter(Path(path), threads=1)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    counts: dict[str, dict[str, int]] = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D"):
            weight = tensors[int(op["inputs"][1])]
            entry = counts.setdefault(op["op_name"].lower(), {"int8": 0, "total": 0})
            entry["total"] += 1
            entry["int8"] += np.dtype(weight["dtype"]) == np.int8
    return counts
