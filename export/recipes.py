"""Export recipes as data: a table keyed by stable names (`onnx-int8`, ...). A recipe is typed parts:
what happens to the weights (dtype, granularity, rounding) and the activations (float, static or dynamic
int8, calibration methods), the graph rewrites, and the lowering (target, delegate, deployment target);
plus the validation thresholds the accuracy gate applies. Its precision label, calibration needs and
required modules follow from the parts (and the target's declaration, export.target_table).

Torch-free, so `sapiens-edge recipes` and the validator can read it anywhere.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, field
from enum import Enum

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


class WeightDtype(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    PALETTIZED = "palettized"  # a k-means LUT of 2**bits entries per group of output channels


class Granularity(str, Enum):
    PER_CHANNEL = "per-channel"
    PER_GROUP = "per-group"  # one scale / LUT per `group_size` output channels


class Rounding(str, Enum):
    NEAREST = "nearest"  # the target's quantizer rounds each weight to its nearest grid value
    GPTQ = "gptq"  # the transformer blocks' weights rounded by GPTQ on the calibration set (quantize.gptq)


class ActivationKind(str, Enum):
    FLOAT = "float"
    STATIC_INT8 = "static-int8"  # ranges calibrated ahead of time
    DYNAMIC_INT8 = "dynamic-int8"  # ranges measured per inference


@dataclass(frozen=True)
class Weights:
    dtype: WeightDtype = WeightDtype.FP32
    bits: int | None = None  # palettized only: 2**bits LUT entries
    granularity: Granularity | None = None  # quantized dtypes only
    group_size: int | None = None  # per-group only
    rounding: Rounding = Rounding.NEAREST

    @property
    def label(self) -> str:
        return f"palettized-{self.bits}bit" if self.dtype is WeightDtype.PALETTIZED else self.dtype.value

    @property
    def bytes_per_weight(self) -> float:
        """The fewest bytes an artifact stores per weight (layers kept float and LUTs only add to it)."""
        if self.dtype is WeightDtype.PALETTIZED:
            if self.bits is None:  # our bug: every palettized recipe names its LUT size
                raise RuntimeError("palettized Weights without bits")
            return self.bits / 8
        return {WeightDtype.FP32: 4.0, WeightDtype.FP16: 2.0, WeightDtype.INT8: 1.0}[self.dtype]


@dataclass(frozen=True)
class Activations:
    kind: ActivationKind = ActivationKind.FLOAT
    calibration_methods: tuple[str, ...] = ()  # selectable with --calibration-method; first is the default
    # dynamic int8 only: the module-path prefixes quantized per inference, the other quantized layers
    # static (calibrated); empty: every quantized layer is dynamic.
    dynamic_layers: tuple[str, ...] = ()

    @property
    def calibrated(self) -> bool:
        """Whether some activation ranges come from calibration."""
        return self.kind is ActivationKind.STATIC_INT8 or (
            self.kind is ActivationKind.DYNAMIC_INT8 and bool(self.dynamic_layers))


@dataclass(frozen=True)
class Lowering:
    target: str  # a key of export.target_table.TARGETS
    delegate: str | None = None  # None: the target's default (its first)
    deployment_target: str | None = None  # Core ML's minimum OS, e.g. "iOS17"


@dataclass(frozen=True)
class Recipe:
    """An export recipe: what happens to the weights and activations, the graph rewrites applied before
    capture, and how the target lowers it. Everything else (calibration, precision label, the Python
    modules it needs, where it runs) follows from these parts and the target's declaration."""

    name: str
    description: str
    lowering: Lowering
    weights: Weights = Weights()
    activations: Activations = Activations()
    rewrites: tuple[str, ...] = ()  # names in export.rewrites.REWRITES, applied in order
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    max_params: int | None = None  # larger models are refused

    @property
    def target(self) -> str:
        return self.lowering.target

    @property
    def needs_calibration(self) -> bool:
        return self.activations.calibrated or self.weights.rounding is Rounding.GPTQ

    @property
    def calibration_methods(self) -> tuple[str, ...]:
        return self.activations.calibration_methods

    @property
    def default_calibration_method(self) -> str | None:
        return self.calibration_methods[0] if self.calibration_methods else None

    @property
    def precision(self) -> str:
        """The manifest's one-word label: fp32, fp16, int8, int8-dynamic, int8-weights, palettized-Nbit."""
        w, a = self.weights, self.activations
        if w.dtype is not WeightDtype.INT8:
            return w.label
        if a.kind is ActivationKind.FLOAT:
            return "int8-weights"
        return "int8" if a.calibrated else "int8-dynamic"

    @property
    def requires(self) -> tuple[str, ...]:
        """Python modules that must be importable (from the target's declaration)."""
        from .target_table import requirements

        return requirements(self)

    @property
    def extra(self) -> str:
        """The pip extra that provides `requires`."""
        from .target_table import TARGETS

        return TARGETS[self.target].extra

    def thresholds_for(self, task: str) -> dict[str, float]:
        return {**self.thresholds.get("tensor", {}), **self.thresholds.get(task, {})}


