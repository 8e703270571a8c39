"""ONNX target: the captured program -> ONNX (opset 23), simplified and checked, then per precision.

* fp32: `torch.onnx.export` of the `torch.export` program (the dynamo exporter: it maps SDPA to the
  opset-23 `Attention` op and RMSNorm to `RMSNormalization`, which ONNX Runtime runs fused; the
  legacy TorchScript exporter spells both out as MatMul/Softmax/ReduceMean chains), simplified with
  onnxslim and checked with `onnx.checker`. Models over 2 GB keep their weights in `model.onnx.data`.
* Every precision: the heads' InstanceNormalization is written as LayerNormalization over (H, W)
  plus the channel affine, the same numbers with a CUDA kernel at opset 23 (`onnx_instance_norm`).
* fp16: ONNX Runtime's float16 converter with fp32 inputs/outputs; those instance norms stay fp32
  (their statistics over 1024x768 maps overflow fp16), RMSNormalization keeps fp32 statistics
  (`stash_type`), and the fused attention's softmax runs in fp32 (`softmax_precision`).
* int8 / int8-dynamic: `export.onnx_int8` (ONNX Runtime's quantizer, from the fp32 graph on disk).
* The `tensorrt` delegate (`tensorrt-*` recipes, opset 17/19 for TensorRT's parser): `onnx_tensorrt`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sapiens_edge.errors import RecipeError, require
from sapiens_edge.manifest import TensorSpec
from sapiens_edge.memory import GIB, drop_weights, release_memory, require_memory
from sapiens_edge.scratch import scratch_dir

from . import fused_attention
from .capture import capture, example_input, prepare_static_int8
from .onnx_float import FP16_KEEP_FP32, decoder_nodes, float_nodes, parameter_digests, to_fp16, weight_sources
from .onnx_instance_norm import instance_norm_as_layer_norm
from .recipes import ActivationKind, Recipe, WeightDtype
from .target_table import delegate_of, require_calibration
from .targets import INPUT_NAME, CalibrationData, Lowered, decodes, output_names

OPSET = 23
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
PROTOBUF_LIMIT = 2**31 - 2**26  # stay clear of protobuf's 2 GiB message cap


def graph_output_specs(proto) -> list[TensorSpec]:
    """The graph's outputs as manifest specs (the dynamo exporter writes static shapes; float32 but for the
    integer class ids of a decoded seg model)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    specs = []
    for o in proto.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in o.type.tensor_type.shape.dim]
        specs.append(TensorSpec(o.name, dims, tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type).name))
    return specs


def to_onnx_fp32(model: Any, input_hw: tuple[int, int], task: str, *, rewrites: tuple[str, ...] = (),
                 exact_rope: bool = True, progress: Callable[[str], None] = lambda _: None,
                 digests: dict[str, str] | None = None, opset: int = OPSET, rope_rounding: str = "cast"):
    """Capture `model` and convert it to a simplified, checked ModelProto (`opset`; fp32 unless the
    model computes in fp16 itself, as `onnx_tensorrt.Fp16Program`). A model
    that `export()` loaded itself has its weights freed once captured (`memory.drop_weights`).
    `digests`, if given, receives `parameter_digests` of the model and then of the captured (rewritten)
    program, for `weight_sources`."""
    import torch

    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export (the dynamo exporter)")
    if digests is not None:
        digests.update(parameter_digests(model.named_parameters()))
    program = capture(model, input_hw, rewrites=rewrites, exact_rope=exact_rope, progress=progress,
                      rope_rounding=rope_rounding)
    if digests is not None:  # parameters only the rewrites create (e.g. rotate_ffn_input's rotations)
        for digest, name in parameter_digests(program.state_dict.items()).items():
            digests.setdefault(digest, name)  # the model's own names first: user patterns name those
    # The program holds its own (rewritten) copy: the original's 1.6 GB (0.4b) would otherwise sit
    # under the conversion and onnxslim, the export's peak.
    drop_weights(model)
    progress(f"converting to ONNX (opset {opset}, dynamo exporter) ...")
    names = output_names(model, task)
    onnx_program = torch.onnx.export(program, (example_input(input_hw),), dynamo=True, opset_version=opset,
                                     input_names=[INPUT_NAME], output_names=names, optimize=True, verbose=False,
                                     custom_translation_table=fused_attention.onnx_translation())
    proto = onnx_program.model_proto
    # The captured program holds the rewritten copy of the model: free it before onnxslim's peak.
    del onnx_program, program
    forget_rewriter_graphs()
    release_memory()
    progress("simplifying the graph (onnxslim) ...")
    proto = _slim(proto)
    forget_rewriter_graphs()
    release_memory()
    instance_norm_as_layer_norm(proto)  # a CUDA kernel at opset 23 (see that module)
    actual = [o.name for o in proto.graph.output]
    if actual != names:
        raise RuntimeError(f"ONNX export produced outputs {actual}, expected {names} (a bug: please report it).")
    return onnx, proto


