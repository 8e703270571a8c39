"""The onnx target's `tensorrt` delegate: ONNX files made for TensorRT's ONNX parser (10.3, JetPack 6).

What TensorRT 10.3 takes (export/tensorrt_rules.py): ai.onnx ops up to opset 20, no `Attention` (10.14),
no `RMSNormalization` (10.15), no com.microsoft ops, int8 Q/DQ symmetric with per-axis scales on weights
only. So the trunk is spelled out before capture (the recipes' rewrites): attention as MatMul -> Softmax ->
MatMul with the 1/sqrt(d) scale on q before the first MatMul (the pattern TensorRT fuses), GQA's k/v
expanded by a broadcast multiply, RMSNorm as ReduceMean/Sqrt/Reciprocal with its statistics in fp32;
RoPE tables are constants (export.capture).

* Exporter route: `torch.onnx.export(dynamo=True)` writes opset 18 at the lowest; asked for 17 it tries
  ONNX's version converter, which fails on our graphs (ReduceMean's axes are not constants before the
  exporter's optimizer runs) and silently keeps 18. So we export at 18, simplify (constant axes), and
  `downgrade_to_17` rewrites the only ops whose schema changed at 18 (the Reduce ops' axes input back
  to an attribute, Split's num_outputs to sizes): no serialized copy of the model, so it works past 2 GB.
* fp32 / fp16 (opset 17): fp16 is made in torch: the norms' statistics and the softmax upcast inside
  the rewritten modules, the model is cast with `.half()` and wrapped with fp32 I/O casts, so the
  exporter writes every Cast itself, the graph is strongly typed as TensorRT's `--stronglyTyped` reads
  it, and no fp32 copy of the weights is ever written.
* int8 (opset 19): ONNX Runtime's quantizer (`quantize.onnx_ptq`) with symmetric int8 activations per
  tensor and weights per output channel, no int32 bias DequantizeLinear (TensorRT keeps biases in
  float), GPTQ rounding and the keep-float policy as in `onnx-int8`; then everything else is fp16
  with the norms' statistics and softmax in fp32 (`quantized_to_fp16`). Q/DQ take fp16 scales (and so
  an fp16 tensor directly, no Cast between a DequantizeLinear and its MatMul) from opset 19 only, which
  TensorRT 10.3 parses (opsets 9-20); between 18 and 19 our ops changed only in types they accept.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sapiens_edge.manifest import TensorSpec
from sapiens_edge.memory import drop_weights, release_memory, require_memory
from sapiens_edge.scratch import scratch_dir

from .capture import prepare_static_int8
from .onnx_float import float_nodes, weight_sources
from .onnx_opset17 import OPSET, downgrade_to_17, set_opset
from .onnx_streamed import Fp32IO, is_streamed, peak_estimate, save_graph, write_int8_source, write_streamed
from .recipes import Recipe, WeightDtype
from .rewrites import REWRITES
from .target_table import require_calibration
from .targets import INPUT_NAME, CalibrationData, Lowered

INT8_OPSET = 19  # fp16 Q/DQ scales
EXPORT_OPSET = 18  # the dynamo exporter's lowest
FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto enum values
# Run in fp32 in the int8 graph's fp16 remainder (beside the RMSNorm statistics, found by `_rms_statistics`).
INT8_KEEP_FP32 = ("QuantizeLinear", "DequantizeLinear", "Softmax", "LayerNormalization", "InstanceNormalization")
# Layers kept in float (fp16) beyond onnx-int8's policy (quantize.policy), because TensorRT's activations are
# symmetric: the pose head's deconvs read SiLU outputs (>= -0.28, half of a symmetric grid unused); int8, the
# well-conditioned tiny pose stand-in moved 1.3 heatmap px (PCK 0.75), kept float 0.09 px (PCK 1.0).
SYMMETRIC_KEEP_FLOAT = {"pose": ("decode_head.",)}
# Ops revised at opset 19 that we may emit, and why the revision leaves them unchanged for us: types added
# (Cast/CastLike: float8 and `saturate`; Q/DQ: fp16 scales; Shape/Size/Reshape/Identity/Constant/Equal:
# float8 or string), Pad's new `wrap` mode, AveragePool's dilations, Resize's half_pixel_symmetric.
_SAME_AT_19 = frozenset({"Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "Shape", "Size", "Reshape",
                         "Identity", "Constant", "Equal", "Pad", "AveragePool", "Resize"})


FP16_OPTIONS = {"converter": "torch (.half() after fp32_norm_statistics, fp32_softmax_attention)", "io": "float32",
                "fp32": ["RMSNorm statistics", "InstanceNorm", "attention softmax"]}


def fp16_program(model: nn.Module, rewrites: tuple[str, ...]) -> Fp32IO:
    """`model` with `rewrites` applied, cast to fp16, with fp32 I/O. A model that `export()` loaded itself
    is rewritten and cast in place (no fp32 copy beside it); a caller's model is copied first."""
    disposable = getattr(model, "sapiens_disposable", False)
    module = model.eval() if disposable else copy.deepcopy(model).eval()
    for name in rewrites:
        REWRITES[name](module)
    program = Fp32IO(module.half(), torch.float16)
    program.sapiens_disposable = True  # ours: to_onnx_fp32 frees it once captured
    return program


