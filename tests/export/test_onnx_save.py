"""export.onnx.save: a model over protobuf's limit goes to one external data file, and saving a model read from
that file again rewrites it instead of appending (onnx appends to an existing data file)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge.export import onnx as onnx_target  # noqa: E402


def _linear(weight: np.ndarray) -> onnx.ModelProto:
    w = numpy_helper.from_array(weight, "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight.shape[1]])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_saving_a_reloaded_model_rewrites_its_data_file(tmp_path, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(onnx_target, "PROTOBUF_LIMIT", 1024)  # "large" from 1 KiB: external data
    path = tmp_path / "model.onnx"
    data = tmp_path / "model.onnx.data"
    weight = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    onnx_target.save(_linear(weight), path)
    assert data.stat().st_size == weight.nbytes

    proto = onnx.load(str(path))  # read back whole, then a weight replaced by a smaller one (as fp16 storage does)
    half = weight[:, :32].copy()
    proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(half, "w"))
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 32
    onnx_target.save(proto, path)
    assert data.stat().st_size == half.nbytes  # only the live tensor: no stale bytes of the first save
    x = np.ones((1, 64), np.float32)
    (y,) = ort.InferenceSession(str(path)).run(None, {"x": x})
    np.testing.assert_allclose(y, x @ half, rtol=1e-5)
