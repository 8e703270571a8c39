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
  under the int8 gate (docs/targets/openvino.md#measured). openvino-int8-mixed is the same IR with the
  "reduced" hint: its float parts in bf16/f16 but for the pinned output layers below. openvino-int8-hybrid
  keeps the f32 hint but for attention and the transposed convolutions, which the runtime computes in the
  device's reduced precision (REDUCED_OPS_BY_RECIPE); NNCF leaves its attention float.
* Pinned f32 (every recipe; it only acts under a reduced hint): the output layers (the weighted ops nearest the
  model's outputs, such as seg's classifier conv) and every op after them carry OpenVINO's `precise` runtime
  attribute, which the CPU and GPU plugins honour by keeping the op in f32 whatever the hint, so the outputs
  that decoding reads (argmax, heatmap peaks) are not rounded to bf16's 8 bits. Measured on 0.1b seg at 1024x768,
  int8 linears, bf16 hint, against the peer (OpenVINO's own bf16 conversion) in one run: nothing pinned 98.06 %
  pixel agreement at 1.24x the peer; the output layer pinned 98.09 % at 1.20x; the whole head but its deconvs
  (the rule before) 98.15 % at 1.01x. Pins on the backbone's element-wise ops do nothing: the CPU plugin fuses
  them into bf16 subgraphs. OpenVINO's Python API cannot create that attribute (a Python value under its name is
  ignored), so `pin_f32` writes it into the saved `model.xml`, where the IR reader makes the real one.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import require
from sapiens_edge.manifest import TensorSpec
from sapiens_edge.memory import drop_weights

from .capture import capture, output_specs, prepare_static_int8
from .recipes import ActivationKind, Recipe, WeightDtype
from .target_table import require_calibration, tool_versions
from .targets import INPUT_NAME, OUTPUT_NAMES, CalibrationData, Lowered, output_names

MODEL_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
# The inference precision hint per recipe precision, and where a recipe's name says otherwise (the runtime
# backend's `inference_precision` overrides it).
HINTS = {"fp32": "f32", "fp16": "reduced", "int8": "f32"}
HINTS_BY_RECIPE = {"openvino-int8-mixed": "reduced"}
# Op types a recipe computes in the device's reduced precision inside its f32 hint (the runtime backend converts
# around them, runtime.backends.openvino_reduced): attention and the seg head's transposed convolutions, where
# bf16 costs least agreement for most time (0.4b seg at 1024x768 on a Zen 4: 8.20 s against openvino-int8's 9.45 s,
# 98.01 against 98.10 % pixel agreement; docs/targets/openvino.md#measured). Their attention is left float by NNCF
# (its int8 Q/K/V gain nothing once attention runs in bf16).
REDUCED_OPS_BY_RECIPE = {"openvino-int8-hybrid": ("ScaledDotProductAttention", "ConvolutionBackpropData")}
FLOAT_ATTENTION = "ScaledDotProductAttention"
# Never pinned f32 (pinned_ops): what has no arithmetic to pin.
UNPINNED_TYPES = ("Constant", "Parameter", "Result", "FakeQuantize")
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


def output_layers(ov_model: Any) -> list[Any]:
    """The weighted ops nearest the model's outputs: walking up from each Result through unweighted ops, the
    first weighted op (WEIGHTED_OPS) on every path (the classifier conv of seg, the heatmap conv of pose, the
    scale MLP's last Linear of pointmap)."""
    found: dict[str, Any] = {}
    seen: set[str] = set()
    frontier = [result.input_value(0).get_node() for result in ov_model.get_results()]
    while frontier:
        node = frontier.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() in WEIGHTED_OPS:
            found[node.get_friendly_name()] = node
        else:
            frontier.extend(value.get_node() for value in node.input_values())
    return list(found.values())


def pinned_ops(ov_model: Any) -> list[str]:
    """Names of the ops kept in f32 under a reduced hint: the output layers (`output_layers`) and every op
    downstream of them (bias adds, decoding), not constants (see the module docstring)."""
    frontier = output_layers(ov_model)
    reached = {op.get_friendly_name() for op in frontier}
    while frontier:
        for output in frontier.pop().outputs():
            for consumer in output.get_target_inputs():
                node = consumer.get_node()
                if node.get_friendly_name() not in reached:
                    reached.add(node.get_friendly_name())
                    frontier.append(node)
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops()
            if op.get_friendly_name() in reached and op.get_type_name() not in UNPINNED_TYPES]


def pin_f32(xml_path: Path, names: Iterable[str]) -> int:
    """Give the layers `names` of the IR at `xml_path` OpenVINO's `precise` runtime attribute (kept in f32
    under any inference precision hint); the file is replaced atomically. Returns how many were pinned."""
    wanted = set(names)
    tree = ET.parse(xml_path)
    pinned = 0
    for layer in tree.getroot().iter("layer"):
        if layer.get("name") not in wanted:
            continue
        rt_info = layer.find("rt_info")
        if rt_info is None:
            rt_info = ET.Element("rt_info")
            layer.insert(0, rt_info)
        if not any(a.get("name") == "precise" for a in rt_info.iter("attribute")):
            ET.SubElement(rt_info, "attribute", {"name": "precise", "version": "0"})
        pinned += 1
    tmp = xml_path.with_name(f".{xml_path.name}.tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, xml_path)
    return pinned


def _name_io(ov_model: Any, task: str) -> None:
    """Our tensor names on the IR's input and outputs (the converter names them after FX nodes)."""
    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME})
    for port, name in zip(ov_model.outputs, OUTPUT_NAMES[task], strict=True):
        port.get_tensor().set_names({name})


