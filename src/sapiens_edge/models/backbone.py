"""Sapiens2 ViT backbone (spec section 2): patch embed, optional 4K tokenizer, prefix tokens,
RoPE trunk with MHA/GQA blocks, final RMSNorm, feature-map output."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..zoo import BackboneArch
from .layers import EPS, Block
from .rope import RopeEmbedding

PATCH = 16
OutType = Literal["featmap", "raw", "cls_token"]


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.projection = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x).flatten(2).transpose(1, 2)  # (B, Hp*Wp, C), row-major tokens


class WindowTokenizer(nn.Module):
    """1B-4K: pool each 4x4 window of patch tokens into one token (spec 2.2), all windows in one
    batched pass (upstream's chunk loop is only a memory measure)."""

    def __init__(self, arch: BackboneArch):
        super().__init__()
        c, ws = arch.embed_dim, arch.window_size
        self.window_size = ws
        self.w_cls = nn.Parameter(torch.zeros(1, 1, c))
        self.local_pos_embed = nn.Parameter(torch.zeros(1, ws * ws + 1, c))
        self.blocks = nn.ModuleList(
            Block(c, arch.num_heads, arch.num_heads, arch.ffn_hidden, qk_norm=False, layer_scale=False)
            for _ in range(arch.tokenizer_layers)
        )

    def forward(self, x: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
        b, _, c = x.shape
        ws = self.window_size
        gh, gw = hp // ws, wp // ws
        x = x.reshape(b, gh, ws, gw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b * gh * gw, ws * ws, c)
        x = torch.cat([self.w_cls.expand(x.shape[0], -1, -1), x], dim=1) + self.local_pos_embed
        for blk in self.blocks:
            x = blk(x)
        return x[:, 0].reshape(b, gh * gw, c)


class Sapiens2Backbone(nn.Module):
    def __init__(self, arch: BackboneArch, out_type: OutType = "featmap"):
        super().__init__()
        c = arch.embed_dim
        self.arch = arch
        self.out_type = out_type
        self.num_prefix_tokens = 1 + arch.num_storage_tokens
        self.patch_embed = PatchEmbed(c)
        self.tokenizer = WindowTokenizer(arch) if arch.tokenizer_layers else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.storage_tokens = nn.Parameter(torch.zeros(1, arch.num_storage_tokens, c))
        self.rope_embed = RopeEmbedding(arch.head_dim, arch.rope_base)
        self.blocks = nn.ModuleList(
            Block(c, arch.num_heads, arch.kv_heads(i), arch.ffn_hidden) for i in range(arch.depth)
        )
        self.ln1 = nn.RMSNorm(c, eps=EPS)  # final norm (named ln1 upstream)

    def token_grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """Grid of trunk tokens (after the 4K tokenizer, if any) for an input size."""
        hp, wp = input_hw[0] // PATCH, input_hw[1] // PATCH
        if self.tokenizer is not None:
            ws = self.arch.window_size
            if hp % ws or wp % ws:
                from ..errors import InputSizeError

                raise InputSizeError(
                    f"{self.arch.size} with the 4K tokenizer needs height and width divisible by "
                    f"{PATCH * ws}, got {input_hw[0]}x{input_hw[1]}.")
            return hp // ws, wp // ws
        return hp, wp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        hp, wp = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        x = self.patch_embed(x)
        if self.tokenizer is not None:
            gh, gw = self.token_grid((hp * PATCH, wp * PATCH))
            x = self.tokenizer(x, hp, wp)
            hp, wp = gh, gw
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.storage_tokens.expand(b, -1, -1), x], dim=1)
        rope = self.rope_embed(hp, wp)
        for blk in self.blocks:
            x = blk(x, rope)
        x = self.ln1(x)
        if self.out_type == "raw":
            return x
        if self.out_type == "cls_token":
            return x[:, 0]
        # (B, Hp*Wp, C) -> (B, C, Hp, Wp); a permuted view, exactly as upstream hands it to heads.
        return x[:, self.num_prefix_tokens:].reshape(b, hp, wp, -1).permute(0, 3, 1, 2)
