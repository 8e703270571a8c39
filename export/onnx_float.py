"""Which nodes of an ONNX graph stay float, and the fp16 pass: the decoding of decoded-output graphs
(`decoder_nodes`), the keep-float policy's layers found by name or, for renamed weights, by value
(`float_nodes`, `parameter_digests`, `weight_sources`), and ONNX Runtime's float16 converter with those
nodes kept fp32 (`to_fp16`). Shared by the onnx target's recipes (`export.onnx`, `onnx_int8`,
`onnx_tensorrt`)."""

from __future__ import annotations

import numpy as np

FP16_KEEP_FP32 = ("InstanceNormalization", "LayerNormalization")
FLOAT = 1  # onnx.TensorProto.FLOAT


def _is_blur(node) -> bool:
    """One of the two depthwise 11-tap convs of DARK's blur (`export.decode.blur`)."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return attrs.get("group", 1) > 1 and list(attrs.get("kernel_shape", [])) in ([1, 11], [11, 1])


def decoder_nodes(proto) -> list[str]:
    """The nodes of a decoded-output graph's decoding (`export.decode`): everything downstream of the task head's
    last Conv. The fp16 pass leaves them in fp32 (DARK's log map and Hessian in fp16 would move keypoints) and
    static int8 leaves its blur convs float."""
    last = [n for n in proto.graph.node if n.op_type == "Conv" and not _is_blur(n)][-1]
    live, names = set(last.output), []
    for node in proto.graph.node:  # topological order
        if live & set(node.input):
            live |= set(node.output)
            names.append(node.name)
    return names


def to_fp16(proto, keep_fp32_nodes: list[str] | None = None):
    """fp16 weights and compute, fp32 I/O; see the module docstring for what stays fp32 (and
    `keep_fp32_nodes`)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    for node in proto.graph.node:
        if node.op_type == "Attention":
            for attr in node.attribute:
                if attr.name == "softmax_precision":
                    attr.i = FLOAT
                    break
            else:
                import onnx

                node.attribute.append(onnx.helper.make_attribute("softmax_precision", FLOAT))
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_FP32))
    proto = convert_float_to_float16(proto, keep_io_types=True, op_block_list=block, disable_shape_infer=True,
                                     node_block_list=keep_fp32_nodes)
    return topological_sort(proto)  # the converter appends its input casts at the end of the graph


def topological_sort(proto):
    """Reorder the main graph's nodes so that every input is produced before it is used (Kahn)."""
    nodes = list(proto.graph.node)
    ready = {i.name for i in proto.graph.input} | {t.name for t in proto.graph.initializer} | {""}
    producers = {out: k for k, n in enumerate(nodes) for out in n.output}
    waiting = {k: {i for i in n.input if i not in ready and i in producers} for k, n in enumerate(nodes)}
    users: dict[int, list[int]] = {}
    for k, deps in waiting.items():
        for d in deps:
            users.setdefault(producers[d], []).append(k)
    queue = [k for k, deps in waiting.items() if not deps]
    order = []
    while queue:
        k = queue.pop(0)
        order.append(k)
        for out in nodes[k].output:
            for u in users.get(k, ()):
                waiting[u].discard(out)
        for u in users.pop(k, ()):
            if not waiting[u] and u not in order and u not in queue:
                queue.append(u)
    if len(order) != len(nodes):
        raise RuntimeError("The fp16 graph has a cycle (a bug: please report it).")
    del proto.graph.node[:]
    proto.graph.node.extend(nodes[k] for k in order)
    return proto


def float_nodes(proto, task: str | None = None, extra: tuple[str, ...] = (),
                sources: dict[str, str] | None = None) -> list[str]:
    """Names of the Conv/MatMul/Gemm nodes whose weights belong to layers kept in float
    (`quantize.policy`, plus `extra` parameter-name substrings such as 'decode_head.'); `sources`
    maps renamed weight initializers to the parameters they hold (`weight_sources`). Patterns of
    `extra` that match no node are a RecipeError (a typo would otherwise quantize everything)."""
    from sapiens_edge.errors import RecipeError
    from sapiens_edge.quantize.policy import keep_float_keys

    sources = sources or {}
    keys = keep_float_keys(task, extra)
    matched: set[str] = set()
    names = []
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm") or len(node.input) < 2:
            continue
        # The weight only: identical constants (e.g. zero biases) are merged under one name.
        weight = {node.input[1], sources.get(node.input[1], "")}
        hits = {key for key in keys if any(key in w for w in weight)}
        if hits:
            names.append(node.name)
            matched |= hits
    missing = [k for k in extra if k not in matched]
    if missing:
        raise RecipeError(f"--keep-float {', '.join(map(repr, missing))} matches no Conv/MatMul/Gemm weight of the "
                          f"ONNX graph; patterns are substrings of the model's parameter names.")
    return names


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def parameter_digests(params) -> dict[str, str]:
    """Digest of each 2-D tensor's value -> its name, for (name, tensor) pairs, as is, transposed,
    and by halves along its first axis (the split SwiGLU projection): what `weight_sources` looks
    ONNX weights up in."""
    known: dict[str, str] = {}
    for name, param in params:
        if param.ndim != 2:
            continue
        w = param.detach().float().numpy()
        half = w.shape[0] // 2
        for part in (w, w[:half], w[half:]) if w.shape[0] % 2 == 0 else (w,):
            known[_digest(part)] = name
            known[_digest(part.T)] = name
    return known


def weight_sources(proto, known: dict[str, str]) -> dict[str, str]:
    """ONNX weight initializer -> the model parameter it holds (`known`: `parameter_digests`), matched
    by value: the exporter and onnxslim rename linear weights (`val_16_weight`, transposed for Gemm)."""
    from onnx import TensorProto, numpy_helper

    out = {}
    for t in proto.graph.initializer:
        if len(t.dims) == 2 and t.data_type == TensorProto.FLOAT:
            source = known.get(_digest(numpy_helper.to_array(t)))
            if source:
                out[t.name] = source
    return out