def op_counts(proto) -> dict[str, int]:
    """The graph's op types (domain-qualified outside ai.onnx) with their counts, sorted by name."""
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in proto.graph.node)
    return dict(sorted(ops.items()))


def attention_matmuls(proto) -> list[str]:
    """Names of the MatMuls of two activations (attention's q k^T and probabilities x v), which the int8
    recipe leaves in fp16, where TensorRT runs MatMul -> Softmax -> MatMul as one fused kernel. Per-tensor
    symmetric int8 probabilities step by 1/127 of the largest, while at 1024x768 (3072 tokens, full
    attention) a row's average probability is 1/3072: most would round to 0. (On the tiny stand-ins,
    48-192 tokens, quantizing them costs little: pose 0.09 -> 0.13 heatmap px, seg 99.15 -> 99.11 %.)"""
    constants = {t.name for t in proto.graph.initializer}
    return [n.name for n in proto.graph.node if n.op_type == "MatMul" and not set(n.input) & constants]


def _rms_statistics(proto) -> list[str]:
    """Names of the nodes computing RMSNorm's statistics and normalization (`rewrites.Fp32StatsRMSNorm`):
    the square feeding each ReduceMean, the ReduceMean, the eps Add, Sqrt, Reciprocal and the multiply
    by the result."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    names = []
    for node in proto.graph.node:
        if node.op_type != "ReduceMean":
            continue
        square = producers.get(node.input[0])
        if square is not None and square.op_type in ("Pow", "Mul"):
            names.append(square.name)
        chain = [node]
        while len(nexts := consumers.get(chain[-1].output[0], [])) == 1 and nexts[0].op_type in ("Add", "Sqrt",
                                                                                                 "Reciprocal"):
            chain.append(nexts[0])
        chain += [n for n in consumers.get(chain[-1].output[0], []) if n.op_type in ("Mul", "Div")]
        names += [n.name for n in chain]
    return names


def quantized_to_fp16(proto) -> Any:
    """The static int8 QDQ graph with everything outside Q/DQ in fp16 except the norms' statistics and
    softmax (ONNX Runtime's float16 converter, fp32 I/O); then each Q reads its fp16 input and each DQ
    writes fp16, through fp16 scales (opset 19), instead of the converter's Casts either side."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    from .onnx_float import topological_sort

    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(INT8_KEEP_FP32))
    proto = convert_float_to_float16(proto, keep_io_types=True, op_block_list=block,
                                     node_block_list=_rms_statistics(proto), disable_shape_infer=True)
    _skip_round_trips(proto)
    _fp16_qdq(proto)
    set_opset(proto, INT8_OPSET)
    return topological_sort(proto)


def _skip_round_trips(proto) -> int:
    """fp32 -> fp16 -> fp32 Cast pairs (the converter casts around each fp32 node, also between two of them:
    the RMSNorm statistics would be rounded to fp16 between their ops) -> the fp32 tensor itself, in place.
    Returns how many were skipped."""
    graph = proto.graph
    producers = {o: n for n in graph.node for o in n.output}
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    skipped = 0
    for node in graph.node:
        for k, name in enumerate(node.input):
            cast = producers.get(name)
            if cast is None or cast.op_type != "Cast" or cast.attribute[0].i != FLOAT:
                continue
            narrow = producers.get(cast.input[0])
            if narrow is not None and narrow.op_type == "Cast" and narrow.attribute[0].i == FLOAT16 \
                    and types.get(narrow.input[0]) == FLOAT:
                node.input[k] = narrow.input[0]
                skipped += 1
    return skipped


