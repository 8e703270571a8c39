"""Opset 18 -> 17 for TensorRT 10.3's parser (JetPack 6) and older ONNX Runtimes: the dynamo exporter's lowest
opset is 18, and only the Reduce ops' axes (an input at 18) and Split's `num_outputs` changed between the two for
the ops we emit; any other op revised at 18 is refused as a bug."""

from __future__ import annotations

from typing import Any

OPSET = 17  # fp32 / fp16: LayerNormalization is in, every op TensorRT 10.3 parses
# Reduce ops whose axes became an input at opset 18 (ReduceSum's did at 13).
_AXES_TO_ATTRIBUTE = frozenset({"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                                "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})


def _constant_ints(proto, name: str) -> list[int] | None:
    from onnx import numpy_helper

    for t in proto.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t).astype(int).tolist()
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t).astype(int).tolist()
    return None


def downgrade_to_17(proto) -> Any:
    """Opset 18 -> 17 in place: the Reduce ops' constant axes input -> `axes` attribute, Split's
    `num_outputs` -> a sizes input; every other op must have the same schema at 17 and 18."""
    import numpy as np
    from onnx import defs, helper, numpy_helper

    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*proto.graph.value_info, *proto.graph.input, *proto.graph.output)}
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _AXES_TO_ATTRIBUTE and len(node.input) > 1 and node.input[1]:
            axes = _constant_ints(proto, node.input[1])
            if axes is None:
                raise RuntimeError(f"{node.op_type} {node.name!r}: its axes are not a constant "
                                   f"(a bug: please report it).")
            del node.input[1:]
            # `noop_with_empty_axes` (new at 18) only matters without axes
            kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("axes", [int(a) for a in np.atleast_1d(axes)])])
        elif node.op_type == "Split" and any(a.name == "num_outputs" for a in node.attribute):
            count = next(a.i for a in node.attribute if a.name == "num_outputs")
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dim = shapes.get(node.input[0], [])[axis]
            if dim <= 0 or dim % count:
                raise RuntimeError(f"Split {node.name!r}: no static size to split evenly (a bug: please report it).")
            sizes = numpy_helper.from_array(np.full(count, dim // count, np.int64), f"{node.name}/split_sizes")
            proto.graph.initializer.append(sizes)
            kept = [a for a in node.attribute if a.name != "num_outputs"]
            del node.attribute[:]
            node.attribute.extend(kept)
            node.input.append(sizes.name)
        elif defs.get_schema(node.op_type, 18).since_version == 18:
            raise RuntimeError(f"{node.op_type} {node.name!r} changed at opset 18 and has no downgrade to 17 "
                               f"(export.onnx_opset17.downgrade_to_17): please report it.")
    set_opset(proto, OPSET)
    return proto


def set_opset(proto, version: int) -> None:
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = version
