"""Export-time module rewrites: numerically equivalent replacements that targets run better.

Each rewrite edits a model in place (capture applies them to a copy) and keeps its state_dict
meaning: the same weights, re-arranged. Results change only by fp32 summation order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

# For ConvTranspose2d(k=4, s=2, p=1), output row 2i+a reads input rows {i-1, i} (a=0: kernel taps
# 3, 1) or {i, i+1} (a=1: taps 2, 0). With the input padded by one, both phases are 2-tap windows.
_PHASE_TAPS = ((3, 1), (2, 0))


class SubPixelConvTranspose(nn.Module):
    """ConvTranspose2d(k=4, s=2, p=1) as one 2x2 Conv2d producing the four output phases, then
    pixel shuffle. Same multiply-adds, but a plain Conv: fast GEMM kernels and int8 QLinearConv
    in ONNX Runtime (its ConvTranspose has neither)."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        w = deconv.weight.detach()  # (cin, cout, 4, 4)
        cin, cout = w.shape[:2]
        phases = []
        for a in (0, 1):
            for b in (0, 1):
                taps = w[:, :, list(_PHASE_TAPS[a])][:, :, :, list(_PHASE_TAPS[b])]  # (cin, cout, 2, 2)
                phases.append(taps.permute(1, 0, 2, 3))
        self.conv = nn.Conv2d(cin, 4 * cout, 2, bias=False)
        self.conv.weight = nn.Parameter(torch.cat(phases, 0).contiguous(), requires_grad=False)
        self.cout = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.conv(F.pad(x, (1, 1, 1, 1)))  # (N, 4*cout, h+1, w+1)
        c = self.cout
        parts = [y[:, g * c:(g + 1) * c, a:a + h, b:b + w] for g, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1)))]
        return F.pixel_shuffle(torch.stack(parts, 2).flatten(1, 2), 2)


def _is_k4s2p1(m: nn.Module) -> bool:
    return (isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (4, 4) and m.stride == (2, 2)
            and m.padding == (1, 1) and m.output_padding == (0, 0) and m.groups == 1
            and m.dilation == (1, 1) and m.bias is None)


def subpixel_deconv(model: nn.Module) -> int:
    """Replace every ConvTranspose2d(k=4, s=2, p=1) in `model`; returns how many were replaced."""
    targets = [(name, m) for name, m in model.named_modules() if _is_k4s2p1(m)]
    for name, m in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SubPixelConvTranspose(m))
    return len(targets)


REWRITES: dict[str, Callable[[nn.Module], int]] = {"subpixel_deconv": subpixel_deconv}
