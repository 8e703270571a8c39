"""Building a TensorRT engine from an artifact's ONNX model: the static check first, then TensorRT's parser
and builder on a strongly typed network.

Strongly typed: TensorRT keeps every tensor in the type the ONNX graph gives it (the tensorrt-* recipes write
fp16 compute with fp32 norm statistics and softmax, or explicit int8 Q/DQ), instead of picking precisions
itself the way the ``--fp16`` / ``--int8`` builder flags do (which overflow in a ViT's LayerNorm). TensorRT
11 builds every network this way and keeps the flag only for compatibility.

TensorRT Python API used, all present in TensorRT 10.0 to 10.16 (and kept in 11.x):
``Builder.create_network`` with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (from 9.x),
``OnnxParser.parse_from_file`` (resolves ``model.onnx.data`` beside the model), ``ParserError.node_name`` /
``node_operator`` (10.x), ``IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)`` (8.4+),
``Builder.build_serialized_network`` (8.0+).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sapiens_edge.errors import ArtifactError, SapiensEdgeError, option, require


def recipe_hint() -> str:
    backend = option("--backend onnxruntime", "backend='onnxruntime'")
    return ("export a tensorrt-* recipe (tensorrt-fp16, tensorrt-int8: ONNX written for TensorRT's parser; see "
            f"`sapiens-edge recipes`), or run this artifact on ONNX Runtime ({backend})")


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30), up to the first part without digits."""
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def rules_version(installed: str) -> str:
    """The static-check rules (export/tensorrt_rules.py) for an installed TensorRT: the newest rules version
    not newer than it (10.14 -> 10.13, 11.0 -> 10.16), else the oldest (10.0-10.2 -> 10.3: the same opsets)."""
    from sapiens_edge.export.tensorrt_rules import RULES

    have = version_tuple(installed)
    known = sorted(RULES, key=version_tuple)
    older = [v for v in known if version_tuple(v) <= have]
    return older[-1] if older else known[0]


def static_check(model_path: Path, installed: str) -> str:
    """Refuse a graph TensorRT's parser would reject, listing every violation; returns the rules version used."""
    require("onnx", "tensorrt", "The tensorrt backend's compatibility check of the ONNX graph")
    from sapiens_edge.export.tensorrt_check import check_tensorrt

    rules = rules_version(installed)
    report = check_tensorrt(model_path, rules)
    if not report.compatible:
        lines = "\n".join(f"  {v.line()}" for v in report.violations)
        raise ArtifactError(
            f"{model_path} is not an ONNX graph TensorRT {installed} parses ({len(report.violations)} violation(s) "
            f"of the TensorRT {rules} rules; `sapiens-edge check ARTIFACT --tensorrt {rules}` lists them too):\n"
            f"{lines}\nNo engine was built and nothing falls back to another backend: {recipe_hint()}.")
    return rules


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps the errors (for our messages) and prints nothing."""

    class Recorder(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))

    return Recorder()


def _parser_error(err: Any) -> str:
    name = err.node_name() if hasattr(err, "node_name") else ""
    op = err.node_operator() if hasattr(err, "node_operator") else ""
    where = name or (f"node #{err.node()}" if err.node() >= 0 else "(graph)")
    return f"  {where}{f' [{op}]' if op else ''}: {err.desc()}"


def build_engine(trt: Any, logger: Any, model_path: Path, workspace_mib: int | None) -> tuple[Any, float]:
    """Parse and build; returns the serialized engine (TensorRT's IHostMemory, a buffer: not copied into
    bytes, which would hold a large model's engine twice) and the seconds it took."""
    t0 = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):
        errors = "\n".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(
            f"TensorRT {trt.__version__}'s ONNX parser rejected {model_path}:\n{errors or '  (no error reported)'}\n"
            f"Nothing falls back to another backend: {recipe_hint()}.")
    config = builder.create_builder_config()
    if workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        said = "\n".join(f"  {e}" for e in logger.errors[-10:]) or "  (TensorRT reported no error)"
        raise SapiensEdgeError(
            f"TensorRT {trt.__version__} could not build an engine from {model_path}:\n{said}\nIf it ran out of "
            f"memory: close other GPU work, cap the builder's workspace ({option('--workspace MIB', 'workspace_mib')}"
            f", e.g. 1024), or pick a smaller model for this board (docs/jetson.md).")
    return serialized, time.perf_counter() - t0
