"""OpenVINO target: the captured program -> OpenVINO IR (`model.xml` + `model.bin`), with OpenVINO's own
converter (`openvino.convert_model`) and `openvino.save_model`.

* Conversion: from our `torch.export` capture (bf16-exact RoPE for fp32, as every target), through
  OpenVINO's FX decoder built here rather than inside `convert_model`: the decoder's graph names each
  OpenVINO op after its FX node ("linear_3/aten.linear.default/MatMul"), and the FX node's
  `nn_module_stack` gives the layer it belongs to, which is how the keep-float policy becomes NNCF's
  ignored scope. Static shapes (the artifact's fixed input size). No rewrites: OpenVINO fuses
  attention (ScaledDotProductAttention) and RMSNorm itself.
* Precision: the IR holds fp32 (openvino-fp32) or fp16-compressed weights (openvino-fp16: half the
  file; OpenVINO decompresses them at load). The *compute* precision is OpenVINO's inference
  precision hint, which the manifest records (`export_options.inference_precision`) and the runtime
  backend applies: "f32" (exact), or "reduced": bf16 on CPUs with AVX512-BF16/AMX, fp16 on GPUs and
  NPUs (runtime.backends.openvino_backend resolves it per device and says what it chose).
* int8 (openvino-int8): NNCF post-training quantization (`nncf.quantize`, transformer model type) on
  our calibration sets, after what makes our other int8 recipes accurate: the FFN rotation
  (`rotate_ffn_input`) and GPTQ-rounded block weights (`prepare_static_int8`), which NNCF's symmetric
  per-channel weight grid (scale max|w| / 127) reproduces exactly; the layers `quantize.policy` keeps
  float are NNCF's ignored scope; SmoothQuant off (it would rescale the weights off that grid). The float
  parts compute in fp32 (hint "f32"): in bf16 they took 0.1b seg from 98.8 % to 97.7 % pixel agreement,
  under the int8 gate (docs/targets/openvino.md#measured).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import require
from sapiens_edge.manifest import TensorSpec

from .capture import capture, output_specs, prepare_static_int8
from .recipes import ActivationKind, Recipe, WeightDtype
from .target_table import require_calibration, tool_versions
from .targets import INPUT_NAME, OUTPUT_NAMES, CalibrationData, Lowered, output_names

MODEL_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
# The inference precision hint per recipe precision (the runtime backend's `inference_precision` overrides it).
HINTS = {"fp32": "f32", "fp16": "reduced", "int8": "f32"}
# OpenVINO ops that carry a layer's weights: what NNCF quantizes and what the ignored scope names.
WEIGHTED_OPS = ("MatMul", "Convolution", "ConvolutionBackpropData", "GroupConvolution")


def layer_of_nodes(graph_module: Any) -> dict[str, str]:
    """FX node name -> the module path of the layer it was traced in (its innermost `nn_module_stack` entry)."""
    out = {}
    for node in graph_module.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op == "call_function" and stack:
            out[node.name] = list(stack.values())[-1][0]
    return out


def weighted_ops(ov_model: Any, layers: dict[str, str]) -> list[tuple[str, str]]:
    """(OpenVINO op name, layer path) of each weighted op of `ov_model` (see WEIGHTED_OPS)."""
    out = []
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() in WEIGHTED_OPS:
            name = op.get_friendly_name()
            out.append((name, layers.get(name.split("/")[0], "")))
    return out


def _weight_source(op: Any) -> Any:
    """The Constant behind a weighted op's weight input (through Convert / Multiply / Reshape chains)."""
    node = op.input_value(1).get_node()
    while node.get_type_name() != "Constant" and node.get_input_size() > 0:
        node = node.input_value(0).get_node()
    return node


def weight_types(ov_model: Any) -> dict[str, dict[str, int]]:
    """{op type: {element type: layers}} of the weighted ops' stored weights (what the manifest reports
    and the tests read: i8 for quantized layers, f16 for compressed ones, f32)."""
    out: dict[str, dict[str, int]] = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() in WEIGHTED_OPS:
            kind = _weight_source(op).get_output_element_type(0).get_type_name()
            entry = out.setdefault(op.get_type_name(), {})
            entry[kind] = entry.get(kind, 0) + 1
    return out


def _name_io(ov_model: Any, task: str) -> None:
    """Our tensor names on the IR's input and outputs (the converter names them after FX nodes)."""
    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME})
    for port, name in zip(ov_model.outputs, OUTPUT_NAMES[task], strict=True):
        port.get_tensor().set_names({name})


