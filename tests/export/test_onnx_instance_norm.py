"""The InstanceNormalization -> LayerNormalization rewrite of ONNX graphs: the same numbers in ONNX
Runtime, on a one-node graph with a large-mean input (where E[x^2] - E[x]^2 would lose digits)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge.export.onnx_instance_norm import instance_norm_as_layer_norm  # noqa: E402


def _instance_norm_model(shape, eps=1e-5, value_info=True):
    rng = np.random.default_rng(0)
    c = shape[1]
    graph = helper.make_graph(
        [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], name="norm", epsilon=eps),
         helper.make_node("Relu", ["y"], ["out"], name="after")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(rng.normal(size=c).astype(np.float32), "s"),
         numpy_helper.from_array(rng.normal(size=c).astype(np.float32), "b")],
        value_info=[helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)] if value_info else None)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    return model


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("shape", [[1, 8, 32, 24], [2, 3, 5, 7]])
def test_same_numbers_as_instance_norm(shape):
    model = _instance_norm_model(shape, eps=1e-3)
    x = (np.random.default_rng(1).normal(size=shape) * 4 + 30).astype(np.float32)
    before = _run(model, x)
    assert instance_norm_as_layer_norm(model) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "InstanceNormalization" not in ops and ops.count("LayerNormalization") == 1 and ops[-1] == "Relu"
    after = _run(model, x)
    np.testing.assert_allclose(after, before, rtol=0, atol=2e-5)  # fp32, another summation order
    assert instance_norm_as_layer_norm(model) == 0  # nothing left to rewrite


def test_an_input_without_a_static_shape_is_refused():
    model = _instance_norm_model([1, 4, 8, 8], value_info=False)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(RuntimeError, match="no static NCHW shape"):  # our bug: a plain error with its traceback
        instance_norm_as_layer_norm(model)
