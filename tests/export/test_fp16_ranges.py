"""fp16 headroom of activations, measured in fp32."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from sapiens_edge.export.fp16_ranges import FP16_MAX, activation_ranges  # noqa: E402


def test_finds_the_largest_activation_and_rmsnorm_squares():
    model = nn.Sequential(nn.Linear(4, 4), nn.RMSNorm(4), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4) * 300.0)
        model[0].bias.zero_()
    x = torch.tensor([[1.0, -2.0, 0.5, 0.0]])
    r = activation_ranges(model, x)
    assert r["where"] == "0" and r["max_abs"] == pytest.approx(600.0)
    assert r["headroom"] == pytest.approx(FP16_MAX / 600.0)
    # the plain RMSNorm's sum of squares: (300^2)(1 + 4 + 0.25) -- past fp16 although every output fits
    assert r["rmsnorm_sum_sq_max"] == pytest.approx(300.0**2 * 5.25) and r["rmsnorm_sum_sq_max"] > FP16_MAX