def _fp16_qdq(proto) -> None:
    """Fold the converter's fp16<->fp32 Casts around Q/DQ into fp16 scales (in place)."""
    from onnx import TensorProto, numpy_helper

    graph = proto.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in graph.initializer}
    halves: dict[str, str] = {}

    def fp16_scale(name: str) -> str:
        if name not in halves:
            half = numpy_helper.from_array(numpy_helper.to_array(inits[name]).astype("float16"), name + "__fp16")
            graph.initializer.append(half)
            halves[name] = half.name
        return halves[name]

    def is_cast(node, to: int) -> bool:
        return node is not None and node.op_type == "Cast" and node.attribute[0].i == to

    graph_outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            cast = producers.get(node.input[0])
            if is_cast(cast, FLOAT) and types.get(cast.input[0]) == FLOAT16:
                node.input[0] = cast.input[0]
                node.input[1] = fp16_scale(node.input[1])
        elif node.op_type == "DequantizeLinear":
            users = consumers.get(node.output[0], [])
            if users and node.output[0] not in graph_outputs and all(is_cast(u, FLOAT16) for u in users):
                for cast in users:  # the casts' readers read the DQ itself
                    for reader in consumers.get(cast.output[0], []):
                        reader.input[:] = [node.output[0] if i == cast.output[0] else i for i in reader.input]
                node.input[1] = fp16_scale(node.input[1])
                types[node.output[0]] = FLOAT16
                for v in graph.value_info:
                    if v.name == node.output[0]:
                        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    _drop_dead_casts(proto)


def _drop_dead_casts(proto) -> None:
    """Remove Casts that nothing reads any more (repeated: a cast may feed only another dead one)."""
    graph = proto.graph
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in read]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)


def lower(model: Any, recipe: Recipe, input_hw: tuple[int, int], workdir: Path,
          calibration: CalibrationData | None, progress: Callable[[str], None], pipeline: str = "auto") -> Lowered:
    """Write `model.onnx` (+ `model.onnx.data` past 2 GB) for a `tensorrt` recipe of the onnx target."""
    import onnx

    from . import onnx as target

    task = model.sapiens_info.task
    dtype = recipe.weights.dtype
    out = workdir / target.MODEL_FILE
    options: dict[str, Any] = {"delegate": "tensorrt", "exporter": f"torch.onnx.export(dynamo=True), opset "
                               f"{EXPORT_OPSET}, then export.onnx_tensorrt", "rewrites": list(recipe.rewrites),
                               "simplifier": "onnxslim"}
    if dtype is WeightDtype.INT8:
        calibration = require_calibration(recipe, calibration)
        extra = (*calibration.keep_float, *SYMMETRIC_KEEP_FLOAT.get(task, ()))
        with scratch_dir(workdir.parent, "sapiens-onnx") as tmp:
            fp32_path = Path(tmp) / "fp32.onnx"
            if is_streamed(recipe, model.sapiens_info.params, pipeline):  # large models: one copy of the weights
                proto, done, rounding = write_int8_source(model, recipe, input_hw, fp32_path, EXPORT_OPSET,
                                                          calibration, progress)
                keep = float_nodes(proto, task, extra)  # parameter-named initializers
                big = done["external_data"]
                options.update({"pipeline": "streamed", "simplifier": None, **done})
            else:
                source, rounding = prepare_static_int8(model, recipe, calibration, progress)
                drop_weights(model)
                digests: dict[str, str] = {}
                _, proto = target.to_onnx_fp32(source, input_hw, task, exact_rope=False, progress=progress,
                                               digests=digests, opset=EXPORT_OPSET)
                del source
                keep = float_nodes(proto, task, extra, weight_sources(proto, digests))
                big = not target._small_enough_to_measure(proto)
                target.save(proto, fp32_path)
            outputs = target.graph_output_specs(proto)
            keep += attention_matmuls(proto)
            del proto
            release_memory()  # the graph is on disk now; calibration and the quantizer reload it
            options["quantization"] = _quantize(fp32_path, out, big, recipe, calibration, keep, progress)
        options["weight_rounding"] = rounding
        options["rope"] = "fp32"
        opset = INT8_OPSET
    elif is_streamed(recipe, model.sapiens_info.params, pipeline):  # large models: one copy of the weights
        half = dtype is WeightDtype.FP16
        require_memory(f"exporting {model.sapiens_info.name} to ONNX ({recipe.name}, streamed)",
                       peak_estimate(model.sapiens_info.params, recipe))
        if half:
            module = fp16_program(model, recipe.rewrites)
        else:
            module = model if getattr(model, "sapiens_disposable", False) else copy.deepcopy(model)
            for name in recipe.rewrites:
                REWRITES[name](module)
        proto, done = write_streamed(module, model, input_hw, out, EXPORT_OPSET, exact_rope=not half,
                                     rope_rounding="arith", progress=progress)
        del module
        downgrade_to_17(proto)
        save_graph(proto, out)
        outputs = target.graph_output_specs(proto)
        del proto
        options.update({"pipeline": "streamed", "simplifier": None, **done,
                        "rope": "fp16" if half else "bf16-exact (fp32 arithmetic rounding)"})
        if half:
            options["fp16"] = FP16_OPTIONS
        opset = OPSET
    else:
        half = dtype is WeightDtype.FP16
        source = fp16_program(model, recipe.rewrites) if half else model
        # fp32: RoPE bit-exact to the bf16 reference, its rounding done in fp32 arithmetic (no bf16 Casts).
        _, proto = target.to_onnx_fp32(source, input_hw, task, rewrites=() if half else recipe.rewrites,
                                          exact_rope=not half, rope_rounding="arith", progress=progress,
                                          opset=EXPORT_OPSET)
        del source
        downgrade_to_17(proto)
        outputs = target.graph_output_specs(proto)
        options["rope"] = "fp16" if half else "bf16-exact (fp32 arithmetic rounding)"
        if half:
            options["fp16"] = FP16_OPTIONS
        progress("checking and saving ...")
        target.save(proto, out)
        del proto
        opset = OPSET
    release_memory()
    options["opset"] = opset
    options["ops"] = op_counts(onnx.load(str(out), load_external_data=False))
    h, w = input_hw
    return Lowered(target.MODEL_FILE, [TensorSpec(INPUT_NAME, [1, 3, h, w], "float32")], outputs,
                   target.export_versions(options), options)


