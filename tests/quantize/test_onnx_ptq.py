"""ONNX static calibration: what gets calibrated."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge.quantize import onnx_ptq  # noqa: E402


def _two_convs(path):
    """x -> conv_a -> relu -> conv_b -> y"""
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv_a"), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["y"], name="conv_b")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_layers_left_in_float_are_not_calibrated(tmp_path, method):
    _two_convs(tmp_path / "m.onnx")
    onnx_ptq._calibrator(tmp_path / "m.onnx", ("Conv",), tmp_path / "a.onnx", method, 99.999)
    onnx_ptq._calibrator(tmp_path / "m.onnx", ("Conv",), tmp_path / "b.onnx", method, 99.999,
                         skip_nodes=frozenset({"conv_b"}))
    assert _calibrated(tmp_path / "a.onnx") == {"x", "a", "r"}
    assert _calibrated(tmp_path / "b.onnx") == {"x", "a"}  # conv_b's input and output are not needed


def _calibrated(augmented) -> set[str]:
    """Intermediate tensors the augmented graph exposes for calibration (MinMax: through reduce
    nodes named after them; histograms: the tensors themselves). The model output y always shows."""
    names = {o.name for o in onnx.load(str(augmented)).graph.output}
    return {n.removesuffix("_ReduceMin").removesuffix("_ReduceMax") for n in names} - {"y"}


def test_streaming_calibration_skips_float_layers(tmp_path):
    _two_convs(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    ranges = onnx_ptq.calibrate(tmp_path / "m.onnx", "x", lambda: iter([rng.standard_normal((1, 4, 8, 8))] * 2), 2,
                                method="percentile", workdir=tmp_path, skip_nodes=frozenset({"conv_b"}))
    assert set(ranges.keys()) == {"x", "a"}


def test_matmul_outputs_are_not_calibrated(tmp_path):
    """MatMul keeps a float output (FLOAT_OUTPUT_OPS): only its input needs a range."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"), helper.make_node("Relu", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    onnx_ptq._calibrator(tmp_path / "m.onnx", ("MatMul",), tmp_path / "a.onnx", "percentile", 99.999)
    assert _calibrated(tmp_path / "a.onnx") == {"x"}

