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


def _conv_then_matmul(rng, shared: bool = False):
    """x (1,4,6,6) -> conv (8 out) -> reshape (36, 8)... as (1,8,6,6) -> transpose -> matmul (8 -> 3)."""
    wc = (rng.standard_normal((8, 4, 3, 3)) * np.linspace(0.01, 2, 8)[:, None, None, None]).astype(np.float32)
    wm = (rng.standard_normal((8, 3)) * np.array([0.1, 1, 10])).astype(np.float32)
    inits = [numpy_helper.from_array(wc, "wc"), numpy_helper.from_array(wm, "wm")]
    nodes = [helper.make_node("Conv", ["x", "wc"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["t", "wm"], ["y"], name="mm")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, 3])]
    if shared:  # a second reader of wc outside the converted set
        nodes.append(helper.make_node("Conv", ["x", "wc"], ["z"], name="other", pads=[1, 1, 1, 1]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 6, 6]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(proto, x):
    import onnxruntime

    sess = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def test_weight_only_int8_stores_int8_per_output_channel_and_stays_close(tmp_path):
    rng = np.random.default_rng(0)
    proto = _conv_then_matmul(rng)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    (ref,) = _run(proto, x)
    # The MatMul stays fp32: ONNX Runtime would turn DequantizeLinear -> MatMul into MatMulNBits,
    # which quantizes its activations as well.
    assert onnx_ptq.weight_only_int8(proto, ["conv", "mm"]) == ["wc"]
    onnx.checker.check_model(proto)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert inits["wc_int8"].dtype == np.int8 and inits["wm"].dtype == np.float32
    assert inits["wc_scale"].shape == (8,) and "wc" not in inits  # per output channel
    # every channel uses the full int8 range, whatever its magnitude (per-channel, symmetric)
    assert np.all(np.abs(inits["wc_int8"]).reshape(8, -1).max(1) == 127)
    (out,) = _run(proto, x)
    # exactly the float graph on the dequantized weights ...
    rounded = _conv_then_matmul(np.random.default_rng(0))
    (wc,) = [t for t in rounded.graph.initializer if t.name == "wc"]
    wc.CopyFrom(numpy_helper.from_array(inits["wc_int8"].astype(np.float32) * inits["wc_scale"][:, None, None, None], "wc"))
    (expected,) = _run(rounded, x)  # (the session runs ONNX Runtime's full graph optimizations)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # ... which is within int8 weight rounding of the original
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert 0 < rel < 0.01, rel


def test_weight_only_int8_leaves_weights_shared_with_other_nodes(tmp_path):
    proto = _conv_then_matmul(np.random.default_rng(0), shared=True)
    assert onnx_ptq.weight_only_int8(proto, ["conv", "mm"]) == []
    assert "wc" in {t.name for t in proto.graph.initializer}
