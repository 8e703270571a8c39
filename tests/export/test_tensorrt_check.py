"""The static TensorRT check (export/tensorrt_check.py): one small graph per rule, the CLI's exit codes, and
what today's onnx-* recipes violate (so a regression or a fix in the export shows up here)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge.cli import main  # noqa: E402
from sapiens_edge.errors import ArtifactError, OptionError  # noqa: E402
from sapiens_edge.export.tensorrt_check import GRAPH, check_tensorrt  # noqa: E402

X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])


def save(tmp_path, nodes, *, inits=(), opset=20, inputs=(X,), extra_opsets=(), name="m.onnx", **model_kw):
    graph = helper.make_graph(list(nodes), "g", list(inputs), [Y], initializer=list(inits))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in extra_opsets)]
    model = helper.make_model(graph, opset_imports=opsets, **model_kw)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def found(path, version="10.3") -> set[tuple[str, str]]:
    return {(v.rule, v.node) for v in check_tensorrt(path, version).violations}


def test_clean_graph_passes(tmp_path):
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    path = save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                           helper.make_node("Relu", ["h"], ["y"], name="relu")], inits=[w])
    for version in ("10.3", "10.13", "10.16"):
        assert check_tensorrt(path, version).compatible


def test_custom_domain_op_is_rejected(tmp_path):
    path = save(tmp_path, [helper.make_node("MultiHeadAttention", ["x", "x", "x"], ["y"], name="mha",
                                            domain="com.microsoft", num_heads=1)], extra_opsets=["com.microsoft"])
    assert found(path, "10.16") == {("custom-domain", "mha")}


def test_attention_needs_10_14(tmp_path):
    q = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 8])
    path = save(tmp_path, [helper.make_node("Attention", ["x", "x", "x"], ["y"], name="attn")], inputs=[q], opset=23)
    assert ("unsupported-op", "attn") in found(path, "10.3")
    assert ("unsupported-op", "attn") in found(path, "10.13")
    assert found(path, "10.16") == set()


def test_rms_normalization_needs_10_15(tmp_path):
    s = numpy_helper.from_array(np.ones(4, np.float32), "s")
    path = save(tmp_path, [helper.make_node("RMSNormalization", ["x", "s"], ["y"], name="rms")], inits=[s], opset=23)
    violations = check_tensorrt(path, "10.13").violations
    assert [(v.rule, v.node) for v in violations if v.op_type] == [("unsupported-op", "rms")]
    assert "added in 10.15" in violations[-1].message
    assert found(path, "10.16") == set()


def test_opset_above_the_parser_is_a_graph_violation(tmp_path):
    path = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], opset=23)
    assert found(path, "10.3") == {("opset", GRAPH)}
    assert found(path, "10.16") == set()


def test_if_is_control_flow(tmp_path):
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="inner")], "b", [], [Y])
    c = numpy_helper.from_array(np.array(True), "c")
    path = save(tmp_path, [helper.make_node("If", ["c"], ["y"], name="cond", then_branch=branch, else_branch=branch)],
                inits=[c])
    assert found(path) == {("control-flow", "cond")}


def test_dynamic_input_dim(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    path = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], inputs=[x])
    assert found(path) == {("dynamic-shape", "x")}


def qdq_graph(tmp_path, zero_point, scale, dtype=np.uint8):
    """x -> QuantizeLinear -> DequantizeLinear -> y, on the activation x."""
    s = numpy_helper.from_array(np.asarray(scale, np.float32), "s")
    z = numpy_helper.from_array(np.full(np.shape(scale), zero_point, dtype), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant", axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequant", axis=1)]
    return save(tmp_path, nodes, inits=[s, z])


def test_asymmetric_uint8_qdq(tmp_path):
    path = qdq_graph(tmp_path, 128, 0.1)
    assert found(path) == {(rule, node) for rule in ("qdq-type", "qdq-asymmetric") for node in ("quant", "dequant")}


def test_symmetric_int8_per_tensor_qdq_passes(tmp_path):
    assert found(qdq_graph(tmp_path, 0, 0.1, np.int8)) == set()


def test_per_axis_qdq_on_an_activation(tmp_path):
    path = qdq_graph(tmp_path, 0, [0.1, 0.2, 0.3, 0.4], np.int8)
    assert found(path) == {("qdq-per-axis-activation", "quant"), ("qdq-per-axis-activation", "dequant")}


def test_per_axis_qdq_on_a_weight_passes(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 4), np.int8), "w")
    s = numpy_helper.from_array(np.full(4, 0.1, np.float32), "s")
    z = numpy_helper.from_array(np.zeros(4, np.int8), "z")
    path = save(tmp_path, [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], name="dqw", axis=0),
                           helper.make_node("MatMul", ["x", "wf"], ["y"], name="mm")], inits=[w, s, z])
    assert found(path) == set()


def test_missing_external_data_file(tmp_path):
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [X], [Y],
                              initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    assert found(path) == set()
    (tmp_path / "m.onnx.data").unlink()
    assert found(path) == {("external-data", GRAPH)}


def test_user_errors(tmp_path):
    with pytest.raises(OptionError, match="Unknown TensorRT version"):
        check_tensorrt(tmp_path, "9.0")
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="not an ONNX model"):
        check_tensorrt(tmp_path / "m.tflite", "10.3")


def test_cli_exit_codes(tmp_path, capsys):
    relu = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], opset=23)
    assert main(["check", str(relu), "--tensorrt", "10.16"]) == 0
    assert "compatible with TensorRT 10.16" in capsys.readouterr().out
    assert main(["check", str(relu), "--tensorrt", "10.3"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("opset: (graph): ai.onnx opset 23")
    assert "1 violation(s) for TensorRT 10.3: opset 1" in out
    (tmp_path / "m.tflite").write_bytes(b"x")
    assert main(["check", str(tmp_path / "m.tflite"), "--tensorrt", "10.3"]) == 2
    with pytest.raises(SystemExit):  # argparse: a version outside the table
        main(["check", str(relu), "--tensorrt", "9.0"])


# What today's recipes violate on JetPack 6's TensorRT 10.3 and on 10.16, as (rule, op type); fp32 and int8
# fuse attention into com.microsoft.MultiHeadAttention, fp16 into opset-23 Attention; all write RMSNormalization.
NORM_AND_OPSET = {("opset", ""), ("unsupported-op", "RMSNormalization")}
INT8_QDQ = {(rule, op) for rule in ("qdq-type", "qdq-asymmetric") for op in ("QuantizeLinear", "DequantizeLinear")}
RECIPES = {
    "onnx-fp32": (NORM_AND_OPSET | {("custom-domain", "MultiHeadAttention")},
                  {("custom-domain", "MultiHeadAttention")}),
    "onnx-fp16": (NORM_AND_OPSET | {("unsupported-op", "Attention")}, set()),
    "onnx-int8": (NORM_AND_OPSET | {("custom-domain", "MultiHeadAttention")} | INT8_QDQ,
                  {("custom-domain", "MultiHeadAttention")} | INT8_QDQ),
}


@pytest.fixture(scope="module")
def tiny_seg():
    """The tests' tiny seg model with one block, exported at 64x48: every recipe's graph parts (fused attention,
    RMSNorm, the head's norms, Q/DQ) at a third of the export time."""
    import dataclasses

    from tests.export.shared import tiny_model
    from tests.helpers import TINY_EXPORT

    return tiny_model("seg", arch=dataclasses.replace(TINY_EXPORT, depth=1))


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_todays_recipes(tiny_seg, recipe, tmp_path):
    from sapiens_edge.export import core

    options = {"calibration_limit": 1} if recipe == "onnx-int8" else {}
    art = core.export(tiny_seg, recipe, tmp_path / recipe, input_size=(64, 48), progress=lambda _: None, **options)
    on_10_3, on_10_16 = RECIPES[recipe]
    report = check_tensorrt(art.path, "10.3")
    assert {(v.rule, v.op_type) for v in report.violations} == on_10_3
    assert {(v.rule, v.op_type) for v in check_tensorrt(art.path, "10.16").violations} == on_10_16
    # Every attention and RMSNorm node of the graph is named, and only those (an independent walk of the graph)
    graph = onnx.load(str(art.path / art.manifest.model_file), load_external_data=False).graph
    for op in ("Attention", "MultiHeadAttention", "RMSNormalization"):
        assert {v.node for v in report.violations if v.op_type == op} == {n.name for n in graph.node if n.op_type == op}
    assert sum(n.op_type in ("Attention", "MultiHeadAttention") for n in graph.node) == len(tiny_seg.backbone.blocks)


def test_runs_without_torch(tmp_path):
    """The check is for machines without torch (a Jetson with only the runtime and onnx): torch blocked."""
    import subprocess
    import sys

    relu = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], opset=23)
    code = ("import sys; sys.modules['torch'] = None\n"
            "from sapiens_edge.cli import main\n"
            f"sys.exit(main(['check', {str(relu)!r}, '--tensorrt', '10.3']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "opset: (graph)" in done.stdout
