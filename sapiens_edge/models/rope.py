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
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, tables: RopeTables) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k (B, heads, N, d); the leading N - Hp*Wp prefix tokens stay unrotated."""
    sin, cos = tables
    return _rotate(q, sin, cos), _rotate(k, sin, cos)


# Set by rope_constants(exact_bf16=False): rotate in plain fp32 (no bf16 rounding casts). For
# reduced-precision exports, whose own error is orders of magnitude above bf16 rounding.
_PLAIN_FP32 = False


def _rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    if sin.dtype != torch.bfloat16:
        if _PLAIN_FP32:
            prefix = x.shape[-2] - sin.shape[-2]
            r = x[:, :, prefix:]
            return torch.cat((x[:, :, :prefix], r * cos + rotate_half(r) * sin), dim=-2)
        return _rotate_emulated(x, sin, cos)
    dtype = x.dtype
    x = x.to(sin.dtype)  # the whole tensor, prefix included, round-trips through bf16
    prefix = x.shape[-2] - sin.shape[-2]
    rotated = (x[:, :, prefix:] * cos) + (rotate_half(x[:, :, prefix:]) * sin)
    return torch.cat((x[:, :, :prefix], rotated), dim=-2).to(dtype)


def _bf16_round(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(t.dtype)


def _rotate_emulated(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """The bf16 rotation in fp32 arithmetic with explicit bf16 rounding after each op (spec 8, 1b).

    For runtimes without bf16 math (ONNX Runtime CPU, TFLite): products of bf16 values are exact
    in fp32, so rounding each result to bf16 reproduces the eager bf16 ops.
    """
    dtype = x.dtype
    x = _bf16_round(x.float())
    prefix = x.shape[-2] - sin.shape[-2]
    r = x[:, :, prefix:]
    rotated = _bf16_round(_bf16_round(r * cos) + _bf16_round(rotate_half(r) * sin))
    return torch.cat((x[:, :, :prefix], rotated), dim=-2).to(dtype)


@contextmanager
def rope_constants(model: nn.Module, input_hw: tuple[int, int], *, emulate_bf16: bool = False,
                   exact_bf16: bool = True) -> Iterator[None]:
    """Freeze every RoPE table of `model` for `input_hw` as constant tensors.

    Inside the block, tracing (torch.export) sees precomputed tables instead of
    arange/meshgrid/sin/cos, so each exported graph carries its own per-size constants.
    `emulate_bf16=True` stores the (exact) bf16 values as fp32 and rotates in fp32 with explicit
    bf16 rounding casts: same numbers, no bf16 arithmetic in the graph. `exact_bf16=False` (with
    `emulate_bf16`) drops those casts: the bf16-valued tables rotate in plain fp32, which differs
    from the reference by bf16 rounding of q and k only.
    """
    global _PLAIN_FP32
    ropes = [m for m in model.modules() if isinstance(m, RopeEmbedding)]
    for m in ropes:
        grid = _token_grid(model, input_hw)
        with torch.no_grad():
            sin, cos = compute_tables(m.periods, *grid)
            m._constants[grid] = (sin.float(), cos.float()) if emulate_bf16 else (sin, cos)
    previous, _PLAIN_FP32 = _PLAIN_FP32, emulate_bf16 and not exact_bf16
    try:
        yield
    finally:
        _PLAIN_FP32 = previous
        for m in ropes:
            m._constants.clear()


def _token_grid(model: nn.Module, input_hw: tuple[int, int]) -> tuple[int, int]:
    backbone = getattr(model, "backbone", model)
    return backbone.token_grid(input_hw)
