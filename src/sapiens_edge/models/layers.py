"""Transformer building blocks of the Sapiens2 trunk (spec 2.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rope import RopeTables, apply_rope

EPS = 1e-6


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1e-4):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class Attention(nn.Module):
    """MHA or GQA self-attention with optional q/k RMSNorm, RoPE and LayerScale."""

    # The attention kernel on (B, heads, N, d) tensors; export rewrites may swap in an equivalent.
    kernel = staticmethod(F.scaled_dot_product_attention)
    # GQA: kv heads -> query heads on (B, kv, N, d); export rewrites may swap in an equivalent.
    expand_kv = staticmethod(lambda t, num_heads: _expand_kv(t, num_heads))

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, *, qk_norm: bool = True,
                 layer_scale: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = dim // num_heads
        kv_dim = num_kv_heads * self.head_dim
        self.wq = nn.Linear(dim, dim)
        self.wk = nn.Linear(dim, kv_dim)
        self.wv = nn.Linear(dim, kv_dim)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=EPS) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=EPS) if qk_norm else None
        self.proj = nn.Linear(dim, dim)
        self.gamma = LayerScale(dim) if layer_scale else None

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q = self.wq(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).reshape(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).reshape(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)  # per head vector, k at kv heads
        if self.num_kv_heads != self.num_heads:
            k, v = self.expand_kv(k, self.num_heads), self.expand_kv(v, self.num_heads)
        if rope is not None:
            q, k = apply_rope(q, k, rope)
        x = self.kernel(q, k, v)
        x = self.proj(x.transpose(1, 2).reshape(b, n, c))
        return self.gamma(x) if self.gamma is not None else x


def _expand_kv(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """kv head j serves query heads (r*j ... r*j + r-1): repeat_interleave as expand+reshape,
    which exporters lower to plain broadcast ops (spec 8, item 4)."""
    b, kv, n, d = t.shape
    return t[:, :, None].expand(b, kv, num_heads // kv, n, d).reshape(b, num_heads, n, d)


class SwiGLUFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)  # first half gates, second half is the value
        return self.w3(F.silu(gate) * value)


class Block(nn.Module):
    """Pre-norm residual block; LayerScale lives inside the attention branch only."""

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, ffn_hidden: int, *,
                 qk_norm: bool = True, layer_scale: bool = True):
        super().__init__()
        self.ln1 = nn.RMSNorm(dim, eps=EPS)
        self.attn = Attention(dim, num_heads, num_kv_heads, qk_norm=qk_norm, layer_scale=layer_scale)
        self.ln2 = nn.RMSNorm(dim, eps=EPS)
        self.ffn = SwiGLUFFN(dim, ffn_hidden)

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), rope)
        return x + self.ffn(self.ln2(x))
