"""The export rewrites (export/rewrites.py, export/fused_attention.py) on their own: each computes the
module it replaces, and each counts what it rewrote on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sapiens_edge.export.fused_attention import TokenMajorAttention, fused_attention
from sapiens_edge.export.rewrites import SubPixelConvTranspose, subpixel_deconv
from sapiens_edge.export.rewrites import hadamard as hadamard_matrix
from sapiens_edge.validation import metrics as M
from tests.export.shared import photo_input, tiny_model, torch_outputs
from tests.helpers import randomize_


def test_subpixel_rewrite_is_exact_up_to_rounding():
    torch.manual_seed(0)
    deconv = torch.nn.ConvTranspose2d(12, 5, 4, stride=2, padding=1, bias=False)
    x = torch.randn(2, 12, 7, 6)
    with torch.no_grad():
        np.testing.assert_allclose(SubPixelConvTranspose(deconv)(x).numpy(), deconv(x).numpy(), atol=1e-5)
    model = tiny_model("seg")
    ref = torch_outputs(model, photo_input("seg", model.sapiens_info.input_hw))
    assert subpixel_deconv(model) == 4  # the seg head's four deconv units
    out = torch_outputs(model, photo_input("seg", model.sapiens_info.input_hw))
    assert M.rel_l2(ref[0], out[0]) < 1e-5


@pytest.mark.parametrize("kv_heads", [4, 2])  # MHA and GQA blocks
def test_token_major_attention_is_exact(kv_heads):
    """The fused-attention rewrite computes the same numbers as the reference block (same ops, another
    memory layout), with RoPE on a grid behind 5 prefix tokens."""
    from sapiens_edge.models.layers import Attention
    from sapiens_edge.models.rope import RopeEmbedding

    torch.manual_seed(0)
    attn = randomize_(Attention(64, 4, kv_heads).eval())
    x = torch.randn(1, 5 + 6 * 4, 64)
    tables = RopeEmbedding(16)(6, 4)
    with torch.no_grad():
        ref = attn(x, tables)
        out = TokenMajorAttention(attn)(x, tables)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    model = tiny_model("pose")
    assert fused_attention(model) == model.sapiens_info.arch.depth


def test_split_swiglu_is_exact():
    from sapiens_edge.export.rewrites import SplitSwiGLU, split_swiglu
    from sapiens_edge.models.layers import SwiGLUFFN

    torch.manual_seed(0)
    ffn = randomize_(SwiGLUFFN(32, 48).eval())
    x = torch.randn(1, 7, 32)
    with torch.no_grad():
        torch.testing.assert_close(SplitSwiGLU(ffn)(x), ffn(x), rtol=0, atol=1e-6)
    model = tiny_model("seg")
    assert split_swiglu(model) == model.sapiens_info.arch.depth


def test_rotated_ffn_input_is_exact_and_evens_out_the_int8_input():
    from sapiens_edge.export.rewrites import RotatedInputLinear, rotate_ffn_input
    from sapiens_edge.models.layers import SwiGLUFFN

    h = hadamard_matrix(64)
    torch.testing.assert_close(h @ h, torch.eye(64), rtol=0, atol=1e-6)  # orthonormal and symmetric
    torch.manual_seed(0)
    ffn = randomize_(SwiGLUFFN(64, 256).eval())
    x = torch.randn(1, 50, 64)
    with torch.no_grad():
        plain = ffn(x)
        rotated = RotatedInputLinear(ffn.w3, 64)
        gate, value = ffn.w12(x).chunk(2, dim=-1)
        hidden = torch.nn.functional.silu(gate) * value
        torch.testing.assert_close(rotated(hidden), plain, rtol=1e-5, atol=1e-5)
        # What a per-tensor int8 range sees: the peak over the spread, lower once rotated.
        turned = rotated.rotate(hidden)
        assert turned.abs().max() / turned.std() < 0.8 * (hidden.abs().max() / hidden.std())
    model = tiny_model("seg")
    assert rotate_ffn_input(model) == model.sapiens_info.arch.depth
    assert rotate_ffn_input(model) == 0  # already rotated
