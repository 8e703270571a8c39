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


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_streaming_calibration_skips_float_layers(tmp_path, monkeypatch, method):
    _two_convs(tmp_path / "m.onnx")
    made = []

    def build(*args, **kwargs):
        calibrator = real(*args, **kwargs)
        made.append((calibrator, calibrator.model))
        return calibrator

    real = onnx_ptq._calibrator
    monkeypatch.setattr(onnx_ptq, "_calibrator", build)
    rng = np.random.default_rng(0)
    ranges = onnx_ptq.calibrate(tmp_path / "m.onnx", "x", lambda: iter([rng.standard_normal((1, 4, 8, 8))] * 2), 2,
                                method=method, workdir=tmp_path, skip_nodes=frozenset({"conv_b"}))
    assert set(ranges.keys()) == {"x", "a"}
    # While the images run, the calibrator holds a new, weightless message instead of the one it loaded:
    # emptied in place, that one would keep its weights' bytes in its arena (0.4b: 1.5 GiB).
    calibrator, loaded = made[0]
    assert calibrator.model is not loaded and not calibrator.model.graph.initializer
    assert len(calibrator.model.graph.output) > 1  # the augmented graph (its outputs are what it is kept for)


def test_matmul_outputs_are_not_calibrated(tmp_path):
    """MatMul keeps a float output (FLOAT_OUTPUT_OPS): only its input needs a range."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"), helper.make_node("Relu", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    onnx_ptq._calibrator(tmp_path / "m.onnx", ("MatMul",), tmp_path / "a.onnx", "percentile", 99.999)
    assert _calibrated(tmp_path / "a.onnx") == {"x"}


def test_histogram_activations_come_back_as_float16_with_the_same_ranges(tmp_path, monkeypatch):
    """narrow_outputs: the augmented graph hands activations back in fp16 (half the calibration
    peak); the ranges drawn from them stay within a small fraction of a uint8 step, in fp32."""
    _two_convs(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    images = [rng.standard_normal((1, 4, 8, 8)) * 3 for _ in range(3)]

    def ranges(workdir):
        workdir.mkdir()
        return onnx_ptq.calibrate(tmp_path / "m.onnx", "x", lambda: iter(images), 3, method="percentile",
                                  workdir=workdir)

    narrow = ranges(tmp_path / "narrow")
    augmented = onnx.load(str(tmp_path / "narrow" / "augmented.onnx"))
    outputs = {o.name: o.type.tensor_type.elem_type for o in augmented.graph.output}
    assert outputs["a"] == outputs["r"] == TensorProto.FLOAT16
    assert outputs["x"] == TensorProto.FLOAT  # a graph input stays as it is
    monkeypatch.setattr(onnx_ptq, "narrow_outputs", lambda path, keep=frozenset(): 0)
    wide = ranges(tmp_path / "wide")
    for name in ("x", "a", "r"):
        (lo_n, hi_n), (lo_w, hi_w) = narrow[name].range_value, wide[name].range_value
        assert lo_n.dtype == hi_n.dtype == np.float32
        step = float(hi_w - lo_w) / 255
        assert abs(float(lo_n - lo_w)) < 0.2 * step and abs(float(hi_n - hi_w)) < 0.2 * step, name