def _range_estimator(method: str) -> Any:
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as S

    return {"mean-minmax": S.MEAN_MINMAX, "minmax": S.MINMAX, "mean-quantile": S.MEAN_QUANTILE}[method]


def quantize(ov_model: Any, batches: Callable[[], Iterable[np.ndarray]], count: int, method: str,
             ignored: list[str], progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """NNCF static int8 of `ov_model` on the calibration batches (activation ranges by `method`, one of
    recipes.NNCF_METHODS), the ops `ignored` left float."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    progress(f"NNCF post-training quantization on {count} calibration image(s) ({method}) ...")
    t0 = time.perf_counter()
    # SmoothQuant off: it rescales the weights, which would move the GPTQ-rounded ones off NNCF's grid.
    advanced = AdvancedQuantizationParameters(activations_range_estimator_params=_range_estimator(method),
                                              smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    dataset = nncf.Dataset(list(batches()))  # iterated once per statistics pass
    quantized = nncf.quantize(ov_model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=count,
                              ignored_scope=nncf.IgnoredScope(names=ignored), advanced_parameters=advanced)
    fq = [op for op in quantized.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    return quantized, {"quantizer": f"NNCF {nncf.__version__} post-training quantization (transformer model type)",
                       "weights": "int8 symmetric per output channel",
                       "activations": f"int8 per tensor, calibrated ({method})",
                       "fake_quantize_ops": len(fq), "kept_float": ignored,
                       "seconds": round(time.perf_counter() - t0, 1)}


def lower(model: Any, recipe: Recipe, input_hw: tuple[int, int], workdir: Path,
          calibration: CalibrationData | None, progress: Callable[[str], None]) -> Lowered:
    """Write `model.xml` + `model.bin` for `recipe` into `workdir`."""
    ov = require("openvino", "openvino", "OpenVINO export")
    from openvino.frontend.pytorch.fx_decoder import TorchFXPythonDecoder

    from sapiens_edge.quantize.policy import keep_float_keys

    task = model.sapiens_info.task
    static = recipe.activations.kind is ActivationKind.STATIC_INT8
    fp32 = recipe.weights.dtype is WeightDtype.FP32
    options: dict[str, Any] = {"rewrites": list(recipe.rewrites)}
    if static:
        calibration = require_calibration(recipe, calibration)
        module, options["weight_rounding"] = prepare_static_int8(model, recipe, calibration, progress)
        program = capture(module, input_hw, exact_rope=False, progress=progress)
        del module
    else:
        program = capture(model.eval(), input_hw, rewrites=recipe.rewrites, exact_rope=fp32, progress=progress)
    options["rope"] = "bf16-exact (fp32 ops, rounding casts)" if fp32 else "fp32"
    outputs = output_specs(program, output_names(model, task))
    progress(f"converting to OpenVINO IR with openvino.convert_model ({recipe.precision}) ...")
    t0 = time.perf_counter()
    decoder = TorchFXPythonDecoder.from_exported_program(program, dynamic_shapes=False)
    layers = layer_of_nodes(decoder.pt_module)
    ov_model = ov.convert_model(decoder)
    del program, decoder
    _name_io(ov_model, task)
    if static:
        keep = keep_float_keys(task, calibration.keep_float)
        ops = weighted_ops(ov_model, layers)
        ignored = [name for name, layer in ops if any(k in layer for k in keep)]
        method = calibration.method or recipe.default_calibration_method
        ov_model, options["quantization"] = quantize(ov_model, calibration.batches, calibration.count, method,
                                                     ignored, progress)
        options["quantization"]["weighted_ops"] = len(ops)
    # save_model compresses float weights to fp16 unless told not to: fp16 only (on an int8 model OpenVINO
    # leaves the float layers' weights fp32 anyway).
    ov.save_model(ov_model, str(workdir / MODEL_FILE), compress_to_fp16=recipe.weights.dtype is WeightDtype.FP16)
    options["weights_in_file"] = weight_types(ov.Core().read_model(str(workdir / MODEL_FILE)))
    options["inference_precision"] = HINTS[recipe.precision]
    options["conversion_seconds"] = round(time.perf_counter() - t0, 1)
    h, w = input_hw
    versions = {**tool_versions("torch", "openvino"), **(tool_versions("nncf") if static else {})}
    return Lowered(MODEL_FILE, [TensorSpec(INPUT_NAME, [1, 3, h, w], "float32")], outputs, versions, options)