def _recipe(name: str, target: str, description: str, thresholds: dict[str, dict[str, float]], *,
            rewrites: tuple[str, ...] = (), weights: Weights = Weights(), activations: Activations = Activations(),
            delegate: str | None = None, deployment_target: str | None = None) -> Recipe:
    return Recipe(name, description, Lowering(target, delegate, deployment_target), weights, activations,
                  rewrites, thresholds)


FP32_W = Weights()
FP16_W = Weights(WeightDtype.FP16)
INT8_W = Weights(WeightDtype.INT8, granularity=Granularity.PER_CHANNEL)
# Static int8: the transformer blocks' weights are rounded onto the int8 grid by GPTQ on the calibration
# set (quantize.gptq): round-to-nearest weights were the other large error (1.5 points on 0.4b seg alone).
INT8_GPTQ_W = Weights(WeightDtype.INT8, granularity=Granularity.PER_CHANNEL, rounding=Rounding.GPTQ)
# Palettized: k-means LUT per 16 output channels, entries chosen by GPTQ on the calibration set.
def _palettized(bits: int) -> Weights:
    return Weights(WeightDtype.PALETTIZED, bits=bits, granularity=Granularity.PER_GROUP, group_size=16,
                   rounding=Rounding.GPTQ)


ORT_METHODS = ("percentile", "minmax", "entropy")  # ONNX Runtime's calibrators
PT2E_METHODS = ("histogram", "minmax")  # torchao PT2E observers
# NNCF's range estimators (export.openvino; the quantiles computed in the graph, quantize.openvino_ranges)
NNCF_METHODS = ("mean-quantile", "mean-minmax", "minmax")
STATIC_ORT = Activations(ActivationKind.STATIC_INT8, ORT_METHODS)
STATIC_PT2E = Activations(ActivationKind.STATIC_INT8, PT2E_METHODS)
DYNAMIC = Activations(ActivationKind.DYNAMIC_INT8)

# Core ML: RMSNorm in an exact, overflow-safe form (coremltools' rms_norm scales eps wrongly).
_COREML_RW = ("scaled_norms",)
# XNNPACK has no fused attention: matmul + softmax + matmul stays inside the delegate.
# Norms as linear / spatial-mean forms XNNPACK lowers (its mean is 4-D spatial only).
_ET_RW = ("subpixel_deconv", "split_swiglu", "explicit_attention", "delegate_norms")
# ConvTranspose2d(k4, s2) -> Conv2d + pixel shuffle (export.rewrites): ONNX Runtime's ConvTranspose
# has no int8 kernel and runs at half the GEMM rate of its Conv.
# Attention -> com.microsoft.MultiHeadAttention in token-major layout (export.fused_attention): no
# transposes around it and ONNX Runtime's tiled kernel: 1.45x faster than the opset-23 Attention on one
# CPU measured, 0.91x on another (README). fp16 keeps the standard op, whose softmax precision can be pinned to fp32.
# SwiGLU's fused gate/value projection -> two Linears (no Split of the widest activation).
_ONNX_RW = ("subpixel_deconv", "split_swiglu", "fused_attention")
_ONNX_FP16_RW = ("subpixel_deconv", "split_swiglu")
# As for ExecuTorch: every op inside XNNPACK (LiteRT's CPU delegate); GQA's kv expansion as a concat.
_TFLITE_RW = (*_ET_RW, "concat_kv")
# TensorRT 10.3 (JetPack 6): attention as MatMul -> Softmax -> MatMul with the scale on q, its softmax in fp32,
# and RMSNorm / InstanceNorm with fp32 statistics, which the fp16 recipe keeps when it casts the model.
_TRT_RW = ("subpixel_deconv", "split_swiglu", "fp32_softmax_attention", "fp32_norm_statistics")
# Static int8 (calibrated per-tensor activations): SwiGLU's down projection reads a Hadamard-rotated
# input (export.rewrites.rotate_ffn_input), its heavy-tailed activations being the largest int8 error.
_ROTATE = ("rotate_ffn_input",)

