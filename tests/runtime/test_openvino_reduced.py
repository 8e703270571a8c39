"""runtime/backends/openvino_reduced: chosen op types computed in bf16 inside an f32 model, the rest untouched;
the reference is numpy on bf16-rounded inputs (torch's bf16 rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from sapiens_edge.runtime.backends.openvino_reduced import reduce_ops

ov = pytest.importorskip("openvino")
torch = pytest.importorskip("torch")
ops = pytest.importorskip("openvino.opset13")


def _bf16(a: np.ndarray) -> np.ndarray:
    return torch.from_numpy(a).to(torch.bfloat16).float().numpy()


def _model(w: np.ndarray) -> ov.Model:
    x = ops.parameter([4, w.shape[0]], np.float32, name="x")
    y = ops.matmul(x, ops.constant(w), False, False)
    return ov.Model([ops.add(y, ops.constant(np.float32(0.5)))], [x])


def _compile(model: ov.Model):
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _run(model: ov.Model, x: np.ndarray) -> np.ndarray:
    return np.array(_compile(model).create_infer_request().infer([x])[0])


def test_the_chosen_ops_run_in_bf16_and_the_rest_in_f32():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    model = _model(w)
    exact = _run(model, x)
    np.testing.assert_allclose(exact, x @ w + np.float32(0.5), rtol=1e-5, atol=1e-5)
    assert reduce_ops(model, ["MatMul"], "bf16") == 1
    converts = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convert"]
    assert sorted(op.get_output_element_type(0).get_type_name() for op in converts) == ["bf16", "bf16", "f32"]
    got = _run(model, x)
    # bf16 arithmetic's error, whatever the kernel's blocking: within a few bf16 steps of the products' magnitude.
    bound = 2**-6 * (np.abs(x) @ np.abs(w))
    assert np.all(np.abs(got - exact) <= bound), np.abs(got - exact).max()
    assert np.abs(got - exact).max() > 1e-3  # the reduction is visible: this test can fail
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):  # what the plugin ran, read back
        ran = {op.get_rt_info()["layerType"].astype(str): op.get_rt_info()["runtimePrecision"].astype(str)
               for op in _compile(model).get_runtime_model().get_ordered_ops()}
        assert ran["FullyConnected"] == "bf16" and ran["Output"] == "f32", ran


def test_other_ops_and_integer_inputs_are_left_alone():
    rng = np.random.default_rng(1)
    model = _model(rng.standard_normal((8, 8)).astype(np.float32))
    assert reduce_ops(model, ["ConvolutionBackpropData"], "bf16") == 0
    assert not [op for op in model.get_ordered_ops() if op.get_type_name() == "Convert"]
    with pytest.raises(RuntimeError, match="precision"):
        reduce_ops(model, ["MatMul"], "f32")