def _range_estimator(method: str) -> Any:
    """NNCF's estimator for `method` (mean-quantile's quantiles computed in the graph: see quantize())."""
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as S

    return {"mean-minmax": S.MEAN_MINMAX, "minmax": S.MINMAX, "mean-quantile": S.MEAN_QUANTILE}[method]


def quantize(ov_model: Any, batches: Callable[[], Iterable[np.ndarray]], count: int, method: str,
             ignored: list[str], progress: Callable[[str], None],
             ignored_types: tuple[str, ...] = ()) -> tuple[Any, dict[str, Any]]:
    """NNCF static int8 of `ov_model` on the calibration batches (activation ranges by `method`, one of
    recipes.NNCF_METHODS), the ops `ignored` and those of `ignored_types` left float."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    from sapiens_edge.quantize.openvino_ranges import in_graph_quantiles, statistics_beside_producers

    progress(f"NNCF post-training quantization on {count} calibration image(s) ({method}) ...")
    t0 = time.perf_counter()
    # SmoothQuant off: it rescales the weights, which would move the GPTQ-rounded ones off NNCF's grid.
    advanced = AdvancedQuantizationParameters(activations_range_estimator_params=_range_estimator(method),
                                              smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    dataset = nncf.Dataset(list(batches()))  # iterated once per statistics pass
    # NNCF's own quantiles hold every activation of an image at once (0.4b: 15.8 GiB): ours reduce in the graph.
    # And its statistics model runs each reduction beside the activation it reads, not after the whole network.
    with in_graph_quantiles(), statistics_beside_producers(ov_model):
        quantized = nncf.quantize(ov_model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=count,
                                  ignored_scope=nncf.IgnoredScope(names=ignored, types=list(ignored_types)),
                                  advanced_parameters=advanced)
    fq = [op for op in quantized.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    return quantized, {"quantizer": f"NNCF {nncf.__version__} post-training quantization (transformer model type)",
                       "weights": "int8 symmetric per output channel",
                       "activations": f"int8 per tensor, calibrated ({method})",
                       "fake_quantize_ops": len(fq), "kept_float": ignored,
                       **({"kept_float_types": list(ignored_types)} if ignored_types else {}),
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
        # GPTQ in place on a model export() loaded itself (a caller's is copied): one fp32 copy fewer under
        # NNCF (0.4b at 1024x768: 9.3 GiB peak with the copy, against the 8 GiB budget).
        module, options["weight_rounding"] = prepare_static_int8(
            model, recipe, calibration, progress, in_place=getattr(model, "sapiens_disposable", False))
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
    drop_weights(model)  # the torch weights, if export() loaded them, before NNCF's copies of the IR
    _name_io(ov_model, task)
    if static:
        keep = keep_float_keys(task, calibration.keep_float)
        ops = weighted_ops(ov_model, layers)
        ignored = [name for name, layer in ops if any(k in layer for k in keep)]
        method = calibration.method or recipe.default_calibration_method
        reduced = REDUCED_OPS_BY_RECIPE.get(recipe.name, ())
        float_types = (FLOAT_ATTENTION,) if FLOAT_ATTENTION in reduced else ()
        ov_model, options["quantization"] = quantize(ov_model, calibration.batches, calibration.count, method,
                                                     ignored, progress, float_types)
        options["quantization"]["weighted_ops"] = len(ops)
    pinned = pinned_ops(ov_model)
    # save_model compresses float weights to fp16 unless told not to: fp16 only (on an int8 model OpenVINO
    # leaves the float layers' weights fp32 anyway).
    ov.save_model(ov_model, str(workdir / MODEL_FILE), compress_to_fp16=recipe.weights.dtype is WeightDtype.FP16)
    options["pinned_f32"] = {"layers": "the output layers and downstream",
                             "ops": pin_f32(workdir / MODEL_FILE, pinned)}
    options["weights_in_file"] = weight_types(ov.Core().read_model(str(workdir / MODEL_FILE)))
    options["inference_precision"] = HINTS_BY_RECIPE.get(recipe.name, HINTS[recipe.precision])
    if recipe.name in REDUCED_OPS_BY_RECIPE:
        options["reduced_ops"] = list(REDUCED_OPS_BY_RECIPE[recipe.name])
    options["conversion_seconds"] = round(time.perf_counter() - t0, 1)
    h, w = input_hw
    versions = {**tool_versions("torch", "openvino"), **(tool_versions("nncf") if static else {})}
    return Lowered(MODEL_FILE, [TensorSpec(INPUT_NAME, [1, 3, h, w], "float32")], outputs, versions, options)
