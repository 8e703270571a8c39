"""InstanceNormalization -> LayerNormalization over (H, W) plus the per-channel affine, in ONNX.

Why: ONNX Runtime's CUDA provider registers InstanceNormalization for opset 6 onward with no end
version, and ONNX Runtime matches such a kernel only to nodes of the schema it names; opset 22
revised the op, so at our opset 23 the node gets no CUDA kernel and runs on the CPU. For the seg
and normal heads that is up to 1×64×1024×768 fp32 copied to the host and back per norm (about
1.4 GB of traffic per image). LayerNormalization (CUDA kernel from opset 17) normalizes the same
numbers: over axes 2.. of an NCHW tensor it takes each (n, c) map's mean and biased variance, like
an instance norm; its scale is ones (a ConstantOfShape, folded when the session loads, so the file
stays the same size) and the instance norm's scale and bias follow as Mul and Add over channels.
Checked with onnxruntime-gpu 1.31.1's partitioner: every node then lands on CUDA.
"""

from __future__ import annotations

from typing import Any


def instance_norm_as_layer_norm(proto: Any) -> int:
    """Rewrite every 4-D InstanceNormalization of `proto` in place; returns how many."""
    from onnx import TensorProto, helper, numpy_helper

    values = (*proto.graph.value_info, *proto.graph.input, *proto.graph.output)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in values}
    types = {v.name: v.type.tensor_type.elem_type for v in values}  # fp16 graphs keep fp16 around the norm
    nodes, done = [], 0
    for node in proto.graph.node:
        if node.op_type != "InstanceNormalization" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        x, scale, bias = node.input
        shape = shapes.get(x)
        if shape is None or len(shape) != 4 or any(d is None or d <= 0 for d in shape):
            raise RuntimeError(f"InstanceNormalization {node.name!r}: its input {x!r} has no static NCHW shape "
                               f"({shape}) (our exports are static: a bug, please report it).")
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        base = node.name or x
        hw = f"{base}/hw_shape"
        axes = f"{base}/channel_axes"
        proto.graph.initializer.extend([numpy_helper.from_array(_int64(shape[2:]), hw),
                                        numpy_helper.from_array(_int64([1, 2]), axes)])
        ones, normed = f"{base}/ones", f"{base}/normalized"
        scale_c, bias_c, scaled = f"{base}/scale_c11", f"{base}/bias_c11", f"{base}/scaled"
        elem = types.get(x) or TensorProto.FLOAT
        one = helper.make_tensor("value", elem, [1], [1.0])
        nodes += [
            helper.make_node("ConstantOfShape", [hw], [ones], name=f"{base}/ones", value=one),
            helper.make_node("LayerNormalization", [x, ones], [normed], name=f"{base}/layer_norm", axis=2,
                             epsilon=eps, stash_type=1),
            helper.make_node("Unsqueeze", [scale, axes], [scale_c], name=f"{base}/scale_c11"),
            helper.make_node("Unsqueeze", [bias, axes], [bias_c], name=f"{base}/bias_c11"),
            helper.make_node("Mul", [normed, scale_c], [scaled], name=f"{base}/scale"),
            helper.make_node("Add", [scaled, bias_c], [node.output[0]], name=f"{base}/bias"),
        ]
        # Typed intermediates: the fp16 converter places its Casts by these (it runs without shape inference)
        c = shape[1]
        proto.graph.value_info.extend([
            helper.make_tensor_value_info(ones, elem, shape[2:]),
            helper.make_tensor_value_info(normed, elem, shape),
            helper.make_tensor_value_info(scale_c, elem, [c, 1, 1]),
            helper.make_tensor_value_info(bias_c, elem, [c, 1, 1]),
            helper.make_tensor_value_info(scaled, elem, shape)])
        done += 1
    if done:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
    return done


def _int64(values: Any):
    import numpy as np

    return np.asarray(list(values), dtype=np.int64)
