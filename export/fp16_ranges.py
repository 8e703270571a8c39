"""fp16 headroom of a model's activations: the classic on-device transformer failure is an
activation past fp16's largest value (65504) in a norm, a residual or an FFN, which turns into inf
and then NaN on the Neural Engine or GPU. Measured in fp32 on a real-looking input (a photo), on
every leaf module's output and every RMSNorm's sum of squares (the plain form's largest
intermediate), so an fp16 export can say how close it runs to the edge."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

FP16_MAX = float(torch.finfo(torch.float16).max)


@torch.no_grad()
def activation_ranges(model: nn.Module, x: torch.Tensor, top: int = 5) -> dict[str, Any]:
    """{"max_abs", "where", "headroom" (FP16_MAX / max_abs), "largest": [[module, max_abs], ...],
    "rmsnorm_sum_sq_max"} of `model` on input `x`."""
    seen: dict[str, float] = {}
    sum_sq = [0.0]

    def record(name: str):
        def hook(module, args, out):
            outs = out if isinstance(out, tuple) else (out,)
            vals = [float(o.detach().abs().amax()) for o in outs
                    if isinstance(o, torch.Tensor) and o.is_floating_point()]
            if vals:
                seen[name] = max(seen.get(name, 0.0), *vals)
            if isinstance(module, nn.RMSNorm) and args and isinstance(args[0], torch.Tensor):
                sum_sq[0] = max(sum_sq[0], float(args[0].detach().float().square().sum(-1).amax()))
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules()
               if n and (not list(m.children()) or isinstance(m, nn.RMSNorm))]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    largest = sorted(seen.items(), key=lambda kv: -kv[1])[:top]
    where, peak = largest[0] if largest else ("", 0.0)
    return {"max_abs": peak, "where": where, "headroom": FP16_MAX / peak if peak else float("inf"),
            "largest": [[n, v] for n, v in largest], "rmsnorm_sum_sq_max": sum_sq[0]}