def forget_rewriter_graphs() -> None:
    """Drop the graphs that the rewriters' module-level pattern matchers keep from their last match.
    onnxscript's (`_graph`, `_match`, `_current_node`): after `torch.onnx.export(optimize=True)`
    that graph is the exported model with every weight (0.9 GiB on 0.1b seg, about 3 GiB on 0.4b).
    onnxslim's (an attribute per pattern node, e.g. `conv_0`): the last matched node leads to its
    whole graph, whose constants still point into the ModelProto given to onnxslim, and one live
    TensorProto keeps that message's entire arena (every weight) alive: 1.6 GiB on 0.4b under
    calibration. Both kinds of matcher set this state afresh on each match. Found through gc.get_objects(),
    which does not list objects a host process moved out of the collector's reach with gc.freeze()."""
    import gc

    try:
        from onnxscript.rewriter._matcher import PatternMatcher
    except ImportError:  # another onnxscript layout: nothing we know to clear
        PatternMatcher = None
    try:
        from onnxslim.core.pattern import PatternMatcher as SlimMatcher
    except ImportError:
        SlimMatcher = None
    for obj in gc.get_objects():
        # By type: isinstance() on a dead weak proxy among gc's objects raises ReferenceError.
        kind = type(obj)
        if PatternMatcher is not None and issubclass(kind, PatternMatcher):
            for attr in ("_graph", "_match", "_current_node", "_tracer"):
                if attr in vars(obj):
                    setattr(obj, attr, None)
        elif SlimMatcher is not None and issubclass(kind, SlimMatcher):
            for attr in getattr(obj, "pattern_dict", {}):
                vars(obj).pop(attr, None)


def _slim(proto):
    try:
        import onnxslim
    except ImportError:  # optional: ORT's own graph optimizations still apply at load time
        return proto
    # Without its shape inference: the exporter's graph already carries every shape, and onnxslim
    # re-infers them (a full copy of the model) after each of its up-to-10 passes: 3.8 GiB peak for a
    # 0.5 GB model, 1.9 GiB without, the same graph out (op for op, on 0.1b seg).
    return onnxslim.slim(proto, no_shape_infer=True)


def save(proto, path: Path) -> None:
    """Save with external data (one `.data` file beside it) when the weights pass protobuf's limit."""
    import onnx

    data = path.with_name(path.name + ".data")
    if not _small_enough_to_measure(proto):
        # onnx appends to an existing data file: a model read from it and saved again (int8's fp16-stored float
        # layers) would keep every old tensor's bytes too (a 1b int8 artifact: 6.2 GB for 2.3 GB of weights).
        if not _reads_external_data(proto):
            data.unlink(missing_ok=True)
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))
        # A model read from external data and saved inline (int8's fp16-stored float layers) leaves the old
        # data file behind: 1.5 GB of stale weights that the artifact would list and ship.
        data.unlink(missing_ok=True)
    onnx.checker.check_model(str(path))  # by path: works with external data too


