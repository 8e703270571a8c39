"""The onnx target's TensorRT recipes on tiny models: every artifact passes the static TensorRT 10.3 check
and the validation gate on CPU (ONNX Runtime) at its recipe's real thresholds; fp16 is strongly typed
with fp32 norm statistics and softmax; int8 is TensorRT's explicit quantization; attention is the
MatMul -> Softmax -> MatMul that TensorRT fuses, with the scale on q."""

from __future__ import annotations

import importlib
from collections import Counter

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge.export import core  # noqa: E402
from sapiens_edge.export.onnx_opset17 import downgrade_to_17  # noqa: E402
from sapiens_edge.export.tensorrt_check import check_tensorrt  # noqa: E402
from tests.export.shared import WELL_CONDITIONED, tiny_model  # noqa: E402

validate_module = importlib.import_module("sapiens_edge.validation.validate")
QUIET = {"progress": lambda _: None}
FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
# What the TensorRT recipes are meant to write (all in TensorRT 10.3's parser): no Attention,
# RMSNormalization, contrib or control-flow op.
ALLOWED_OPS = {"Add", "Cast", "Concat", "ConstantOfShape", "Conv", "DepthToSpace", "DequantizeLinear", "Gemm",
               "LayerNormalization", "MatMul", "Mul", "Neg", "Pow", "QuantizeLinear", "Reciprocal", "ReduceMean",
               "Reshape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Sub", "Transpose", "Unsqueeze"}
OPSETS = {"tensorrt-fp32": 17, "tensorrt-fp16": 17, "tensorrt-int8": 19}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """(task, recipe) -> (model, artifact), exported once per module on the well-conditioned stand-in: the
    recipes' real task limits are what is checked (the default tiny pose misses fp16's PCK 0.99 with
    onnx-fp16 as well: 0.945)."""
    return {}


def export(exports, tmp_path_factory, task: str, recipe: str):
    if (task, recipe) not in exports:
        model = tiny_model(task, **WELL_CONDITIONED[task])
        out = tmp_path_factory.mktemp(f"{task}-{recipe}")
        exports[task, recipe] = model, core.export(model, recipe, out / "a", input_size=model.sapiens_info.input_hw,
                                                    **QUIET)
    return exports[task, recipe]


