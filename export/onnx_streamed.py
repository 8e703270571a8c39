"""ONNX export of large models (0.8b and up) with one copy of the weights in memory.

The in-memory route (`export.onnx.to_onnx_fp32`) holds the fp32 model, the ONNX ModelProto made from
it, onnxslim's working copy and, for fp16, the converter's output: 4-5x the fp32 weights at its
peak, so a 1b export (5.9 GB of fp32 weights) was killed at 22.4 GB on a 24 GiB machine. This route
instead:

* loads the weights straight into the recipe's storage dtype (fp16: half the bytes, no fp32 copy;
  `loading.load_model(dtype=...)`), applies the rewrites in place on a model `export()` loaded itself;
* converts to fp16 in torch (`model.half()` with fp32 graph input/output casts), so the exporter writes
  the fp16 graph directly: RMSNormalization and LayerNormalization keep fp32 statistics (`stash_type`
  1), the heads' instance norms become LayerNormalization over (H, W) the same way
  (`onnx_instance_norm`), and the `Attention` op's softmax runs in fp32 (`softmax_precision`);
* writes the exporter's in-memory graph (whose initializers reference the torch tensors) to disk
  tensor by tensor, then edits the graph-only ModelProto (`load_external_data=False`) and saves it
  beside its untouched `model.onnx.data`.

onnxslim is not run here: it works on a full in-memory copy of the model. ONNX Runtime applies its own
graph optimisations when it loads the file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from sapiens_edge.memory import GIB, drop_weights, release_memory, require_memory

from . import fused_attention
from .capture import capture
from .onnx import OPSET, PROTOBUF_LIMIT, forget_rewriter_graphs
from .onnx_instance_norm import instance_norm_as_layer_norm
from .recipes import Recipe, WeightDtype
from .rewrites import REWRITES, pretranspose_linears
from .targets import INPUT_NAME, OUTPUT_NAMES

# `--target-option pipeline=auto` streams models above this many parameters: 0.8b and up, where the in-memory
# route's ~5x the fp32 weights (8.1 GiB for 0.4b seg) stops fitting a 16-24 GiB machine.
STREAM_ABOVE_PARAMS = 600_000_000
STREAMED_DTYPES = {WeightDtype.FP32: torch.float32, WeightDtype.FP16: torch.float16}
FLOAT = 1  # onnx.TensorProto.FLOAT
# int8 peaks in GPTQ, with the fp32 model loaded, now that calibration runs part by part (quantize.onnx_parts):
# 1b seg at 1024x768, 7.9 GiB for 5.9 GB of fp32 weights (15.3 GiB when calibration held the whole model;
# docs/design/export-memory.md#int8-of-the-large-models).
INT8_PEAK_PER_FP32_BYTE = 1.3


def is_streamed(recipe: Recipe, params: int, pipeline: str = "auto") -> bool:
    """Whether `recipe` exports a model of `params` parameters on the streamed route (every onnx recipe has
    one: float recipes stream their own graph, int8 ones the fp32 graph they quantize from disk)."""
    if pipeline == "in-memory":
        return False
    return pipeline == "streamed" or params > STREAM_ABOVE_PARAMS


def storage_dtype(recipe: Recipe) -> torch.dtype:
    """The dtype the streamed route holds the weights in: fp16 recipes fp16, the others (int8 quantizes from
    fp32) fp32."""
    return STREAMED_DTYPES.get(recipe.weights.dtype, torch.float32)


def peak_estimate(params: int, recipe: Recipe) -> int:
    """The streamed route's peak resident memory: the stored weights once, half again for the exporter's
    transient tensors, plus the interpreter, torch and the graph (measured: docs/design/export-memory.md).
    int8 recipes peak in GPTQ, at ~1.3x the fp32 weights (measured there)."""
    nbytes = params * storage_dtype(recipe).itemsize
    if recipe.weights.dtype is WeightDtype.INT8:
        return int(INT8_PEAK_PER_FP32_BYTE * nbytes + 2 * GIB)
    return int(1.5 * nbytes + 2 * GIB)


class Fp32IO(nn.Module):
    """The model in its storage dtype behind fp32 input and outputs (the artifacts' I/O contract)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    @property
    def backbone(self) -> nn.Module:  # what rope_constants looks up the token grid on
        return getattr(self.model, "backbone", self.model)

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x.to(self.dtype))
        return tree_map(lambda t: t.float() if isinstance(t, torch.Tensor) else t, out)


def to_onnx_streamed(model: nn.Module, recipe: Recipe, input_hw: tuple[int, int], out: Path,
                     progress: Callable[[str], None]) -> dict[str, Any]:
    """Write `out` (+ `out`.data) for a float `recipe` of the default onnx delegate; returns what was done."""
    info = model.sapiens_info
    dtype = storage_dtype(recipe)
    require_memory(f"exporting {info.name} to ONNX ({recipe.name}, streamed)", peak_estimate(info.params, recipe))
    own = getattr(model, "sapiens_disposable", False)
    module = model if own else copy.deepcopy(model)  # the caller's model is never changed
    for name in recipe.rewrites:
        REWRITES[name](module)
    module = module.to(dtype).eval()  # rewrites may add fp32 modules; the RoPE periods stay bf16
    proto, done = write_streamed(Fp32IO(module, dtype), model, input_hw, out, OPSET,
                                 exact_rope=dtype == torch.float32, progress=progress,
                                 translations=fused_attention.onnx_translation())
    del module
    instance_norms = instance_norm_as_layer_norm(proto)
    attention = _softmax_in_fp32(proto) if dtype == torch.float16 else 0
    save_graph(proto, out)
    options: dict[str, Any] = {"pipeline": "streamed", "simplifier": None, **done,
                               "instance_norms_as_layer_norm": instance_norms}
    if dtype == torch.float16:
        options["fp16"] = {"converter": "torch (model.half(), fp32 graph I/O)", "io": "float32",
                           "norm_statistics": "float32 (stash_type)", "attention_softmax": "float32",
                           "attention_nodes": attention}
    return options


