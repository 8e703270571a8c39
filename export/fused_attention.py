"""ONNX Runtime's fused `com.microsoft.MultiHeadAttention` for the trunk's attention (a rewrite).

The opset-23 `Attention` op takes (B, heads, N, d) tensors, so the graph transposes q, k, v and
the output around it, and ONNX Runtime's CPU kernel materialises every N x N score matrix. The
contrib op takes (B, N, heads*d) directly and runs a tiled kernel: 110 ms against 159 ms per 0.1b
layer at 1024x768 on 2 threads (N = 3077, 12 heads). The rewrite keeps the block in (B, N, heads,
d) layout (RMSNorm over d, the kv expansion and RoPE do not care) and calls a custom op that the
ONNX lowering translates to the contrib op. Such a graph needs ONNX Runtime; every execution
provider of it (CPU, CUDA, TensorRT's CUDA fallback) implements the op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sapiens_edge.models.layers import Attention
from sapiens_edge.models.rope import RopeTables, apply_rope

MSFT_DOMAIN = "com.microsoft"


@torch.library.custom_op("sapiens_edge::multihead_attention", mutates_args=())
def multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Softmax attention on (B, N, heads*d) tensors with 1/sqrt(d) scaling, as the contrib op."""
    b, n = q.shape[:2]

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, t.shape[1], num_heads, -1).transpose(1, 2)

    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
    return out.transpose(1, 2).reshape(b, n, -1)


@multihead_attention.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    return q.new_empty((q.shape[0], q.shape[1], v.shape[2]))


def onnx_translation():
    """The exporter's translation table entry: custom op -> com.microsoft.MultiHeadAttention."""
    from onnxscript.values import Op, Opset

    # The ONNX schema registry does not know ONNX Runtime's contrib ops: give the exporter the
    # part of the schema we use (query, key, value in; output out; num_heads).
    mha = Op(Opset(MSFT_DOMAIN, 1), "MultiHeadAttention", _mha_schema())

    def multihead_attention_onnx(q, k, v, num_heads: int):
        return mha(q, k, v, num_heads=num_heads)

    return {torch.ops.sapiens_edge.multihead_attention.default: multihead_attention_onnx}


def _mha_schema():
    from onnx.defs import OpSchema

    t = "T"
    param = OpSchema.FormalParameter
    return OpSchema(
        "MultiHeadAttention", MSFT_DOMAIN, 1,
        inputs=[param("query", t), param("key", t), param("value", t)],
        outputs=[param("output", t)],
        type_constraints=[(t, ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "number of heads")])


class TokenMajorAttention(nn.Module):
    """`layers.Attention` computed in (B, N, heads, d) layout around the fused attention op;
    the same parameters, so the same state_dict."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.inner = attn

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        a = self.inner
        b, n, c = x.shape
        q = a.wq(x).reshape(b, n, a.num_heads, a.head_dim)
        k = a.wk(x).reshape(b, n, a.num_kv_heads, a.head_dim)
        v = a.wv(x).reshape(b, n, a.num_kv_heads, a.head_dim)
        if a.q_norm is not None:
            q, k = a.q_norm(q), a.k_norm(k)
        if a.num_kv_heads != a.num_heads:
            k, v = _expand_kv_token_major(k, a.num_heads), _expand_kv_token_major(v, a.num_heads)
        if rope is not None:
            q, k = apply_rope(q, k, rope, token_dim=1)
        out = multihead_attention(q.reshape(b, n, c), k.reshape(b, n, c), v.reshape(b, n, c), a.num_heads)
        out = a.proj(out)
        return a.gamma(out) if a.gamma is not None else out


def _expand_kv_token_major(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """kv head j serves query heads r*j ... r*j + r-1 (as `layers._expand_kv`), in (B, N, kv, d)."""
    b, n, kv, d = t.shape
    return t[:, :, :, None].expand(b, n, kv, num_heads // kv, d).reshape(b, n, num_heads, d)


def fused_attention(model: nn.Module) -> int:
    """Wrap every `Attention` of `model` in `TokenMajorAttention`; returns how many."""
    from .rewrites import _replace

    return _replace(model, lambda m: isinstance(m, Attention), TokenMajorAttention)
