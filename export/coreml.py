"""Core ML target: the captured program -> `model.mlpackage` (an ML Program), with coremltools.

* Capture (`capture`): RoPE rotates in plain fp32 (Core ML has no bf16, so the exact rotation's
  rounding casts do not convert) and RMSNorm runs as `MaxScaledRMSNorm` (coremltools' own
  conversion of `aten.rms_norm` scales eps wrongly). coremltools takes ATEN-dialect programs only
  (`run_decompositions({})`), and no bf16 tensor at all, so the RoPE `periods` buffers that the
  frozen tables left unused are cast to fp32.
* Input: by default an image (`ct.ImageType`, RGB 0-255): Core ML subtracts the mean through the
  image bias; ImageType has one scale for all channels, so the per-channel 1/std is a multiply
  inside the model (exact). `input="tensor"` gives the normalized float32 tensor input of the
  other targets instead. Outputs are float32 and named as in every artifact.
* Precision: fp32 or fp16 compute; instance norms (normal/pointmap heads) stay fp32 in fp16
  models: their statistics run over full-resolution maps.
* Compression: int8 weights (linear, symmetric, per output channel) with
  `coremltools.optimize.coreml` on the converted program; palettized weights (k-means LUTs of 4 or
  6 bits, one per group of 16 output channels, the entries each weight takes chosen by GPTQ on the
  calibration set) with `coremltools.optimize.torch` before conversion (its LUTs convert to
  `constexpr_lut_to_dense`), so the measured torch twin is the export. W8A8
  (int8 activations too) is quantized in torch with PT2E (`quantize/pt2e.py`, the calibration sets
  of every int8 recipe) and then converted: Core ML's own activation calibration runs the model,
  which needs macOS.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sapiens_edge import metadata
from sapiens_edge.errors import SapiensEdgeError, require
from sapiens_edge.manifest import TensorSpec

from .capture import capture, output_specs, prepare, prepare_static_int8
from .recipes import ActivationKind, Recipe, WeightDtype
from .target_table import TARGETS, deployment_target, require_calibration
from .targets import INPUT_NAME, OUTPUT_NAMES, CalibrationData, Lowered

MODEL_FILE = "model.mlpackage"
# Ops kept in fp32 inside fp16 models: statistics over full-resolution maps overflow fp16.
FP32_OPS = frozenset({"instance_norm"})
# coremltools warns that torch 2.13 is newer than the torch it was tested with, and that our
# scikit-learn is too new for its (unused) sklearn model converter; neither is actionable here.
logging.getLogger("coremltools").setLevel(logging.ERROR)


class ImageInput(nn.Module):
    """The model behind Core ML's image input: Core ML hands over RGB 0-255 minus the mean (the
    ImageType bias); this multiplies by the per-channel 1/std, which one ImageType scale cannot."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = model
        self.sapiens_info = model.sapiens_info
        self.register_buffer("inv_std", torch.from_numpy(1.0 / metadata.STD_RGB.astype(np.float32)).view(1, 3, 1, 1))

    @property
    def backbone(self) -> nn.Module:  # what capture's RoPE freezing looks for
        return self.inner.backbone

    def forward(self, x: torch.Tensor):
        return self.inner(x * self.inv_std)


def _coremltools():
    return require("coremltools", "coreml", "Core ML export")


def _program(model: nn.Module, recipe: Recipe, input_hw: tuple[int, int], input_kind: str,
             calibration: CalibrationData | None, progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The ATEN-dialect program coremltools converts (PT2E-quantized for W8A8), and what was done."""
    rewrites = recipe.rewrites
    options: dict[str, Any] = {"rewrites": list(rewrites), "rope": "fp32"}
    static_int8 = recipe.activations.kind is ActivationKind.STATIC_INT8
    if static_int8:  # rewritten, GPTQ-rounded copy
        calibration = require_calibration(recipe, calibration)
        module, options["weight_rounding"] = prepare_static_int8(model, recipe, calibration, progress)
    else:
        module = prepare(model, rewrites)
    if recipe.weights.dtype is WeightDtype.PALETTIZED:
        # Palettized in torch, then converted (the LUTs travel as _COREML_ buffers): the exported
        # weights are exactly the torch twin's, which is what gets measured off Apple.
        from sapiens_edge.quantize.coreml_twin import palettize

        module, palettized = palettize(module, recipe, calibration, progress)
        options.update(palettized)
    if input_kind == "image":
        module = ImageInput(module)
    program = capture(module, input_hw, exact_rope=False, progress=progress)
    if static_int8:
        from sapiens_edge.quantize import pt2e
        from sapiens_edge.quantize.policy import keep_float_keys

        method = calibration.method or recipe.default_calibration_method
        keep = keep_float_keys(model.sapiens_info.task, calibration.keep_float)
        batches = calibration.batches
        if input_kind == "image":  # the program takes (pixels - mean): undo the division by std
            std = metadata.STD_RGB.astype(np.float32).reshape(1, 3, 1, 1)
            batches = lambda: (b * std for b in calibration.batches())  # noqa: E731
        program, options["quantization"] = pt2e.quantize_static(program, batches, calibration.count,
                                                                method=method, keep_float=keep,
                                                                user_keep_float=calibration.keep_float,
                                                                progress=progress)
    program = program.run_decompositions({})
    for store in (program.state_dict, program.constants):
        for name, value in list(store.items()):
            if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
                store[name] = value.float()
    return program, options


def _inputs(ct, input_kind: str, input_hw: tuple[int, int]) -> list:
    h, w = input_hw
    if input_kind == "image":
        bias = (-metadata.MEAN_RGB.astype(np.float64)).tolist()
        return [ct.ImageType(name=INPUT_NAME, shape=(1, 3, h, w), scale=1.0, bias=bias,
                             color_layout=ct.colorlayout.RGB)]
    return [ct.TensorType(name=INPUT_NAME, shape=(1, 3, h, w), dtype=np.float32)]


def float_consts(mlmodel, keep: tuple[str, ...]) -> list[str]:
    """The converted program's weight constants that belong to layers the int8 policy keeps in float.
    The converter names a parameter's constant after its path (`p_inner_decode_head_conv_seg_weight_to_fp16`
    for `inner.decode_head.conv_seg.weight`), so the policy's name patterns match with '.' as '_'."""
    keys = [k.replace(".", "_") for k in keep]
    return sorted(op.name for f in mlmodel._mil_program.functions.values() for op in f.operations
                  if op.op_type == "const" and op.name.startswith("p_") and any(k in op.name for k in keys))


