"""Backbone + decode head, with the state_dict layout of the released task files."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputSizeError
from ..zoo import ModelInfo
from .backbone import Sapiens2Backbone
from .heads import HEADS


class Sapiens2TaskModel(nn.Module):
    def __init__(self, info: ModelInfo):
        super().__init__()
        assert info.head is not None
        self.info = info
        self.task = info.task
        self.backbone = Sapiens2Backbone(info.arch, out_type="featmap")
        self.decode_head = HEADS[info.task](info.arch.embed_dim, info.head)

    def forward(self, x: torch.Tensor):
        if self.info.fixed_input_size and tuple(x.shape[-2:]) != self.info.input_hw:
            h, w = self.info.input_hw
            raise InputSizeError(
                f"{self.info.name} runs at {h}x{w} only: its scale branch (Flatten -> Linear(6144)) is "
                f"tied to the 64x48 patch grid, got {x.shape[-2]}x{x.shape[-1]}. Resize/pad the "
                f"image to {h}x{w} (the runtime's preprocessing does this).")
        return self.decode_head(self.backbone(x))
