"""Confident stand-in weights for tests and benchmarks (no official weights are reachable here).

A randomly initialised seg or pose head mixes its 64 final feature channels with random signs:
the 29 logits come out near-tied at almost every pixel, so any numerical noise flips labels
(even torch bf16 flips ~2 %) and keypoints wander over flat heatmaps. Task metrics on such a
model measure the ties, not the export. A trained head instead reads a few strong, spatially
coherent directions of its features: labels come in regions and heatmaps have clear peaks.

`make_confident_` gives a random model that property without training: it runs the model once
on an image and takes the principal directions of the classifier's input features over all pixels.
Seg: a few classes (6 by default) become the nearest-centre bins of the first principal score, so
labels form regions whose boundaries follow the image; the other classes never win. Pose: each
keypoint reads one of the random feature directions whose best pixel stands out most from every
pixel more than 2 away, scaled to peak at 1 over a median of 0.5, so each heatmap has one clear peak.
Backbone and the rest of the head keep their random weights, so the export still has to get all
of them right; the numbers only become decidable. Normal and pointmap outputs are continuous and
need no change.

`wake_layer_scale_` comes first: the spec's initial LayerScale (1e-4) scales every attention
branch down to nothing, so a freshly initialised backbone is an FFN-only network and errors in
attention (kernels, int8 q/k/v and projection) would not reach the outputs. Trained models learn
LayerScale values orders of magnitude larger; the stand-in sets them to 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_CLASSIFIERS = {"seg": "conv_seg", "pose": "conv_pose"}


@torch.no_grad()
def wake_layer_scale_(model: nn.Module, value: float = 1.0) -> int:
    """Set every LayerScale (`*.gamma.weight`) to `value`; returns how many were set."""
    count = 0
    for name, p in model.named_parameters():
        if name.endswith("gamma.weight"):
            p.fill_(value)
            count += 1
    return count


@torch.no_grad()
def make_confident_(model: nn.Module, image: torch.Tensor, *, gain: float | None = None,
                    active_classes: int = 6) -> nn.Module:
    """Rewrite the final 1x1 classifier of a seg/pose model in place (see the module docstring).

    `image`: a normalized (1, 3, H, W) input (a photo, so the features have image structure).
    `gain`: logit scale; default 4 for seg and a value that puts the pose heatmap peaks near 1
    (scores over the 0.3 drawing threshold). `active_classes`: seg classes that appear."""
    task = model.sapiens_info.task if hasattr(model, "sapiens_info") else None
    head = getattr(model, "decode_head", None)
    name = _CLASSIFIERS.get(task or "", "")
    conv = getattr(head, name, None) if head is not None else None
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"make_confident_ handles seg and pose models (got task {task!r}).")
    seen: dict[str, torch.Tensor] = {}
    hook = conv.register_forward_hook(lambda _m, args, _out: seen.setdefault("x", args[0].detach()))
    try:
        model(image)
    finally:
        hook.remove()
    feats = seen["x"][0].flatten(1).T.double()  # (pixels, C)
    mean = feats.mean(0)
    centred = feats - mean
    _, _, v = torch.linalg.svd(centred[:: max(1, centred.shape[0] // 20000)], full_matrices=False)
    u = v[:2]  # (2, C), orthonormal
    spread = (centred @ u.T).std(0)
    k = conv.out_channels
    if task == "seg":
        # logit_j = 2 t_j s - t_j^2 (tangents of s^2): argmax_j = the centre t_j nearest to s.
        s1 = (centred @ u[0]) / spread[0]
        active = min(k, active_classes)
        centres = torch.quantile(s1[:: max(1, s1.numel() // 100000)],
                                 (torch.arange(active, dtype=torch.float64) + 0.5) / active)
        slope = torch.zeros(k, dtype=torch.float64)
        offset = torch.full((k,), -float(centres.square().max()) - 50.0, dtype=torch.float64)  # never wins
        slope[:active], offset[:active] = 2 * centres, -centres.square()
        weight = slope[:, None] * (u[0] / spread[0])[None]
        bias = offset - weight @ mean
        scale = gain if gain is not None else 4.0
    else:
        weight, bias = _peaked_readouts(centred, v, seen["x"].shape[-1], k)
        bias = bias - weight @ mean
        scale = gain if gain is not None else 1.0
    conv.weight.copy_((scale * weight).to(conv.weight.dtype).reshape(conv.weight.shape))
    conv.bias.copy_((scale * bias).to(conv.bias.dtype))
    return model


def _peaked_readouts(centred: torch.Tensor, v: torch.Tensor, width: int, k: int, *, rank: int = 32,
                     candidates: int = 4096, radius: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (K, C), bias (K,)) of K heatmaps over centred features (pixels, C), each with one clear
    peak: random directions in the whitened top-`rank` principal subspace, kept where the best pixel
    stands out most from the best one more than `radius` pixels away; scaled so that the heatmap's
    median is 0.5 and its peak 1."""
    r = min(rank, v.shape[0])
    basis = v[:r]  # (r, C)
    proj = centred @ basis.T
    proj = proj / proj.std(0).clamp_min(1e-12)  # whitened (pixels, r)
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(candidates, r, generator=gen, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    ys = torch.arange(proj.shape[0]) // width
    xs = torch.arange(proj.shape[0]) % width
    margin, peak, median = [], [], []
    for chunk in dirs.split(256):
        scores = proj @ chunk.T  # (pixels, n)
        top, at = scores.max(0)
        near = ((ys[:, None] - ys[at][None]).abs() <= radius) & ((xs[:, None] - xs[at][None]).abs() <= radius)
        runner_up = scores.masked_fill(near, -math.inf).max(0).values
        med = scores.median(0).values
        margin.append((top - runner_up) / (top - med))
        peak.append(top)
        median.append(med)
    best = torch.cat(margin).topk(k).indices
    top, med = torch.cat(peak)[best], torch.cat(median)[best]
    readout = dirs[best] @ (basis / (centred @ basis.T).std(0).clamp_min(1e-12)[:, None])  # (K, C) on features
    # Peak 1 over a background of 0.5: DARK refinement takes the log of the blurred heatmap around
    # the peak, which must stay positive (trained heatmaps are positive Gaussian blobs).
    span = 2 * (top - med)[:, None]
    return readout / span, 0.5 - med / span[:, 0]
