"""Shared test helpers for the torch side: tiny architectures and randomised weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from sapiens_edge.zoo import BackboneArch, HeadConfig, ModelInfo

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "src" / "sapiens_edge" / "assets" / "astronaut.jpg"

# Tiny stand-ins with the real layout rules: 18 blocks -> blocks 8 and 9 are GQA.
TINY = BackboneArch("tiny", embed_dim=64, depth=18, num_heads=4, default_input_hw=(128, 96))
# The export tests' stand-in: the same block kinds (MHA, GQA in the middle) in 4 blocks. Lowering
# time grows with the node count (ExecuTorch's XNNPACK partitioner: ~70 s for the 18-block int8 seg).
TINY_EXPORT = dataclasses.replace(TINY, size="tiny-export", depth=4, full_attention_blocks=1)
TINY_4K = BackboneArch("tiny-4k", embed_dim=64, depth=2, num_heads=4, tokenizer_layers=2,
                       default_input_hw=(256, 192))
TINY_HEADS = {
    "pose": HeadConfig("pose", deconv=(32, 16), conv=(16, 16, 8), out_channels=308),
    "seg": HeadConfig("seg", deconv=(32, 16, 16, 8), conv=(8, 8), out_channels=29),
    "normal": HeadConfig("normal", upsample=(32, 16, 8, 8), conv=(8, 8, 4), out_channels=3),
    # 256x192 input -> 16x12 grid -> three stride-2 1x1 convs -> 2x2 -> flatten 8*4
    "pointmap": HeadConfig("pointmap", upsample=(32, 16, 8, 8), conv=(8, 8, 4), scale_conv=(32, 16, 8),
                           scale_mlp=(32, 16, 8, 1), out_channels=3),
}


def tiny_info(task: str, arch: BackboneArch = TINY) -> ModelInfo:
    """A tiny task model; pointmap runs at 256x192 (its scale branch fixes the input size)."""
    head = TINY_HEADS.get(task)
    if task == "pointmap":
        arch = dataclasses.replace(arch, default_input_hw=(256, 192))
    return ModelInfo(name=f"tiny-{task}", size="tiny", task=task, arch=arch, head=head, official=None, params=0)


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Noise in every parameter (LayerScale and norms included) so that every branch matters."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        scale = 0.5 if p.ndim == 1 else 1.0 / max(p[0].numel(), 1) ** 0.5
        if name.endswith(("ln1.weight", "ln2.weight", "norm.weight")):
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(scale * torch.randn(p.shape, generator=gen))
    return model


def replace(info: ModelInfo, **kw) -> ModelInfo:
    return dataclasses.replace(info, **kw)
