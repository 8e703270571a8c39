"""The RMSNorm form the Core ML target converts: exact in fp32, no fp16 overflow, right eps."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from sapiens_edge.export.rewrites import MaxScaledRMSNorm, scaled_norms  # noqa: E402


def _norm(dim: int = 64) -> nn.RMSNorm:
    torch.manual_seed(0)
    rms = nn.RMSNorm(dim, eps=1e-6)
    with torch.no_grad():
        rms.weight.copy_(1 + 0.3 * torch.randn(dim))
    return rms


@pytest.mark.parametrize("magnitude", [1e-4, 1e-2, 1.0, 300.0, 3e4])
def test_matches_rmsnorm_in_fp32_at_every_magnitude(magnitude):
    """Including rows of small activations, where eps matters (coremltools' own form gets them
    wrong) and large ones, whose squares overflow fp16."""
    rms = _norm()
    x = magnitude * torch.randn(4, 7, 64)
    torch.testing.assert_close(MaxScaledRMSNorm(rms)(x), rms(x), rtol=1e-5, atol=1e-6)


def test_fp16_stays_finite_where_plain_rmsnorm_overflows():
    rms = _norm()
    x = 3e3 * torch.randn(2, 5, 64)  # x^2 ~ 1e7 > fp16 max (65504)
    ref = rms(x)
    plain = x.half() * torch.rsqrt((x.half() * x.half()).mean(-1, keepdim=True) + 1e-6) * rms.weight.half()
    assert torch.isinf(x.half() * x.half()).any()
    assert (plain.float() - ref).abs().max() > 0.5  # squares overflow: rsqrt(inf) = 0 wipes rows out
    scaled = MaxScaledRMSNorm(rms).half()(x.half()).float()
    assert torch.isfinite(scaled).all()
    torch.testing.assert_close(scaled, ref, rtol=2e-2, atol=2e-2)


def test_rewrite_replaces_every_rmsnorm():
    model = nn.Sequential(_norm(8), nn.Linear(8, 8), nn.Sequential(_norm(8)))
    x = torch.randn(3, 8)
    ref = model(x)
    assert scaled_norms(model) == 2
    assert not any(isinstance(m, nn.RMSNorm) for m in model.modules())
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-6)