def write_int8_source(model: nn.Module, recipe: Recipe, input_hw: tuple[int, int], out: Path, opset: int,
                      calibration: Any, progress: Callable[[str], None],
                      ) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """Write the fp32 graph an int8 `recipe` quantizes to `out` (+ `out`.data), with one copy of the weights:
    the rewrites and, for static int8 with GPTQ, the rounding applied in place to a model `export()` loaded
    (a caller's model is copied). Initializers keep the parameters' names, which the keep-float policy
    matches. Returns (the graph-only ModelProto, what was done, the weight rounding or None)."""
    from .capture import prepare, prepare_static_int8
    from .recipes import ActivationKind

    info = model.sapiens_info
    require_memory(f"exporting {info.name} to ONNX ({recipe.name}, streamed)", peak_estimate(info.params, recipe))
    own = getattr(model, "sapiens_disposable", False)
    rounding = None
    if recipe.activations.kind is ActivationKind.STATIC_INT8:
        module, rounding = prepare_static_int8(model, recipe, calibration, progress, in_place=own)
    else:
        module = prepare(model, recipe.rewrites, always_copy=True, in_place=own)
        module.sapiens_disposable = True  # the model export() loaded, or our copy: freed once captured
    release_memory()  # the rewrites' replaced weights
    translations = fused_attention.onnx_translation() if "fused_attention" in recipe.rewrites else None
    proto, done = write_streamed(module, module, input_hw, out, opset, exact_rope=False, progress=progress,
                                 translations=translations)
    del module
    instance_norm_as_layer_norm(proto)
    save_graph(proto, out)
    return proto, done, rounding


def write_streamed(module: nn.Module, model: nn.Module, input_hw: tuple[int, int], out: Path, opset: int, *,
                   exact_rope: bool, progress: Callable[[str], None], rope_rounding: str = "cast",
                   translations: dict | None = None) -> tuple[Any, dict[str, Any]]:
    """Capture `module` (the export-ready form of `model`), convert it with the dynamo exporter and write
    `out` (+ `out`.data past 2 GB) tensor by tensor; `model`'s weights are freed once captured when
    `export()` loaded it. Returns (the graph-only ModelProto, with the small initializers loaded, for the
    caller's graph passes and `save_graph`; what was done: external data, pretransposed linears)."""
    import onnx

    linears = pretranspose_linears(module)  # no folded Transpose copy of every weight in the exporter
    release_memory()  # the rewrites' replaced weights
    program = capture(module, input_hw, exact_rope=exact_rope, progress=progress, rope_rounding=rope_rounding)
    drop_weights(model)  # the program holds the (rewritten) weights now; a caller's model is never touched
    progress(f"converting to ONNX (opset {opset}, dynamo exporter, weights streamed to disk) ...")
    names = OUTPUT_NAMES[model.sapiens_info.task]
    onnx_program = torch.onnx.export(program, (torch.zeros(1, 3, *input_hw),), dynamo=True, opset_version=opset,
                                     input_names=[INPUT_NAME], output_names=names, optimize=True, verbose=False,
                                     custom_translation_table=translations)
    del program
    release_memory()
    big = _initializer_bytes(onnx_program) > PROTOBUF_LIMIT
    progress(f"writing {out.name}" + (f" and {out.name}.data" if big else "") + " ...")
    onnx_program.save(str(out), external_data=big)
    del onnx_program
    forget_rewriter_graphs()
    release_memory()
    proto = onnx.load(str(out), load_external_data=False)  # the graph only; the weights stay on disk
    _load_small_tensors(proto, out.parent)
    actual = [o.name for o in proto.graph.output]
    if actual != names:
        raise RuntimeError(f"ONNX export produced outputs {actual}, expected {names} (a bug: please report it).")
    return proto, {"external_data": big, "pretransposed_linears": linears}


def save_graph(proto: Any, out: Path) -> None:
    """Save the edited graph over `out`; external tensors keep their places in the untouched .data file."""
    import onnx

    onnx.save_model(proto, str(out))
    onnx.checker.check_model(str(out))


def _load_small_tensors(proto: Any, folder: Path, limit: int = 4096) -> None:
    """Bring external initializers under `limit` bytes (shapes, axes, scalars) into the graph: graph
    passes read them (e.g. the opset-17 downgrade's axes)."""
    from onnx import TensorProto
    from onnx.external_data_helper import load_external_data_for_tensor

    for tensor in proto.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            length = int(next((e.value for e in tensor.external_data if e.key == "length"), limit + 1))
            if length <= limit:
                load_external_data_for_tensor(tensor, str(folder))
                tensor.data_location = TensorProto.DEFAULT
                del tensor.external_data[:]


def _initializer_bytes(onnx_program: Any) -> int:
    return sum(v.const_value.nbytes for v in onnx_program.model.graph.initializers.values()
               if v.const_value is not None)


def _softmax_in_fp32(proto: Any) -> int:
    """Pin every `Attention` node's softmax to fp32 (its q k^T of fp16 inputs would overflow); returns how many."""
    import onnx

    count = 0
    for node in proto.graph.node:
        if node.op_type == "Attention":
            attrs = [a for a in node.attribute if a.name != "softmax_precision"]
            del node.attribute[:]
            node.attribute.extend([*attrs, onnx.helper.make_attribute("softmax_precision", FLOAT)])
            count += 1
    return count

