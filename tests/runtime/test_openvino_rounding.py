"""runtime/backends/openvino_rounding: bf16 round trips rewritten as f32 arithmetic that rounds as bf16 does
(torch's round-to-nearest-even is the reference), and nothing else touched."""

from __future__ import annotations

import numpy as np
import pytest

from sapiens_edge.runtime.backends.openvino_rounding import exact_bf16_round_trips

ov = pytest.importorskip("openvino")
torch = pytest.importorskip("torch")
ops = pytest.importorskip("openvino.opset13")


def _round_trip_model(shape: tuple[int, ...]) -> ov.Model:
    x = ops.parameter(shape, np.float32, name="x")
    back = ops.convert(ops.convert(x, "bf16"), "f32")
    return ov.Model([ops.add(back, x)], [x])  # a consumer after the round trip, as RoPE's Multiply/Add


def _values(rng: np.random.Generator) -> np.ndarray:
    """Normal values over 16 decades, plus ties (low 16 bits exactly half a bf16 step), zeros and signs."""
    spread = rng.standard_normal(40000) * 10.0 ** rng.integers(-8, 8, 40000)
    ties = ((rng.integers(0, 2**31, 20000, dtype=np.uint64).astype(np.uint32) & 0x7FFF0000) | 0x8000).view(np.float32)
    ties = ties[np.isfinite(ties) & (np.abs(ties) > 1e-30) & (np.abs(ties) < 1e30)]
    return np.concatenate([spread.astype(np.float32), ties, -ties, np.zeros(8, np.float32)])


def test_round_trip_becomes_arithmetic_that_rounds_like_bf16():
    x = _values(np.random.default_rng(0))
    model = _round_trip_model(x.shape)
    assert exact_bf16_round_trips(model) == 1
    assert not any(op.get_type_name() == "Convert" for op in model.get_ordered_ops())
    out = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})([x])[0]
    expected = torch.from_numpy(x).to(torch.bfloat16).float().numpy() + x
    assert np.array_equal(out, expected)  # bit-exact, ties to even included


def test_other_converts_are_left_alone():
    x = ops.parameter((4,), np.float32, name="x")
    to_f16 = ops.convert(ops.convert(x, "f16"), "f32")  # f16, not bf16
    kept_bf16 = ops.convert(x, "bf16")  # a bf16 output read as bf16
    model = ov.Model([to_f16, kept_bf16], [x])
    assert exact_bf16_round_trips(model) == 0
    assert sum(op.get_type_name() == "Convert" for op in model.get_ordered_ops()) == 3