def typed(path):
    """The model at `path` with every intermediate typed, and its tensor -> element type map."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return model, types


@pytest.mark.parametrize("task", ["seg", "pose"])
@pytest.mark.parametrize("recipe", ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"])
def test_recipe_parses_on_tensorrt_10_3_and_passes_the_gate(exports, tmp_path_factory, monkeypatch, task, recipe):
    model, art = export(exports, tmp_path_factory, task, recipe)
    assert art.manifest.target == "onnx" and art.manifest.recipe == recipe
    report = check_tensorrt(art.path, "10.3")
    assert report.violations == (), [v.line() for v in report.violations]
    proto = onnx.load(str(art.path / "model.onnx"))
    ops = Counter(n.op_type for n in proto.graph.node)
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"} and set(ops) <= ALLOWED_OPS, set(ops) - ALLOWED_OPS
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [OPSETS[recipe]]
    opts = art.manifest.export_options
    # The manifest records the delegate, the opset and the artifact's op set (sorted op_type counts)
    assert opts["delegate"] == "tensorrt" and opts["opset"] == OPSETS[recipe]
    assert opts["ops"] == dict(sorted(ops.items()))
    assert ops["Softmax"] == model.sapiens_info.arch.depth
    # Static input and fp32 I/O, as every onnx recipe
    assert all(d.dim_value > 0 for d in proto.graph.input[0].type.tensor_type.shape.dim)
    assert {v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.output)} == {FLOAT}
    monkeypatch.setattr(validate_module, "load_model", lambda name, weights=None, seed=0: model)
    gate = validate_module.validate(art.path, **QUIET)
    assert gate.fatal is None and gate.passed, gate.summary()  # the recipe's own thresholds, task limits included
    assert {c.metric for c in gate.checks} & {"pixel_agreement", "keypoint_err_px"}


def assert_scaled_attention(path, model) -> None:
    """Every Softmax reads MatMul(q * scale, k^T) (through an fp32 Cast and q's reshape to 3-D) and feeds
    a MatMul; the scale is 1/sqrt(head_dim)."""
    g = onnx.load(str(path)).graph
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}

    def skip(node, through):  # the producer of node's first input, past ops in `through`
        p = producers.get(node.input[0])
        while p is not None and p.op_type in through:
            p = producers.get(p.input[0])
        return p

    head_dim = model.sapiens_info.arch.embed_dim // model.sapiens_info.arch.num_heads
    softmaxes = [n for n in g.node if n.op_type == "Softmax"]
    assert len(softmaxes) == model.sapiens_info.arch.depth
    for sm in softmaxes:
        scores = skip(sm, ("Cast",))
        assert scores.op_type == "MatMul"
        scale = skip(scores, ("Reshape", "QuantizeLinear", "DequantizeLinear"))
        assert scale.op_type == "Mul", scale.op_type
        factor = [consts[i] for i in scale.input if i in consts]
        assert len(factor) == 1 and factor[0].size == 1
        assert float(factor[0]) == pytest.approx(head_dim ** -0.5, rel=1e-3)
        out = consumers[sm.output[0]]
        while out[0].op_type in ("Cast", "QuantizeLinear", "DequantizeLinear"):
            out = consumers[out[0].output[0]]
        assert [n.op_type for n in out] == ["MatMul"]


@pytest.mark.parametrize("recipe", ["tensorrt-fp32", "tensorrt-fp16"])
def test_attention_is_matmul_softmax_matmul_with_the_scale_on_q(exports, tmp_path_factory, recipe):
    model, art = export(exports, tmp_path_factory, "seg", recipe)
    assert_scaled_attention(art.path / "model.onnx", model)


def test_fp16_is_strongly_typed_with_fp32_statistics_and_softmax(exports, tmp_path_factory):
    _, art = export(exports, tmp_path_factory, "seg", "tensorrt-fp16")
    proto, types = typed(art.path / "model.onnx")
    g = proto.graph
    by_op: dict[str, list] = {}
    for n in g.node:
        by_op.setdefault(n.op_type, []).append(n)
    # Weights and compute in fp16: no fp32 weight of any size, every linear / conv reads fp16
    assert not [t.name for t in g.initializer if t.data_type == FLOAT and np.prod(t.dims) >= 64]
    assert all(types[i] == FLOAT16 for op in ("Gemm", "MatMul", "Conv") for n in by_op[op] for i in n.input)
    # The norms' statistics and the softmax in fp32, behind explicit Casts
    for op in ("ReduceMean", "Sqrt", "Reciprocal", "LayerNormalization", "Softmax"):
        assert by_op[op] and all(types[n.input[0]] == FLOAT and types[n.output[0]] == FLOAT for n in by_op[op]), op
    producers = {o: n for n in g.node for o in n.output}
    for n in by_op["Softmax"]:
        cast = producers[n.input[0]]
        assert cast.op_type == "Cast" and types[cast.input[0]] == FLOAT16
    casts = Counter(a.i for n in by_op["Cast"] for a in n.attribute if a.name == "to")
    assert casts[FLOAT] > 0 and casts[FLOAT16] > 0 and set(casts) == {FLOAT, FLOAT16}
    assert art.manifest.export_options["fp16"]["io"] == "float32"


@pytest.mark.parametrize("task", ["seg", "pose"])
def test_int8_is_tensorrt_explicit_quantization(exports, tmp_path_factory, task):
    _, art = export(exports, tmp_path_factory, task, "tensorrt-int8")
    proto, types = typed(art.path / "model.onnx")
    g = proto.graph
    consts = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    weights = [n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in consts]
    assert task == "pose" or weights  # the pose head stays float: tiny pose quantizes only the trunk's linears
    for n in qdq:
        zero = consts[n.input[2]]
        # int8 (not uint8, not int32 bias), zero point 0: symmetric, as TensorRT takes it
        assert zero.data_type == TensorProto.INT8 and not numpy_helper.to_array(zero).any(), n.name
        scale = numpy_helper.to_array(consts[n.input[1]])
        assert consts[n.input[1]].data_type == FLOAT16 or n.op_type == "QuantizeLinear"
        if n in weights:  # per output channel: one scale per row of the (out, in) Gemm weight / conv filter
            w = consts[n.input[0]]
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            assert w.data_type == TensorProto.INT8 and axis == 0 and scale.size == w.dims[0] > 1, n.name
        else:  # activations per tensor
            assert scale.size == 1 and (n.op_type == "DequantizeLinear" or producers.get(n.input[0]) is not None)
    # Everything not quantized computes in fp16; the norms' statistics and softmax in fp32
    assert all(types[i] == FLOAT16 for n in g.node if n.op_type in ("Gemm", "MatMul", "Conv") for i in n.input[:2])
    for n in g.node:
        if n.op_type in ("ReduceMean", "Sqrt", "LayerNormalization", "Softmax"):
            assert types[n.input[0]] == FLOAT, n.name
    q = art.manifest.export_options["quantization"]
    assert q["activations"].startswith("int8 symmetric") and q["bias"] == "float" and q["kept_float"]


def test_downgrade_to_17_rewrites_the_ops_revised_at_18():
    """ReduceMean's axes input -> attribute, Split's num_outputs -> sizes: valid at opset 17, same numbers."""
    import onnxruntime

    x = helper.make_tensor_value_info("x", FLOAT, [2, 6])
    outs = [helper.make_tensor_value_info(n, FLOAT, s) for n, s in (("m", [2, 1]), ("a", [2, 3]), ("b", [2, 3]))]
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["m"], name="mean", keepdims=1),
             helper.make_node("Split", ["x"], ["a", "b"], name="split", axis=1, num_outputs=2)]
    graph = helper.make_graph(nodes, "g", [x], outs, [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    data = {"x": np.arange(12, dtype=np.float32).reshape(2, 6)}

    def run(m):
        return onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, data)

    before = run(model)
    with pytest.raises(onnx.checker.ValidationError):  # opset 18's spelling is invalid at 17
        bad = onnx.ModelProto()
        bad.CopyFrom(model)
        bad.opset_import[0].version = 17
        onnx.checker.check_model(bad, full_check=True)
    downgrade_to_17(model)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    for a, b in zip(before, run(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fp32_statistics_norm_is_rmsnorm_and_survives_fp16():
    """`Fp32StatsRMSNorm` is nn.RMSNorm in fp32, and in an fp16 model it normalizes a residual stream whose
    squares overflow fp16 (rms 400: 1.6e5 > 65504), where the same ops in fp16 give zeros."""
    import torch

    from sapiens_edge.export.rewrites import Fp32StatsRMSNorm

    norm = torch.nn.RMSNorm(64, eps=1e-6)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(Fp32StatsRMSNorm(norm)(x), norm(x), rtol=1e-6, atol=1e-6)
    big = (400 * x).half()
    ours = Fp32StatsRMSNorm(norm).half()(big)
    plain = big * torch.rsqrt(big.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert ours.dtype == torch.float16 and torch.isfinite(ours).all()
    torch.testing.assert_close(ours.float(), norm(big.float()), rtol=2e-3, atol=2e-3)
    assert not plain.abs().amax() > 0  # the fp16 statistics overflowed to inf: everything collapses to 0
