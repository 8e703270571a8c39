"""2-D rotary position embedding, computed in bfloat16 exactly as upstream does (spec 2.4).

Even in an fp32 model the sin/cos tables are bf16 and q/k are rounded to bf16 and rotated
with bf16 rounding after each op; reproducing that sequence is what makes outputs bit-exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

RopeTables = tuple[torch.Tensor, torch.Tensor]  # (sin, cos), each (Hp*Wp, d), bf16


class RopeEmbedding(nn.Module):
    def __init__(self, head_dim: int, base: float = 100.0, device: torch.device | str | None = None):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE needs a head dim divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        # Upstream builds the periods with bf16 arithmetic; the persistent buffer loaded from the
        # checkpoint is what counts afterwards, so it is never recomputed after loading.
        idx = torch.arange(head_dim // 4, dtype=torch.bfloat16, device=device)
        self.register_buffer("periods", base ** (2 * idx / (head_dim // 2)), persistent=True)
        # Per-grid constant tables, set only inside `rope_constants` (for export capture).
        self._constants: dict[tuple[int, int], RopeTables] = {}

    def _apply(self, fn, recurse=True):
        # Keep the periods bf16 through .float()/.half(): casting them silently changes RoPE.
        periods = self.periods
        out = super()._apply(fn, recurse)
        if self.periods.dtype != torch.bfloat16 and periods.dtype == torch.bfloat16:
            self.periods = self.periods.to(torch.bfloat16)
        return out

    def forward(self, hp: int, wp: int) -> RopeTables:
        if (hp, wp) in self._constants:
            return self._constants[(hp, wp)]
        return compute_tables(self.periods, hp, wp)


def compute_tables(periods: torch.Tensor, hp: int, wp: int) -> RopeTables:
    """sin/cos tables for an (hp, wp) patch grid, every op rounded in the periods' dtype."""
    dd = {"device": periods.device, "dtype": periods.dtype}
    coords_h = torch.arange(0.5, hp, **dd) / hp
    coords_w = torch.arange(0.5, wp, **dd) / wp
    coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
    coords = 2.0 * coords - 1.0  # (hp*wp, 2), y first
    angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # (hp*wp, 2, d/4)
    angles = angles.flatten(1, 2).tile(2)  # [y, x, y, x] blocks of d/4
    return torch.sin(angles), torch.cos(angles)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2  # two slices rather than chunk(): a split op is not lowered by every delegate
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, tables: RopeTables, *,
               token_dim: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k, (B, heads, N, d) by default or (B, N, heads, d) with `token_dim=1`; the
    leading N - Hp*Wp prefix tokens stay unrotated."""
    sin, cos = tables
    if token_dim == 1:  # tables broadcast over the heads axis that follows the tokens
        sin, cos = sin[:, None], cos[:, None]
    elif token_dim != 2:
        raise ValueError(f"token_dim must be 1 or 2, got {token_dim}")
    return _rotate(q, sin, cos, token_dim), _rotate(k, sin, cos, token_dim)


# Set by rope_constants(exact_bf16=False): rotate in plain fp32 (no bf16 rounding casts). For
# reduced-precision exports, whose own error is orders of magnitude above bf16 rounding.
_PLAIN_FP32 = False


def _split(x: torch.Tensor, sin: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prefix tokens, grid tokens) of x along its token axis."""
    grid = sin.shape[0]
    prefix = x.shape[dim] - grid
    return x.narrow(dim, 0, prefix), x.narrow(dim, prefix, grid)


def _rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, dim: int) -> torch.Tensor:
    if sin.dtype != torch.bfloat16:
        if _PLAIN_FP32:  # in the activations' own dtype (fp16 programs stay fp16)
            head, r = _split(x, sin, dim)
            sin, cos = sin.to(x.dtype), cos.to(x.dtype)
            return torch.cat((head, r * cos + rotate_half(r) * sin), dim=dim)
        return _rotate_emulated(x, sin, cos, dim)
    dtype = x.dtype
    x = x.to(sin.dtype)  # the whole tensor, prefix included, round-trips through bf16
    head, r = _split(x, sin, dim)
    rotated = (r * cos) + (rotate_half(r) * sin)
    return torch.cat((head, rotated), dim=dim).to(dtype)