def _reads_external_data(proto) -> bool:
    """Whether some initializer of `proto` still points into a data file (not loaded into memory)."""
    from onnx import TensorProto

    return any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer)


def _small_enough_to_measure(proto) -> bool:
    """Whether the weights fit in one protobuf message (ByteSize() itself fails past 2 GiB)."""
    return sum(len(t.raw_data) for t in proto.graph.initializer) < PROTOBUF_LIMIT


def load_dtype(recipe: Recipe, params: int, pipeline: str = "auto", **_other_options: str):
    """The dtype `export()` loads the weights in: the streamed route's storage dtype, else fp32 (the other
    target options, opset and contrib_ops, do not change it)."""
    import torch

    from .onnx_streamed import is_streamed, storage_dtype

    return storage_dtype(recipe) if is_streamed(recipe, params, pipeline) else torch.float32


def lower(model: Any, recipe: Recipe, input_hw: tuple[int, int], workdir: Path,
          calibration: CalibrationData | None, progress: Callable[[str], None], pipeline: str = "auto",
          opset: str = str(OPSET), contrib_ops: str = "yes") -> Lowered:
    """Write `model.onnx` (and `model.onnx.data` for big models) for `recipe` into `workdir`; `pipeline`:
    auto streams large float models (`export.onnx_streamed`), or force `in-memory` / `streamed`. `opset`: an
    older ai.onnx opset for an older ONNX Runtime (export.runtime_pins; 17 through `onnx_opset17.downgrade_to_17`),
    `contrib_ops=no`: no com.microsoft ops (the standard attention instead of the fused_attention rewrite)."""
    target_opset = int(opset)
    if delegate_of(recipe) == "tensorrt":
        if target_opset != OPSET or contrib_ops != "yes":
            raise RecipeError(f"{recipe.name} writes opset 17/19 without contrib ops already (for TensorRT); leave out "
                              f"--target-option opset / contrib_ops.")
        from . import onnx_tensorrt

        return onnx_tensorrt.lower(model, recipe, input_hw, workdir, calibration, progress, pipeline)
    from .onnx_streamed import is_streamed, to_onnx_streamed

    if contrib_ops == "no":  # the recipe's rewrites but the one that writes com.microsoft.MultiHeadAttention
        recipe = dataclasses.replace(recipe, rewrites=tuple(r for r in recipe.rewrites if r != "fused_attention"))
    info = model.sapiens_info
    task = info.task
    rewrites = recipe.rewrites
    dtype, activations = recipe.weights.dtype, recipe.activations.kind
    if is_streamed(recipe, info.params, pipeline):
        if target_opset != OPSET or contrib_ops != "yes":
            raise RecipeError(f"--target-option opset / contrib_ops need the in-memory ONNX route, and {info.name} "
                              f"takes the streamed one; add --target-option pipeline=in-memory.")
        if decodes(model):
            raise RecipeError(f"--decode needs the in-memory ONNX route, and {info.name} takes the streamed one; pass "
                              f"--target-option pipeline=in-memory (it needs about 5x the fp32 weights in memory).")
        if dtype is WeightDtype.INT8:
            from .onnx_int8 import lower_streamed

            return lower_streamed(model, recipe, input_hw, workdir, calibration, progress)
        options = {"opset": OPSET, "exporter": "torch.onnx.export(dynamo=True)", "rewrites": list(rewrites),
                   **to_onnx_streamed(model, recipe, input_hw, workdir / MODEL_FILE, progress)}
        return as_lowered(input_hw, workdir / MODEL_FILE, options)
    # The in-memory route peaks at ~5x the fp32 weights (model, ModelProto, onnxslim's copy: 8.1 GiB for
    # 0.4b seg, docs/design/export-memory.md).
    require_memory(f"exporting {info.name} to ONNX ({recipe.name}, in memory)", 5 * info.params * 4 + GIB,
                   "take the streamed route (--target-option pipeline=streamed)")
    exact_rope = dtype is WeightDtype.FP32
    static_int8 = activations is ActivationKind.STATIC_INT8
    if static_int8:
        calibration = require_calibration(recipe, calibration)
    digests: dict[str, str] | None = {} if static_int8 else None
    source, source_rewrites, rounding = model, rewrites, None
    if static_int8:  # rewritten (and GPTQ-rounded) copy; the original's weights are not needed any more
        source, rounding = prepare_static_int8(model, recipe, calibration, progress)
        source_rewrites = ()
        drop_weights(model)
    # The dynamo exporter writes opset 18 at the lowest (export.onnx_tensorrt); 17 is a rewrite of 18.
    _, proto = to_onnx_fp32(source, input_hw, task, rewrites=source_rewrites, exact_rope=exact_rope,
                            progress=progress, digests=digests, opset=max(target_opset, 18))
    del source
    if target_opset == 17:
        from .onnx_opset17 import downgrade_to_17

        downgrade_to_17(proto)
    outputs = graph_output_specs(proto)  # fp32 I/O for every precision
    out = workdir / MODEL_FILE
    options: dict[str, Any] = {"opset": target_opset, "exporter": "torch.onnx.export(dynamo=True)",
                               "rewrites": list(rewrites), "simplifier": "onnxslim",
                               "rope": "bf16-exact (fp32 ops + rounding casts)" if exact_rope else "fp32"}
    with scratch_dir(workdir.parent, "sapiens-onnx") as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        if dtype is WeightDtype.FP32:
            save(proto, out)
        elif dtype is WeightDtype.FP16:
            progress("converting weights and compute to fp16 ...")
            keep = decoder_nodes(proto) if decodes(model) else []
            save(to_fp16(proto, keep), out)
            options["fp16"] = {"converter": "onnxruntime.transformers.float16", "io": "float32",
                               "kept_fp32": list(FP16_KEEP_FP32), "attention_softmax": "float32",
                               "rmsnorm_statistics": "float32", **({"decoding": "float32"} if keep else {})}
        else:  # int8 weights, static or dynamic activations (export.target_table: what onnx lowers)
            # Found on the in-memory graph: `weight_sources` matches the weights' values.
            sources = weight_sources(proto, digests) if digests is not None else {}
            keep = float_nodes(proto, task, calibration.keep_float, sources) if static_int8 else []
            # The decoding stays float, its blur weights fp32 too (not stored fp16 like the kept layers').
            decoding = [n for n in decoder_nodes(proto) if n not in keep] if static_int8 and decodes(model) else []
            save(proto, fp32_path)
            big = not _small_enough_to_measure(proto)
            del proto
            release_memory()  # the graph is on disk now; calibration and the quantizer reload it
            from .onnx_int8 import quantize

            options.update(quantize(fp32_path, out, recipe, calibration, keep, big, progress, decoding))
            options["weight_rounding"] = rounding
    return as_lowered(input_hw, out, options, outputs)


def as_lowered(input_hw: tuple[int, int], out: Path, options: dict[str, Any],
             outputs: list[TensorSpec] | None = None) -> Lowered:
    import onnx

    if outputs is None:
        outputs = graph_output_specs(onnx.load(str(out), load_external_data=False))
    h, w = input_hw
    return Lowered(MODEL_FILE, [TensorSpec(INPUT_NAME, [1, 3, h, w], "float32")], outputs,
                   export_versions(options), options)


def export_versions(options: dict[str, Any]) -> dict[str, str]:
    """The exporting tools' versions for the manifest (`options["simplifier"]` is cleared without onnxslim)."""
    import onnx
    import onnxruntime
    import onnxscript
    import torch

    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
                "onnxruntime": onnxruntime.__version__}
    try:
        import onnxslim

        versions["onnxslim"] = onnxslim.__version__
    except ImportError:
        if options.get("simplifier"):
            options["simplifier"] = None
    return versions


def app_runtime(workdir: Path, lowered: Lowered) -> dict[str, Any]:
    """The ONNX Runtime release the written model needs (`export.runtime_pins`)."""
    from .runtime_pins import onnx_pins

    return onnx_pins(workdir / lowered.model_file)
