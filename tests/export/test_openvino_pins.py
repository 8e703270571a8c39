"""`export.openvino.output_layers` / `pinned_ops` on small hand-built graphs: what the f32 pins reach."""

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
ops = pytest.importorskip("openvino.opset13")

from sapiens_edge.export.openvino import output_layers, pinned_ops  # noqa: E402


def _const(*shape: int) -> object:
    return ops.constant(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def _two_output_model() -> object:
    """image -> conv -> relu -> conv -> +bias -> "map";  image -> mean -> matmul -> "scale" (pointmap's shape)."""
    x = ops.parameter([1, 3, 8, 8], ov.Type.f32, name="image")
    c1 = ops.convolution(x, _const(4, 3, 3, 3), [1, 1], [1, 1], [1, 1], [1, 1], name="body_conv")
    c2 = ops.convolution(ops.relu(c1, name="body_relu"), _const(2, 4, 1, 1), [1, 1], [0, 0], [0, 0], [1, 1],
                         name="out_conv")
    out_map = ops.add(c2, _const(1, 2, 1, 1), name="out_bias")
    pooled = ops.reduce_mean(c1, ops.constant(np.array([2, 3], np.int64)), keep_dims=False, name="pool")
    scale = ops.matmul(pooled, _const(4, 1), False, False, name="scale_linear")
    model = ov.Model([ops.result(out_map, name="map"), ops.result(scale, name="scale")], [x])
    return model


def test_output_layers_are_the_weighted_ops_nearest_each_output():
    names = {op.get_friendly_name() for op in output_layers(_two_output_model())}
    assert names == {"out_conv", "scale_linear"}


def test_pins_reach_the_output_layers_and_what_follows_them_only():
    pinned = pinned_ops(_two_output_model())
    assert set(pinned) == {"out_conv", "out_bias", "scale_linear"}, pinned
    # Upstream work (the body's conv, its ReLU, the pooling) stays at the hint's precision.
    assert not {"body_conv", "body_relu", "pool"} & set(pinned)
