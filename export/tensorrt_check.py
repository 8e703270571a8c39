"""Static TensorRT compatibility check of an ONNX model or artifact: no GPU, no TensorRT, only `onnx`.

It reads the graph (never the external weights, except zero points stored there) and lists every node or
graph property that the ONNX parser of a TensorRT version (export/tensorrt_rules.py) rejects. A clean result
says the parser should take the graph, not that an engine builds or how fast it runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sapiens_edge.errors import ArtifactError, OptionError

from .tensorrt_rules import ADDED_IN, CONTROL_FLOW, PROTOBUF_LIMIT, QDQ_OPS, QDQ_TYPES, RULES, TensorRTRules

GRAPH = "(graph)"  # the node name of a graph-level violation


@dataclass(frozen=True)
class Violation:
    rule: str  # opset, custom-domain, unsupported-op, control-flow, dynamic-shape, qdq-type, qdq-asymmetric, ...
    node: str  # node name, or GRAPH
    op_type: str  # "" for graph-level violations
    message: str
    fix: str

    def line(self) -> str:
        where = self.node if not self.op_type else f"{self.node} [{self.op_type}]"
        return f"{self.rule}: {where}: {self.message} (fix: {self.fix})"


@dataclass(frozen=True)
class TensorRTReport:
    model: Path
    rules: TensorRTRules
    violations: tuple[Violation, ...]

    @property
    def compatible(self) -> bool:
        return not self.violations


def check_tensorrt(path: str | Path, version: str) -> TensorRTReport:
    """Check an ONNX file, or an artifact folder's model file, against TensorRT `version` (a RULES key)."""
    import onnx

    if version not in RULES:
        raise OptionError(f"Unknown TensorRT version {version!r}: choose one of {', '.join(RULES)}.")
    model_path = _model_file(Path(path))
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends, not one type
        raise ArtifactError(f"{model_path} is not a readable ONNX model ({exc}); re-export it.") from exc
    rules = RULES[version]
    found = [*_graph_checks(model, model_path, rules), *_node_checks(model, model_path.parent, rules)]
    return TensorRTReport(model_path, rules, tuple(found))


def _model_file(path: Path) -> Path:
    if path.is_dir():
        from sapiens_edge.manifest import read_manifest

        # No hash check: a missing external data file is a finding of this check, not an error before it.
        path = path / read_manifest(path, verify=False).model_file
    if not path.is_file():
        raise ArtifactError(f"{path} not found: pass an artifact folder or an .onnx file.")
    if path.suffix != ".onnx":
        raise ArtifactError(f"{path} is not an ONNX model: the TensorRT check reads onnx-* artifacts only.")
    return path


def _graph_checks(model, model_path: Path, rules: TensorRTRules) -> Iterator[Violation]:
    from onnx.external_data_helper import uses_external_data

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not rules.min_opset <= opset <= rules.max_opset:
        yield Violation("opset", GRAPH, "", f"ai.onnx opset {opset}, TensorRT {rules.version} parses "
                        f"{rules.min_opset}-{rules.max_opset}", "export at a supported opset or use a newer TensorRT")
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
            shape = "x".join(d.dim_param or (str(d.dim_value) if d.dim_value > 0 else "?") for d in dims)
            yield Violation("dynamic-shape", value.name, "", f"input shape {shape} is not static",
                            "export at a fixed size (--input-size) or pass trtexec --minShapes/--optShapes/--maxShapes")
    external = [t for t in model.graph.initializer if uses_external_data(t)]
    if not external and model_path.stat().st_size > PROTOBUF_LIMIT:
        yield Violation("external-data", GRAPH, "", "over 2 GB with the weights inline",
                        "save the weights as external data beside the model")
    locations = sorted({e.value for t in external for e in t.external_data if e.key == "location"})
    for location in locations:
        file = (model_path.parent / location).resolve()
        if not file.is_relative_to(model_path.parent.resolve()) or not file.is_file():
            yield Violation("external-data", GRAPH, "", f"external data file {location!r} is missing beside the model",
                            "copy the whole artifact folder (model and data files together)")


def _node_checks(model, base_dir: Path, rules: TensorRTRules) -> Iterator[Violation]:
    constants = {t.name: t for t in model.graph.initializer}
    for node in _nodes(model.graph):
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    for node in _nodes(model.graph):
        name, op = node.name or f"({node.op_type} -> {node.output[0] if node.output else ''})", node.op_type
        if node.domain not in ("", "ai.onnx"):
            yield Violation("custom-domain", name, op, f"{node.domain} op: TensorRT parses only ai.onnx ops",
                            "export with standard ONNX ops (for attention: the onnx-fp16 recipe's Attention)")
        elif op in CONTROL_FLOW:
            yield Violation("control-flow", name, op, "control flow: TensorRT takes it only with restrictions "
                            "on the branch and loop shapes", "unroll or fold it at export (static shapes)")
        elif op not in rules.ops:
            since = ADDED_IN.get(op)
            yield Violation("unsupported-op", name, op, f"not in TensorRT {rules.version}'s ONNX parser"
                            + (f" (added in {since})" if since else ""),
                            f"use TensorRT {since} or newer" if since else "rewrite it with supported ops")
        elif op in QDQ_OPS:
            yield from _qdq_checks(node, name, constants, base_dir)


def _nodes(graph) -> Iterator:
    """Every node, including those in If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from _nodes(sub)


def _qdq_checks(node, name: str, constants: dict, base_dir: Path) -> Iterator[Violation]:
    from onnx import numpy_helper

    op, inputs = node.op_type, list(node.input)
    scale = constants.get(inputs[1]) if len(inputs) > 1 else None
    zero = constants.get(inputs[2]) if len(inputs) > 2 and inputs[2] else None
    integer_type = _integer_type(node, zero, constants)
    if integer_type is not None and integer_type not in QDQ_TYPES:
        fix = ("keep biases in float (TensorRT adds them after the int8 matmul)" if integer_type == "INT32"
               else "quantize symmetrically to int8 (activations and weights)")
        yield Violation("qdq-type", name, op, f"quantizes to {integer_type.lower()}: TensorRT quantizes to int8 only",
                        fix)
    if zero is not None and numpy_helper.to_array(zero, base_dir=str(base_dir)).any():
        yield Violation("qdq-asymmetric", name, op, "non-zero zero point: TensorRT only supports symmetric "
                        "quantization", "quantize symmetrically (zero point 0)")
    per_axis = scale is not None and math.prod(scale.dims) > 1
    # Per-axis scales are for weights: the value quantized (Q) or dequantized (DQ) must be a constant.
    if per_axis and inputs[0] not in constants:
        yield Violation("qdq-per-axis-activation", name, op, "per-axis scale on an activation: TensorRT quantizes "
                        "activations per tensor", "use one scale per activation tensor")


def _integer_type(node, zero, constants: dict) -> str | None:
    """The Q/DQ integer type: the zero point's, else a DQ's constant input's, else a Q's output_dtype (default
    uint8); None for a DQ of an activation without a zero point (its Q is checked)."""
    from onnx import TensorProto

    if zero is not None:
        return TensorProto.DataType.Name(zero.data_type)
    if node.op_type == "DequantizeLinear":
        weight = constants.get(node.input[0])
        return TensorProto.DataType.Name(weight.data_type) if weight is not None else None
    dtype = next((a.i for a in node.attribute if a.name == "output_dtype" and a.i), TensorProto.UINT8)
    return TensorProto.DataType.Name(dtype)

