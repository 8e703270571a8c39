"""What TensorRT's ONNX parser takes, per TensorRT version, as data (read by export/tensorrt_check.py).

Sources (looked up, not run: no TensorRT here):
- [ops-10.15] onnx/onnx-tensorrt docs/operators.md, release 10.15: "TensorRT 10.15 supports operators in the
  inclusive range of opset 9 to opset 24"; the operator matrix (Y rows) below; "UINT8 is only supported as
  network input or output tensor types"; DequantizeLinear "INT8, FP8, FP4, INT4, `x_zero_point` must be zero";
  QuantizeLinear "`y_zero_point` must be 0".
- [ops-10.0] the same file for 10.0: "opset 9 to opset 20" (the last range stated before the 10.x releases that
  JetPack 6 ships).
- [pr-1043] onnx/onnx-tensorrt pull 1043 (10.14 GA): "Added support for the `Attention` operator".
- [pr-1048] onnx/onnx-tensorrt pull 1048 (10.15 GA): "Added support for `RotaryEmbedding`, `RMSNormalization`
  and `TensorScatter`"; NVIDIA/TensorRT issue 4639: RMSNormalization was "unsupported op" before.
- [quant] TensorRT developer guide, "Working with Quantized Types": activations are quantized per tensor,
  weights per tensor or per channel; int8 quantization is symmetric.
- Not found in a stored source: the opset ceiling of 10.3 and 10.13, and the 10.16 operator list. 10.3 takes
  the 10.0 range; 10.13 the last opset before the 23 that Attention (10.14) needs; 10.16 the 10.15 list.
  These three are marked `inferred` and said so in the output.
"""

from __future__ import annotations

from dataclasses import dataclass

# ai.onnx operators with "Y" in [ops-10.15]; the ones added after 10.3 are removed per version below.
_OPS_10_15_TEXT = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization BlackmanWindow
Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression
NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization RNN RoiAlign
RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
"""
_OPS_10_15 = frozenset(_OPS_10_15_TEXT.split())

# op -> the first TensorRT version whose ONNX parser imports it ([pr-1043], [pr-1048]).
ADDED_IN: dict[str, str] = {
    "Attention": "10.14",
    "RMSNormalization": "10.15", "RotaryEmbedding": "10.15", "TensorScatter": "10.15",
}

CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# The Q/DQ integer types TensorRT quantizes to: int8 ([ops-10.15] DequantizeLinear; FP8/FP4/INT4 are not what
# our recipes write and are left out on purpose). uint8 is I/O only, int32 (bias DQ) is not a quantized type.
QDQ_TYPES = frozenset({"INT8"})
PROTOBUF_LIMIT = 2 * 1024**3  # a ModelProto over 2 GB cannot be serialized: the weights must be external


@dataclass(frozen=True)
class TensorRTRules:
    version: str
    jetpack: str  # which JetPack ships it ("" when none)
    min_opset: int
    max_opset: int
    ops: frozenset[str]  # supported ai.onnx op types; every other domain (com.microsoft, ...) is unsupported
    inferred: str = ""  # which of these facts no stored source states for this version (see the docstring)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _ops_of(version: str) -> frozenset[str]:
    return frozenset(op for op in _OPS_10_15 if _version_key(ADDED_IN.get(op, "0")) <= _version_key(version))


RULES: dict[str, TensorRTRules] = {
    "10.3": TensorRTRules("10.3", "JetPack 6.x (Orin)", 9, 20, _ops_of("10.3"),
                          inferred="opset ceiling (the 10.0 range)"),
    "10.13": TensorRTRules("10.13", "JetPack 7.0 / 7.1 (Thor)", 9, 22, _ops_of("10.13"),
                           inferred="opset ceiling (below Attention's opset 23)"),
    "10.15": TensorRTRules("10.15", "", 9, 24, _ops_of("10.15")),
    "10.16": TensorRTRules("10.16", "", 9, 24, _ops_of("10.16"), inferred="operator list and opsets (as 10.15)"),
}