def _quantize(fp32_path: Path, out: Path, big: bool, recipe: Recipe, calibration: CalibrationData, keep: list[str],
              progress: Callable[[str], None]) -> dict[str, Any]:
    """Calibrate and quantize the fp32 graph (opset 18) to TensorRT's explicit int8, then the rest to fp16."""
    import onnx

    from sapiens_edge.quantize import onnx_ptq

    from . import onnx as target

    int8_path = fp32_path.with_name("int8.onnx")  # beside it, in the caller's scratch folder
    method = calibration.method or recipe.default_calibration_method
    info = onnx_ptq.quantize_static(fp32_path, int8_path, INPUT_NAME, calibration.batches, calibration.count,
                                    method=method, op_types=onnx_ptq.STATIC_OPS, external_data=big,
                                    nodes_to_exclude=keep, progress=progress, symmetric_int8=True)
    progress("converting the unquantized part to fp16 ...")
    # Typed: the fp16 converter places its Casts by the value infos (the quantizer's tensors have none).
    # By path: the weights stay on disk, so this works past 2 GB.
    onnx.shape_inference.infer_shapes_path(str(int8_path), str(int8_path))
    quantized = onnx.load(str(int8_path))
    target.save(quantized_to_fp16(_check_opset_19(quantized)), out)
    info.update({"kept_float": keep, "float_compute": "float16 (norm statistics and softmax float32)",
                 "qdq_scales": "float16"})
    return info


def _check_opset_19(proto) -> Any:
    """RuntimeError unless every op the graph uses reads the same at opset 19 as at 18 (`_SAME_AT_19`)."""
    from onnx import defs

    changed = {n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx")
               and defs.get_schema(n.op_type, INT8_OPSET).since_version == INT8_OPSET} - _SAME_AT_19
    if changed:
        raise RuntimeError(f"Ops revised at opset 19 in the int8 graph: {', '.join(sorted(changed))}; check them and "
                           f"add them to export.onnx_tensorrt._SAME_AT_19 (a bug: please report it).")
    return proto
