"""RoPE tables against the spec's reference values (2.4) and export-constant behaviour."""

from __future__ import annotations

import pytest
import torch

from sapiens_edge.models import RopeEmbedding, Sapiens2Backbone, rope_constants
from sapiens_edge.models.rope import compute_tables
from tests.helpers import TINY, randomize_

PERIODS = {
    64: [1.0, 1.3359375, 1.78125, 2.375, 3.15625, 4.21875, 5.625, 7.5, 10.0, 13.3125, 17.75, 23.75,
         31.625, 42.25, 56.25, 75.0],
    80: [1.0, 1.2578125, 1.5859375, 2.0, 2.515625, 3.15625, 4.0, 5.0, 6.3125, 7.90625, 10.0, 12.625,
         15.9375, 19.75, 25.0, 31.625, 40.0, 50.5, 62.75, 79.0],
    76: [1.0, 1.2734375, 1.625, 2.078125, 2.640625, 3.375, 4.28125, 5.46875, 6.96875, 8.875, 11.3125,
         14.3125, 18.375, 23.25, 30.0, 37.75, 48.75, 61.5, 79.0],
}
SUMS = {64: (5.293, 129440.34), 80: (2.8984, 163237.94), 76: (5.0332, 154899.34)}


@pytest.mark.parametrize("d", [64, 80, 76])
def test_periods_and_table_sums(d):
    rope = RopeEmbedding(d)
    assert rope.periods.dtype == torch.bfloat16
    assert rope.periods.tolist() == PERIODS[d]
    sin, cos = compute_tables(rope.periods, 64, 48)
    assert sin.shape == cos.shape == (64 * 48, d) and sin.dtype == torch.bfloat16
    ssum, csum = SUMS[d]
    assert sin.double().sum().item() == pytest.approx(ssum, abs=5e-4)
    assert cos.double().sum().item() == pytest.approx(csum, abs=5e-3)


def test_reference_first_values_d64():
    sin, cos = compute_tables(RopeEmbedding(64).periods, 64, 48)
    assert sin[0, :4].tolist() == [0.095703125, 0.99609375, 0.322265625, -0.5078125]
    assert cos[0, :4].tolist() == [0.99609375, -0.08740234375, -0.9453125, -0.86328125]


def test_y_angles_before_x_angles():
    sin, _ = compute_tables(RopeEmbedding(64).periods, 4, 3)
    # token 1 and token 0 share the row (same y): the y block (first d/4) is identical
    assert torch.equal(sin[0, :16], sin[1, :16]) and not torch.equal(sin[0, 16:32], sin[1, 16:32])
    assert torch.equal(sin[:, :32], sin[:, 32:])  # tiled twice


def test_periods_stay_bf16_through_float_and_half():
    model = Sapiens2Backbone(TINY).float()
    assert model.rope_embed.periods.dtype == torch.bfloat16
    assert model.half().rope_embed.periods.dtype == torch.bfloat16


def test_rope_constants_give_bitwise_identical_outputs():
    model = randomize_(Sapiens2Backbone(TINY).eval())
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        eager = model(x)
        with rope_constants(model, (128, 96)):
            assert (8, 6) in model.rope_embed._constants
            frozen = model(x)
    assert torch.equal(eager, frozen)
    assert not model.rope_embed._constants  # cleared on exit


def test_rope_constants_are_baked_into_an_exported_graph():
    model = randomize_(Sapiens2Backbone(TINY).eval())
    x = torch.randn(1, 3, 128, 96)
    with rope_constants(model, (128, 96)):
        ep = torch.export.export(model, (x,))
    ops = {str(n.target).split(".")[1] for n in ep.graph.nodes if str(n.target).startswith("aten.")}
    assert not ops & {"sin", "cos", "arange", "meshgrid", "stack", "tile"}, ops
    assert len(ep.constants) == 2  # the sin and cos tables
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x), atol=0, rtol=0)


def test_emulated_bf16_rope_is_bitwise_equal_to_native():
    model = randomize_(Sapiens2Backbone(TINY).eval())
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        native = model(x)
        with rope_constants(model, (128, 96), emulate_bf16=True):
            assert model.rope_embed._constants[(8, 6)][0].dtype == torch.float32
            emulated = model(x)
            ep = torch.export.export(model, (x,))
    assert torch.equal(native, emulated)
    # only casts touch bf16 in the emulated graph: no bf16 arithmetic
    bf16_math = [n for n in ep.graph.nodes if n.op == "call_function" and "mul" in str(n.target)
                 and n.meta["val"].dtype == torch.bfloat16]
    assert not bf16_math


def test_bf16_rounding_by_arithmetic_equals_the_cast():
    """Veltkamp's split (x * 65537, two subtractions) rounds fp32 to bf16 exactly as the cast does
    (round to nearest, ties to even): random bit patterns across the normal range, and exact ties.
    (Subnormals below 2^-126 may differ by one bf16 step: no activation of these models is one.)"""
    from sapiens_edge.models.rope import bf16_round_arith

    gen = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2**31 - 1, (2_000_000,), generator=gen, dtype=torch.int64).to(torch.int32)
    x = bits.view(torch.float32)
    x = x[torch.isfinite(x) & (x.abs() < 2.0**100) & (x.abs() >= torch.finfo(torch.float32).tiny)]  # normals
    ties = ((x.view(torch.int32) & ~0xFFFF) | 0x8000).view(torch.float32)  # exactly half a bf16 step
    for values in (x, -x, ties, -ties, torch.tensor([0.0, 1.0, 3.0, 1e-30, 65504.0])):
        assert torch.equal(bf16_round_arith(values), values.to(torch.bfloat16).float())


def test_arithmetic_rounding_gives_the_same_rotation():
    """rope_constants(rounding="arith"): the emulated bf16 rotation without casts, bit for bit."""
    model = randomize_(Sapiens2Backbone(TINY).eval())
    x = torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    outs = {}
    for rounding in ("cast", "arith"):
        with torch.no_grad(), rope_constants(model, (128, 96), emulate_bf16=True, rounding=rounding):
            outs[rounding] = model(x)
    assert torch.equal(outs["cast"], outs["arith"])
    with pytest.raises(ValueError, match="rounding"), rope_constants(model, (128, 96), rounding="floor"):
        pass