# Set by rope_constants(rounding="arith"): round to bf16 with fp32 arithmetic instead of casts.
_ARITH_ROUND = False
VELTKAMP_BF16 = 65537.0  # 2^(24 - 8) + 1: splits an fp32 significand after its top 8 bits


def _bf16_round(t: torch.Tensor) -> torch.Tensor:
    if _ARITH_ROUND:
        return bf16_round_arith(t)
    return t.to(torch.bfloat16).to(t.dtype)


def bf16_round_arith(t: torch.Tensor) -> torch.Tensor:
    """fp32 -> nearest bf16 value (ties to even), as fp32, with a multiply and two subtractions
    (Veltkamp's split): for runtimes whose fast kernels take no bf16 cast (LiteRT's XNNPACK leaves
    every CAST to its reference kernels, splitting the graph in ~60 pieces). Equal to the cast for
    every normal fp32 below 2^111 in magnitude (tested, ties included); larger ones overflow, and
    subnormals (below 2^-126) may land one bf16 step away."""
    c = t * VELTKAMP_BF16
    return c - (c - t)


def _rotate_emulated(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, dim: int) -> torch.Tensor:
    """The bf16 rotation in fp32 arithmetic with explicit bf16 rounding after each op (spec 8, 1b).

    For runtimes without bf16 math (ONNX Runtime CPU, TFLite): products of bf16 values are exact
    in fp32, so rounding each result to bf16 reproduces the eager bf16 ops.
    """
    dtype = x.dtype
    x = _bf16_round(x.float())
    head, r = _split(x, sin, dim)
    rotated = _bf16_round(_bf16_round(r * cos) + _bf16_round(rotate_half(r) * sin))
    return torch.cat((head, rotated), dim=dim).to(dtype)


@contextmanager
def rope_constants(model: nn.Module, input_hw: tuple[int, int], *, emulate_bf16: bool = False,
                   exact_bf16: bool = True, rounding: str = "cast") -> Iterator[None]:
    """Freeze every RoPE table of `model` for `input_hw` as constant tensors.

    Inside the block, tracing (torch.export) sees precomputed tables instead of
    arange/meshgrid/sin/cos, so each exported graph carries its own per-size constants.
    `emulate_bf16=True` stores the (exact) bf16 values as fp32 and rotates in fp32 with explicit
    bf16 rounding casts: same numbers, no bf16 arithmetic in the graph. `exact_bf16=False` (with
    `emulate_bf16`) drops those casts: the bf16-valued tables rotate in plain fp32, which differs
    from the reference by bf16 rounding of q and k only. `rounding="arith"` does the exact
    rounding with fp32 arithmetic (`bf16_round_arith`) instead of casts.
    """
    global _PLAIN_FP32, _ARITH_ROUND
    if rounding not in ("cast", "arith"):
        raise ValueError(f"rounding must be 'cast' or 'arith', not {rounding!r}")
    ropes = [m for m in model.modules() if isinstance(m, RopeEmbedding)]
    plain = emulate_bf16 and not exact_bf16
    # Plain rotation: tables in the model's compute dtype (an fp16 program gets fp16 constants).
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32) if plain else None
    for m in ropes:
        grid = _token_grid(model, input_hw)
        with torch.no_grad():
            sin, cos = compute_tables(m.periods, *grid)
            m._constants[grid] = (sin.to(dtype or torch.float32), cos.to(dtype or torch.float32)) if emulate_bf16 \
                else (sin, cos)
    previous, _PLAIN_FP32 = _PLAIN_FP32, plain
    previous_round, _ARITH_ROUND = _ARITH_ROUND, rounding == "arith"
    try:
        yield
    finally:
        _PLAIN_FP32, _ARITH_ROUND = previous, previous_round
        for m in ropes:
            m._constants.clear()


def _token_grid(model: nn.Module, input_hw: tuple[int, int]) -> tuple[int, int]:
    backbone = getattr(model, "backbone", model)
    return backbone.token_grid(input_hw)