# Descriptions are the "what" of the generated recipe table (export.recipe_table: README, docs/recipes.md).
RECIPES: dict[str, Recipe] = {r.name: r for r in [
    _recipe("onnx-fp32", "onnx", "ONNX fp32, opset 23: fused attention (ONNX Runtime `MultiHeadAttention`) and "
            "`RMSNormalization`, onnxslim, `onnx.checker`; ONNX Runtime CPU/GPU", TIGHT, rewrites=_ONNX_RW),
    _recipe("onnx-fp16", "onnx", "ONNX, fp16 weights and compute with fp32 I/O; InstanceNorm, RMSNorm statistics "
            "and softmax (opset-23 `Attention`, `softmax_precision` fp32) in fp32; for GPU / Jetson", FP16,
            rewrites=_ONNX_FP16_RW, weights=FP16_W),
    _recipe("onnx-int8", "onnx", "ONNX static QDQ int8 (ONNX Runtime quantizer) on MatMul/Gemm/Conv: per-channel "
            "symmetric GPTQ-rounded weights, calibrated uint8 activations; linears keep fp32 outputs; patch "
            "embedding, classifier and (seg) the whole head compute in fp32 (weights stored fp16)", INT8,
            rewrites=(*_ONNX_RW, *_ROTATE), weights=INT8_GPTQ_W, activations=STATIC_ORT),
    _recipe("onnx-int8-dynamic", "onnx", "ONNX dynamic int8: int8 weights, activations quantized at run time "
            "(MatMul/Gemm; no calibration)", INT8, rewrites=_ONNX_RW, weights=INT8_W, activations=DYNAMIC),
    _recipe("tensorrt-fp32", "onnx", "ONNX for TensorRT 10.3+ (JetPack 6), fp32, opset 17: attention as MatMul-Softmax-"
            "MatMul (scale on Q), RMSNorm spelled out, no contrib ops; the reference / debug build of the TensorRT "
            "recipes; runs in ONNX Runtime too", TIGHT, rewrites=_TRT_RW, delegate="tensorrt"),
    _recipe("tensorrt-fp16", "onnx", "ONNX for TensorRT 10.3+, strongly typed fp16 (`trtexec --stronglyTyped`), "
            "opset 17: fp16 weights and compute, explicit Casts keep RMSNorm/InstanceNorm statistics and softmax in "
            "fp32, fp32 I/O; for Jetson", FP16, rewrites=_TRT_RW, weights=FP16_W, delegate="tensorrt"),
    _recipe("tensorrt-int8", "onnx", "ONNX for TensorRT 10.3+, explicit int8 Q/DQ (opset 19): symmetric int8 "
            "activations per tensor (ONNX Runtime calibration), GPTQ-rounded weights per output channel, float "
            "biases; the rest fp16 (norm statistics and softmax fp32), keep-float layers as onnx-int8", INT8,
            rewrites=(*_TRT_RW, *_ROTATE), weights=INT8_GPTQ_W, activations=STATIC_ORT, delegate="tensorrt"),
    _recipe("executorch-xnnpack-fp32", "executorch", "ExecuTorch `.pte`, fp32, everything in the XNNPACK delegate "
            "(Android/iOS CPU)", TIGHT, rewrites=_ET_RW),
    _recipe("executorch-xnnpack-fp16", "executorch", "ExecuTorch `.pte`, fp16 compute (norms and softmax too) with "
            "fp32 I/O, XNNPACK delegate (ARMv8.2+ phones)", FP16, rewrites=_ET_RW, weights=FP16_W),
    _recipe("executorch-xnnpack-int8", "executorch", "ExecuTorch `.pte`, PT2E static int8 (ExecuTorch's XNNPACK "
            "quantizer on linears/convs: per-channel symmetric GPTQ-rounded weights, calibrated activations), "
            "XNNPACK delegate", INT8, rewrites=(*_ET_RW, *_ROTATE), weights=INT8_GPTQ_W, activations=STATIC_PT2E),
    _recipe("executorch-xnnpack-int8-dynamic", "executorch", "ExecuTorch `.pte`, PT2E int8: GPTQ-rounded "
            "per-channel weights; the transformer's linears quantize their activations per inference (XNNPACK qd8 "
            "kernels, fp32 outputs), convs calibrated static; XNNPACK delegate; as fast as static int8, closer to "
            "fp32", INT8, rewrites=(*_ET_RW, *_ROTATE), weights=INT8_GPTQ_W,
            activations=Activations(ActivationKind.DYNAMIC_INT8, PT2E_METHODS, dynamic_layers=("backbone.blocks",))),
    _recipe("executorch-coreml-fp16", "executorch", "ExecuTorch `.pte` with the Core ML delegate, fp16, iOS 17+ / "
            "macOS 14+ (exported anywhere, runs on Apple devices only)", FP16,
            rewrites=("subpixel_deconv", "split_swiglu", "scaled_norms"), weights=FP16_W, delegate="coreml",
            deployment_target="iOS17"),
    _recipe("coreml-fp32", "coreml", "Core ML ML Program (`.mlpackage`), fp32 compute (Mac CPU/GPU reference), "
            "image input with the normalization inside, iOS 16+", TIGHT, rewrites=_COREML_RW,
            deployment_target="iOS16"),
    _recipe("coreml-fp16", "coreml", "Core ML ML Program (`.mlpackage`), fp16 compute (Neural Engine / GPU), image "
            "input with the normalization inside, iOS 16+", FP16, rewrites=_COREML_RW, weights=FP16_W,
            deployment_target="iOS16"),
    _recipe("coreml-int8", "coreml", "Core ML, fp16 compute on int8 weights (linear, symmetric, per output channel; "
            "coremltools.optimize; patch embedding and seg head fp16), iOS 16+", INT8, rewrites=_COREML_RW,
            weights=INT8_W, deployment_target="iOS16"),
    _recipe("coreml-w8a8", "coreml", "Core ML, int8 weights (GPTQ-rounded) and activations (PT2E static, "
            "calibrated), iOS 17+", INT8, rewrites=_COREML_RW, weights=INT8_GPTQ_W, activations=STATIC_PT2E,
            deployment_target="iOS17"),
    _recipe("coreml-palettized-6bit", "coreml", "Core ML, fp16 compute on 6-bit palettized weights (k-means LUT "
            "per 16 output channels, each weight's entry chosen by GPTQ on the calibration set), iOS 18+",
            PALETTIZED, rewrites=_COREML_RW, weights=_palettized(6), deployment_target="iOS18"),
    _recipe("coreml-palettized-4bit", "coreml", "Core ML, fp16 compute on 4-bit palettized weights (k-means LUT "
            "per 16 output channels, each weight's entry chosen by GPTQ on the calibration set), iOS 18+",
            PALETTIZED, rewrites=_COREML_RW, weights=_palettized(4), deployment_target="iOS18"),
    _recipe("tflite-fp32", "tflite", "TFLite (LiteRT) flatbuffer, fp32, NHWC; everything in one XNNPACK partition "
            "(Raspberry Pi, Android CPU)", TIGHT, rewrites=_TFLITE_RW),
    _recipe("tflite-fp16", "tflite", "TFLite, fp16 weights (half the file), fp32 compute on CPU; NHWC", FP16,
            rewrites=_TFLITE_RW, weights=FP16_W),
    _recipe("tflite-int8-dynamic", "tflite", "TFLite, int8 per-channel weights on the linears (ai-edge-quantizer), "
            "activations quantized per inference (dynamic-range kernels, no calibration); NHWC", INT8,
            rewrites=_TFLITE_RW, weights=INT8_W, activations=DYNAMIC),
    _recipe("tflite-int8", "tflite", "TFLite, PT2E static int8 (litert-torch's quantizer on linears: per-channel "
            "symmetric GPTQ-rounded weights, calibrated activations), float I/O; NHWC", INT8,
            rewrites=(*_TFLITE_RW, *_ROTATE), weights=INT8_GPTQ_W, activations=STATIC_PT2E),
    # OpenVINO converts attention and RMSNorm into its own fused ops: no rewrites but the int8 rotation.
    _recipe("openvino-fp32", "openvino", "OpenVINO IR (`model.xml` + `.bin`), fp32 weights, fp32 inference "
            "precision hint (the reference); x86 CPUs, Intel GPUs/NPUs, ARM64", TIGHT),
    _recipe("openvino-fp16", "openvino", "OpenVINO IR, fp16-compressed weights (half the file), reduced inference "
            "precision: bf16 on CPUs with AVX512-BF16/AMX, fp16 on Intel GPUs/NPUs (fp32 on CPUs with neither)",
            FP16, weights=FP16_W),
    _recipe("openvino-int8", "openvino", "OpenVINO IR, NNCF static int8 on linears/convs (symmetric per-channel "
            "GPTQ-rounded weights, calibrated activations, FFN input rotated); keep-float layers as onnx-int8 "
            "(NNCF ignored scope), fp32 for the float parts", INT8, rewrites=_ROTATE, weights=INT8_GPTQ_W,
            activations=Activations(ActivationKind.STATIC_INT8, NNCF_METHODS)),
    _recipe("openvino-int8-mixed", "openvino", "openvino-int8's IR with reduced inference precision for the float "
            "parts (bf16 on CPUs with AVX512-BF16/AMX, fp16 on Intel GPUs/NPUs) but the output layer (seg's "
            "classifier, pose's heatmap conv), pinned to fp32; faster than openvino-int8 where bf16/fp16 is, "
            "less accurate", INT8, rewrites=_ROTATE,
            weights=INT8_GPTQ_W, activations=Activations(ActivationKind.STATIC_INT8, NNCF_METHODS)),
    _recipe("openvino-int8-hybrid", "openvino", "OpenVINO IR, NNCF static int8 linears as openvino-int8 (attention "
            "left float, SwiGLU's projection split); fp32 inference but for attention and the head's transposed "
            "convolutions, in the device's reduced precision (bf16 on CPUs with AVX512-BF16/AMX, fp16 on ARM64 CPUs "
            "and Intel GPUs/NPUs, fp32 where neither)",
            INT8, rewrites=("split_swiglu", *_ROTATE), weights=INT8_GPTQ_W,
            activations=Activations(ActivationKind.STATIC_INT8, NNCF_METHODS)),
]}

# The recipes `sapiens-edge report` exports when none are named.
DEFAULT_REPORT_RECIPES = ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8")


def calibration_methods() -> tuple[str, ...]:
    """Every recipe's calibration methods, each once (the CLI's --calibration-method choices)."""
    return tuple(dict.fromkeys(m for r in RECIPES.values() for m in r.calibration_methods))


def register(recipe: Recipe) -> Recipe:
    """Add `recipe` to RECIPES (your own recipe, by name, for export() and the CLI), after checking its
    parts against its target's declaration (RecipeError when the target cannot lower it or the name is taken)."""
    from .target_table import check_recipe

    if recipe.name in RECIPES:
        raise RecipeError(f"A recipe named {recipe.name!r} exists already; choose another name.")
    check_recipe(recipe)
    RECIPES[recipe.name] = recipe
    return recipe


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
    from .target_table import tool_problems

    wrong = tool_problems(recipe)
    if wrong:
        return False, f"{'; '.join(wrong)}: pip install 'sapiens-edge[{recipe.extra}]'"
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
