"""Build zoo models (meta device for loading, seeded random init otherwise)."""

from __future__ import annotations

import torch
from torch import nn

from ..zoo import ModelInfo
from .backbone import Sapiens2Backbone
from .estimator import Sapiens2TaskModel
from .layers import LayerScale
from .rope import RopeEmbedding


def build_model(info: ModelInfo, device: str | torch.device = "cpu") -> nn.Module:
    """Instantiate the module tree. On the meta device nothing is allocated (load with assign)."""
    with torch.device(device):
        if info.task == "backbone":
            return Sapiens2Backbone(info.arch, out_type="featmap")
        return Sapiens2TaskModel(info)


@torch.no_grad()
def random_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic random weights of plausible scale (trunc-normal linears, unit norms,
    LayerScale 1e-4 as upstream initialises). The RoPE periods keep their formula values.
    Parameters stored in fp16/bf16 get the fp32 draws rounded: the same values as a cast fp32 model."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        _init_module_(module, gen)
    _init_tokens_(model, gen)
    return model


def _init_module_(module: nn.Module, gen: torch.Generator) -> None:
    if isinstance(module, nn.Linear):
        _draw_(module.weight, gen, 0.02, clamp=0.04)
        module.bias.zero_()
    elif isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        fan_in = module.weight[0].numel() if isinstance(module, nn.Conv2d) else (
            module.weight.shape[0] * module.weight[0, 0].numel())
        _draw_(module.weight, gen, (2.0 / fan_in) ** 0.5)
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.RMSNorm):
        module.weight.fill_(1.0)
    elif isinstance(module, LayerScale):
        module.weight.fill_(1e-4)


def _init_tokens_(model: nn.Module, gen: torch.Generator) -> None:
    for name, param in model.named_parameters():
        if name.endswith(("cls_token", "storage_tokens", "w_cls", "local_pos_embed")):
            _draw_(param, gen, 0.02)


def _draw_(param: torch.Tensor, gen: torch.Generator, std: float, clamp: float | None = None) -> None:
    """Normal draws in fp32 (the generator's sequence does not depend on the storage dtype)."""
    value = param if param.dtype == torch.float32 else torch.empty(param.shape, dtype=torch.float32)
    value.normal_(0.0, std, generator=gen)
    if clamp is not None:
        value.clamp_(-clamp, clamp)
    if value is not param:
        param.copy_(value)


@torch.no_grad()
def build_random(info: ModelInfo, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """`build_model` + `random_init_` with the parameters stored in `dtype`, one module at a time:
    a 5b model in fp16 never holds its 20 GB fp32 copy. Equal to `random_init_(build_model(info)).to(dtype)`
    (the RoPE periods stay bf16)."""
    if dtype == torch.float32:
        return random_init_(build_model(info, "cpu"), seed)
    model = build_model(info, "meta")
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if not any(t.is_meta for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)]):
            continue
        module.to_empty(device="cpu", recurse=False)
        if isinstance(module, RopeEmbedding):  # its buffer holds the formula's values
            module.periods = RopeEmbedding(module.head_dim, module.base).periods
        elif hasattr(module, "reset_parameters"):  # constructor values (norm weights, ...)
            module.reset_parameters()
        elif list(module.buffers(recurse=False)):
            raise RuntimeError(f"build_random: no initialiser for the buffers of {type(module).__name__} (a bug)")
        _init_module_(module, gen)
        for name, param in list(module.named_parameters(recurse=False)):
            module._parameters[name] = nn.Parameter(param.to(dtype), requires_grad=False)
    _init_tokens_(model, gen)
    return model