def _compress(mlmodel, recipe: Recipe, task: str, progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    import coremltools.optimize.coreml as cto

    from sapiens_edge.quantize.policy import keep_float_keys

    if recipe.weights.dtype is WeightDtype.INT8 and recipe.activations.kind is ActivationKind.FLOAT:
        progress("quantizing weights to int8 (per output channel, symmetric) ...")
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        kept = float_consts(mlmodel, keep_float_keys(task))  # the int8 policy's float layers
        config = cto.OptimizationConfig(global_config=op, op_name_configs={name: None for name in kept})
        out = cto.linear_quantize_weights(mlmodel, config=config)
        return out, {"weights": "int8 linear symmetric, per output channel (coremltools.optimize.coreml)",
                     "kept_fp16": kept}
    return mlmodel, {}  # palettized recipes were compressed in torch (`_program`)


def _user_metadata(model: nn.Module, recipe: Recipe, input_hw: tuple[int, int], input_kind: str) -> dict[str, str]:
    """What the manifest carries that an app reads from the model itself (all values strings)."""
    from .core import task_metadata

    info = model.sapiens_info
    meta = {"sapiens_edge.model": info.name, "sapiens_edge.task": info.task, "sapiens_edge.recipe": recipe.name,
            "sapiens_edge.input_hw": f"{input_hw[0]}x{input_hw[1]}", "sapiens_edge.input": input_kind,
            "sapiens_edge.outputs": ",".join(OUTPUT_NAMES[info.task]),
            "sapiens_edge.normalization": json.dumps({"mean_rgb": metadata.MEAN_RGB.tolist(),
                                                      "std_rgb": metadata.STD_RGB.tolist(), "scale": "0-255"})}
    for key, value in task_metadata(info.task).items():
        meta[f"sapiens_edge.{key}"] = value if isinstance(value, str) else json.dumps(value)
    return meta


def lower(model: Any, recipe: Recipe, input_hw: tuple[int, int], workdir: Path,
          calibration: CalibrationData | None, progress: Callable[[str], None], *,
          input: str | None = None) -> Lowered:
    """Write `model.mlpackage` for `recipe` into `workdir`; `input`: "image" or "tensor" (export.target_table
    declares them; None: the default, image)."""
    ct = _coremltools()
    input_kind = input or TARGETS["coreml"].options["input"][0]
    task = model.sapiens_info.task
    fp16 = recipe.weights.dtype is not WeightDtype.FP32
    ranges = _fp16_ranges(model, input_hw, progress) if fp16 else None
    program, options = _program(model, recipe, input_hw, input_kind, calibration, progress)
    if ranges is not None:
        options["fp16_ranges"] = ranges
    target_name = deployment_target(recipe)
    precision = (ct.transform.FP16ComputePrecision(op_selector=lambda op: op.op_type not in FP32_OPS) if fp16
                 else ct.precision.FLOAT32)
    progress(f"converting to a Core ML ML Program ({'fp16' if fp16 else 'fp32'} compute, {target_name}+) ...")
    names = OUTPUT_NAMES[task]
    mlmodel = ct.convert(program, convert_to="mlprogram", inputs=_inputs(ct, input_kind, input_hw),
                         outputs=[ct.TensorType(name=n, dtype=np.float32) for n in names],
                         compute_precision=precision,
                         minimum_deployment_target=getattr(ct.target, target_name), skip_model_load=True)
    mlmodel, compression = _compress(mlmodel, recipe, task, progress)
    options.update(compression)
    mlmodel.short_description = f"Sapiens2 {model.sapiens_info.name} ({recipe.name}), exported by sapiens-edge"
    mlmodel.user_defined_metadata.update(_user_metadata(model, recipe, input_hw, input_kind))
    options["program"] = describe_program(mlmodel)
    options["input"] = ({"kind": "image", "color": "RGB", "range": "0-255", "normalization": "inside the model "
                         "(ImageType bias = -mean, x 1/std per channel)"} if input_kind == "image"
                        else {"kind": "tensor", "normalization": "by the caller (manifest.normalization)"})
    options["compute_precision"] = ("float16 (instance norms float32)" if fp16 else "float32")
    options["deployment_target"] = target_name
    mlmodel.save(str(workdir / MODEL_FILE))
    outputs = output_specs(program, names)
    h, w = input_hw
    # Predictor.run takes the normalized float32 tensor for every artifact; an image-input model's
    # backend turns it back into pixels (export_options.input says which kind the model has).
    spec = TensorSpec(INPUT_NAME, [1, 3, h, w], "float32")
    return Lowered(MODEL_FILE, [spec], outputs, {"torch": torch.__version__, "coremltools": ct.__version__}, options)


def _fp16_ranges(model: nn.Module, input_hw: tuple[int, int], progress: Callable[[str], None]) -> dict[str, Any]:
    """The activations' fp16 headroom on the bundled photo (`fp16_ranges`); an activation past
    fp16's range would be inf on the device, so that is an error, not a note."""
    from sapiens_edge import runtime
    from sapiens_edge.metadata import bundled_photo

    from .fp16_ranges import FP16_MAX, activation_ranges

    progress("checking fp16 headroom of the activations on a photo ...")
    prepared = runtime.get_processor(model.sapiens_info.task).prepare(runtime.load_image(bundled_photo()),
                                                                       input_hw=input_hw)
    ranges = activation_ranges(model.eval(), torch.from_numpy(np.ascontiguousarray(prepared.inputs, np.float32)))
    progress(f"largest activation {ranges['max_abs']:.4g} at {ranges['where']}: fp16 headroom "
             f"{ranges['headroom']:.3g}x")
    if ranges["max_abs"] >= FP16_MAX:
        raise SapiensEdgeError(f"{model.sapiens_info.name} has activations past fp16's range ({ranges['max_abs']:.4g} "
                               f"at {ranges['where']}): an fp16 Core ML model would compute inf there. Export "
                               f"coreml-fp32 instead.")
    return ranges


def describe_program(mlmodel) -> dict[str, Any]:
    """The ML Program's structure: spec version, inputs/outputs, op counts and how the weights are
    stored (from the MIL program of a converted model, or the spec of a loaded one)."""
    spec = mlmodel.get_spec()
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    ops = Counter(op.type for op in _walk(block.operations))
    return {"spec_version": int(spec.specificationVersion), "opset": function.opset,
            "inputs": [_feature(f) for f in spec.description.input],
            "outputs": [_feature(f) for f in spec.description.output],
            "op_counts": dict(sorted(ops.items())),
            "weight_storage": {op: n for op, n in sorted(ops.items()) if op.startswith("constexpr_")},
            "weight_dtypes": _weight_dtypes(block)}


def _walk(operations):
    for op in operations:
        yield op
        for inner in op.blocks:
            yield from _walk(inner.operations)


def _feature(f) -> dict[str, Any]:
    kind = f.type.WhichOneof("Type")
    if kind == "imageType":
        return {"name": f.name, "type": "image", "height": f.type.imageType.height, "width": f.type.imageType.width}
    arr = f.type.multiArrayType
    from coremltools.proto import FeatureTypes_pb2

    return {"name": f.name, "type": "multiarray", "shape": [int(d) for d in arr.shape],
            "dtype": FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower()}


def _weight_dtypes(block) -> dict[str, int]:
    """How many stored tensors of 2+ dimensions (weights, and the LUTs / scales of compressed ones)
    the program holds per dtype ('float16', 'int8', 'uint4', ...)."""
    from coremltools.proto import MIL_pb2

    counts: Counter[str] = Counter()
    for op in _walk(block.operations):
        if op.type != "const" and not op.type.startswith("constexpr_"):
            continue
        # iOS16/17 programs store them as attributes, iOS18 ones as values bound to the inputs.
        values = [v for k, v in op.attributes.items() if k != "name"]
        values += [a.value for arg in op.inputs.values() for a in arg.arguments if a.WhichOneof("binding") == "value"]
        for value in values:
            t = value.type
            if t.WhichOneof("type") == "tensorType" and len(t.tensorType.dimensions) >= 2:
                counts[MIL_pb2.DataType.Name(t.tensorType.dataType).lower()] += 1
    return dict(sorted(counts.items()))


def app_runtime(workdir: Path, lowered: Lowered) -> dict[str, Any]:
    """The minimum OS of the model (`export.runtime_pins`)."""
    from .runtime_pins import coreml_pins

    return coreml_pins(lowered.options.get("deployment_target"))
