"""Build zoo models (meta device for loading, seeded random init otherwise)."""

from __future__ import annotations

import torch
from torch import nn

from ..zoo import ModelInfo
from .backbone import Sapiens2Backbone
from .estimator import Sapiens2TaskModel
from .layers import LayerScale


def build_model(info: ModelInfo, device: str | torch.device = "cpu") -> nn.Module:
    """Instantiate the module tree. On the meta device nothing is allocated (load with assign)."""
    with torch.device(device):
        if info.task == "backbone":
            return Sapiens2Backbone(info.arch, out_type="featmap")
        return Sapiens2TaskModel(info)


@torch.no_grad()
def random_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic random weights of plausible scale (trunc-normal linears, unit norms,
    LayerScale 1e-4 as upstream initialises). The RoPE periods keep their formula values."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 0.02, generator=gen).clamp_(-0.04, 0.04)
            module.bias.zero_()
        elif isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            fan_in = module.weight[0].numel() if isinstance(module, nn.Conv2d) else (
                module.weight.shape[0] * module.weight[0, 0].numel())
            module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.RMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, LayerScale):
            module.weight.fill_(1e-4)
    for name, param in model.named_parameters():
        if name.endswith(("cls_token", "storage_tokens", "w_cls", "local_pos_embed")):
            param.normal_(0.0, 0.02, generator=gen)
    return model
