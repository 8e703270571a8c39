"""Export recipes as data: a table keyed by stable names (`onnx-int8`, ...), each with its target,
precision, calibration needs and the validation thresholds the quantized-accuracy gate applies.

Torch-free, so `sapiens-edge recipes` and the validator can read it anywhere.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from sapiens_edge.errors import RecipeError
from sapiens_edge.zoo import ModelInfo

# Task-metric limits. Keys: <metric>_<min|max>. Metrics are defined in sapiens_edge.validation.
TIGHT = {
    "tensor": {"cosine_min": 0.99999, "rel_l2_max": 1e-3},
    "pose": {"keypoint_err_px_max": 0.05, "pck_min": 0.999},
    "seg": {"pixel_agreement_min": 0.999, "miou_min": 0.99},
    "normal": {"angle_mean_deg_max": 0.1, "angle_median_deg_max": 0.05},
    "pointmap": {"depth_rel_err_max": 1e-3},
}
FP16 = {
    "tensor": {"cosine_min": 0.9995, "rel_l2_max": 3e-2},
    "pose": {"keypoint_err_px_max": 0.25, "pck_min": 0.99},
    "seg": {"pixel_agreement_min": 0.99, "miou_min": 0.95},
    "normal": {"angle_mean_deg_max": 1.0, "angle_median_deg_max": 0.5},
    "pointmap": {"depth_rel_err_max": 1e-2},
}
INT8 = {  # issue #4: seg pixel agreement >= 98 %, pose mean keypoint error <= 1 heatmap px
    "tensor": {"cosine_min": 0.98},
    "pose": {"keypoint_err_px_max": 1.0, "pck_min": 0.95},
    "seg": {"pixel_agreement_min": 0.98, "miou_min": 0.85},
    "normal": {"angle_mean_deg_max": 5.0, "angle_median_deg_max": 3.0},
    "pointmap": {"depth_rel_err_max": 0.05},
}

# Palettized weights (4/6-bit LUTs) move every weight further than int8 does: looser limits than
# int8's. On the (hypersensitive) 0.1b seg stand-in the torch twins give 95.8 % (6-bit, passes) and
# 83.5 % (4-bit, fails): README, Core ML.
PALETTIZED = {
    "tensor": {"cosine_min": 0.95},
    "pose": {"keypoint_err_px_max": 2.0, "pck_min": 0.85},
    "seg": {"pixel_agreement_min": 0.95, "miou_min": 0.80},
    "normal": {"angle_mean_deg_max": 8.0, "angle_median_deg_max": 5.0},
    "pointmap": {"depth_rel_err_max": 0.08},
}


@dataclass(frozen=True)
class Recipe:
    name: str
    target: str  # module under sapiens_edge.export that lowers it
    precision: str
    description: str
    needs_calibration: bool = False
    requires: tuple[str, ...] = ()  # python modules that must be importable
    extra: str = ""  # pip extra that provides them
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    min_size: str | None = None  # largest sizes may be excluded per target
    max_params: int | None = None
    calibration_methods: tuple[str, ...] = ()  # selectable with --calibration-method; first is the default

    @property
    def default_calibration_method(self) -> str | None:
        return self.calibration_methods[0] if self.calibration_methods else None

    def thresholds_for(self, task: str) -> dict[str, float]:
        return {**self.thresholds.get("tensor", {}), **self.thresholds.get(task, {})}


_ONNX = ("onnx", "onnxruntime", "onnxscript")
_COREML = ("coremltools",)
# Core ML: RMSNorm in an exact, overflow-safe form (coremltools' rms_norm scales eps wrongly).
_COREML_OPTS = {"rewrites": ("scaled_norms",)}
_EXECUTORCH = ("executorch",)
# XNNPACK has no fused attention: matmul + softmax + matmul stays inside the delegate.
# Norms as linear / spatial-mean forms XNNPACK lowers (its mean is 4-D spatial only).
_ET_REWRITES = {"rewrites": ("subpixel_deconv", "split_swiglu", "explicit_attention", "delegate_norms")}
# ConvTranspose2d(k4, s2) -> Conv2d + pixel shuffle (export.rewrites): ONNX Runtime's ConvTranspose
# has no int8 kernel and runs at half the GEMM rate of its Conv.
# Attention -> com.microsoft.MultiHeadAttention in token-major layout (export.fused_attention): no
# transposes around it and ONNX Runtime's tiled kernel: 1.45x faster than the opset-23 Attention on one
# CPU measured, 0.91x on another (README). fp16 keeps the standard op, whose softmax precision can be pinned to fp32.
# SwiGLU's fused gate/value projection -> two Linears (no Split of the widest activation).
_ONNX_REWRITES = {"rewrites": ("subpixel_deconv", "split_swiglu", "fused_attention")}
_ONNX_FP16_REWRITES = {"rewrites": ("subpixel_deconv", "split_swiglu")}
_TFLITE = ("litert_torch", "ai_edge_litert")
# As for ExecuTorch: every op inside XNNPACK (LiteRT's CPU delegate); GQA's kv expansion as a concat.
_TFLITE_OPTS = {"rewrites": (*_ET_REWRITES["rewrites"], "concat_kv")}
# Static int8 (calibrated per-tensor activations): SwiGLU's down projection reads a Hadamard-rotated
# input (export.rewrites.rotate_ffn_input), its heavy-tailed activations being the largest int8 error.
# And the transformer blocks' weights are rounded onto the int8 grid by GPTQ on the calibration set
# (quantize.gptq): round-to-nearest weights were the other large error (1.5 points on 0.4b seg alone).
_GPTQ = {"weight_rounding": "gptq"}
_ONNX_INT8_REWRITES = {"rewrites": (*_ONNX_REWRITES["rewrites"], "rotate_ffn_input"), **_GPTQ}
_ET_INT8_REWRITES = {"rewrites": (*_ET_REWRITES["rewrites"], "rotate_ffn_input"), **_GPTQ}
_TFLITE_INT8_OPTS = {"rewrites": (*_TFLITE_OPTS["rewrites"], "rotate_ffn_input"), **_GPTQ}
RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("onnx-fp32", "onnx", "fp32", "ONNX, fp32 weights and compute; ONNX Runtime CPU/GPU",
           requires=_ONNX, extra="onnx", thresholds=TIGHT, options=_ONNX_REWRITES),
    Recipe("onnx-fp16", "onnx", "fp16", "ONNX, fp16 weights and compute with fp32 I/O and fp32 norms "
           "and softmax; for GPU / Jetson", requires=_ONNX, extra="onnx", thresholds=FP16,
           options=_ONNX_FP16_REWRITES),
    Recipe("onnx-int8", "onnx", "int8", "ONNX static QDQ int8: per-channel symmetric weights, calibrated "
           "activations (ONNX Runtime quantizer)", needs_calibration=True, requires=_ONNX, extra="onnx",
           thresholds=INT8, options=_ONNX_INT8_REWRITES,
           calibration_methods=("percentile", "minmax", "entropy")),
    Recipe("onnx-int8-dynamic", "onnx", "int8-dynamic", "ONNX dynamic int8: int8 weights, activations "
           "quantized at run time (no calibration)", requires=_ONNX, extra="onnx", thresholds=INT8,
           options=_ONNX_REWRITES),
    Recipe("executorch-xnnpack-fp32", "executorch", "fp32", "ExecuTorch .pte, fp32, XNNPACK delegate (Android/iOS CPU)",
           requires=_EXECUTORCH, extra="executorch", thresholds=TIGHT, options=_ET_REWRITES),
    Recipe("executorch-xnnpack-fp16", "executorch", "fp16", "ExecuTorch .pte, fp16 compute with fp32 I/O, XNNPACK "
           "delegate (ARMv8.2+ phones)", requires=_EXECUTORCH, extra="executorch", thresholds=FP16,
           options=_ET_REWRITES),
    Recipe("executorch-xnnpack-int8", "executorch", "int8", "ExecuTorch .pte, PT2E static int8 (XNNPACK quantizer: "
           "per-channel symmetric weights, calibrated activations), XNNPACK delegate", needs_calibration=True,
           requires=(*_EXECUTORCH, "torchao"), extra="executorch", thresholds=INT8,
           options=_ET_INT8_REWRITES, calibration_methods=("histogram", "minmax")),
    Recipe("executorch-xnnpack-int8-dynamic", "executorch", "int8", "ExecuTorch .pte, PT2E int8: GPTQ-rounded "
           "per-channel weights; the transformer's linears quantize their activations per inference (XNNPACK qd8, "
           "fp32 outputs), convs calibrated static; XNNPACK delegate", needs_calibration=True,
           requires=(*_EXECUTORCH, "torchao"), extra="executorch", thresholds=INT8,
           options={**_ET_INT8_REWRITES, "dynamic_layers": ("backbone.blocks",)},
           calibration_methods=("histogram", "minmax")),
    Recipe("executorch-coreml-fp16", "executorch", "fp16", "ExecuTorch .pte with the Core ML delegate, fp16 "
           "(iOS 17+ / macOS 14+: runs on Apple devices only, exported anywhere)",
           requires=(*_EXECUTORCH, "coremltools"), extra="executorch", thresholds=FP16,
           options={"delegate": "coreml", "deployment_target": "iOS17",
                    "rewrites": ("subpixel_deconv", "split_swiglu", "scaled_norms")}),
    Recipe("coreml-fp32", "coreml", "fp32", "Core ML ML Program, fp32 compute (Mac CPU/GPU reference), iOS 16+",
           requires=_COREML, extra="coreml", thresholds=TIGHT, options={**_COREML_OPTS, "deployment_target": "iOS16"}),
    Recipe("coreml-fp16", "coreml", "fp16", "Core ML ML Program, fp16 compute (Neural Engine / GPU), iOS 16+",
           requires=_COREML, extra="coreml", thresholds=FP16, options={**_COREML_OPTS, "deployment_target": "iOS16"}),
    Recipe("coreml-int8", "coreml", "int8-weights", "Core ML, fp16 compute on int8 weights (linear, symmetric, "
           "per output channel; coremltools.optimize), iOS 16+", requires=_COREML, extra="coreml", thresholds=INT8,
           options={**_COREML_OPTS, "deployment_target": "iOS16", "weights": "int8"}),
    Recipe("coreml-w8a8", "coreml", "int8", "Core ML, int8 weights and activations (PT2E static, calibrated), "
           "iOS 17+", needs_calibration=True, requires=(*_COREML, "executorch", "torchao"), extra="coreml",
           thresholds=INT8, options={**_COREML_OPTS, "deployment_target": "iOS17", "activations": "int8", **_GPTQ},
           calibration_methods=("histogram", "minmax")),
    Recipe("coreml-palettized-6bit", "coreml", "palettized-6bit", "Core ML, fp16 compute on 6-bit palettized weights "
           "(k-means LUT per 16 output channels, entries chosen by GPTQ on the calibration set), iOS 18+",
           needs_calibration=True, requires=_COREML, extra="coreml", thresholds=PALETTIZED,
           options={**_COREML_OPTS, "deployment_target": "iOS18", "weights": "palettized-6bit", "group_size": 16,
                    **_GPTQ}),
    Recipe("coreml-palettized-4bit", "coreml", "palettized-4bit", "Core ML, fp16 compute on 4-bit palettized weights "
           "(k-means LUT per 16 output channels, entries chosen by GPTQ on the calibration set), iOS 18+",
           needs_calibration=True, requires=_COREML, extra="coreml", thresholds=PALETTIZED,
           options={**_COREML_OPTS, "deployment_target": "iOS18", "weights": "palettized-4bit", "group_size": 16,
                    **_GPTQ}),
    Recipe("tflite-fp32", "tflite", "fp32", "TFLite (LiteRT) flatbuffer, fp32, NHWC; LiteRT with XNNPACK "
           "(Raspberry Pi, Android CPU)", requires=_TFLITE, extra="tflite", thresholds=TIGHT, options=_TFLITE_OPTS),
    Recipe("tflite-fp16", "tflite", "fp16", "TFLite, fp16 weights (half the file), fp32 compute on CPU; NHWC",
           requires=_TFLITE, extra="tflite", thresholds=FP16, options=_TFLITE_OPTS),
    Recipe("tflite-int8-dynamic", "tflite", "int8-dynamic", "TFLite, int8 per-channel weights, activations "
           "quantized per inference (dynamic-range kernels, no calibration); NHWC", requires=_TFLITE,
           extra="tflite", thresholds=INT8, options=_TFLITE_OPTS),
    Recipe("tflite-int8", "tflite", "int8", "TFLite, PT2E static int8 (per-channel symmetric weights, calibrated "
           "activations), float I/O; NHWC", needs_calibration=True, requires=(*_TFLITE, "torchao"), extra="tflite",
           thresholds=INT8, options=_TFLITE_INT8_OPTS, calibration_methods=("histogram", "minmax")),
]}


def get_recipe(name: str) -> Recipe:
    if name in RECIPES:
        return RECIPES[name]
    close = difflib.get_close_matches(name, RECIPES, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise RecipeError(f"Unknown recipe {name!r}.{hint} Valid recipes: {', '.join(RECIPES)} "
                      f"(`sapiens-edge recipes` shows which run here).")


def availability(recipe: Recipe, info: ModelInfo | None = None,
                 input_hw: tuple[int, int] | None = None) -> tuple[bool, str]:
    """(available, reason): whether this machine and this model/size can use the recipe."""
    missing = [m for m in recipe.requires if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"needs {', '.join(missing)}: pip install 'sapiens-edge[{recipe.extra}]'"
    if info is not None:
        if recipe.max_params is not None and info.params > recipe.max_params:
            return False, f"{info.name} ({info.params / 1e9:.1f} B params) is too large for {recipe.name}"
        if info.fixed_input_size and input_hw is not None and tuple(input_hw) != info.input_hw:
            h, w = info.input_hw
            return False, f"{info.name} runs at {h}x{w} only (its scale branch is tied to that grid)"
    return True, "available"


def require_available(recipe: Recipe, info: ModelInfo, input_hw: tuple[int, int]) -> None:
    ok, reason = availability(recipe, info, input_hw)
    if not ok:
        raise RecipeError(f"Recipe {recipe.name!r} cannot export {info.name}: {reason}.")
