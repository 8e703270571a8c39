"""Confident stand-in weights for tests and benchmarks (no official weights are reachable here).

A randomly initialised seg or pose head mixes its 64 final feature channels with random signs:
the 29 logits come out near-tied at almost every pixel, so any numerical noise flips labels
(even torch bf16 flips ~2 %) and keypoints wander over flat heatmaps. Task metrics on such a
model measure the ties, not the export. A trained head instead reads a few strong, spatially
coherent directions of its features: labels come in regions and heatmaps have clear peaks.

`make_confident_` gives a random model that property without training: it runs the model once
on an image and rewrites the classifier from its input features over all pixels.
Seg: a few classes (6 by default) become the nearest-centre bins of the first principal score, so
labels form regions whose boundaries follow the image; the other classes never win. Pose: each
keypoint's readout is the least-squares fit of a Gaussian blob at its own location (what training
the classifier on Gaussian target heatmaps converges to), so each heatmap has one smooth peak that
DARK decoding can refine stably, as trained heatmaps do.
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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_CLASSIFIERS = {"seg": "conv_seg", "pose": "conv_pose"}
_DARK_SIGMA = 0.3 * ((11 - 1) * 0.5 - 1) + 0.8  # the 11x11 blur of DARK decoding (runtime/pose.py)


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
                    active_classes: int = 6, distinct_peaks: int | None = None) -> nn.Module:
    """Rewrite the final 1x1 classifier of a seg/pose model in place (see the module docstring).

    `image`: a normalized (1, 3, H, W) input (a photo, so the features have image structure).
    `gain`: logit scale; default 4 for seg and 1 for pose (heatmap peaks at 1, over the 0.3 drawing
    threshold). `active_classes`: seg classes that appear. `distinct_peaks`: pose only, at most this
    many distinct heatmaps (the best-margin fits, shared round-robin by the keypoints): fewer, better
    separated peaks; None: one per keypoint where the map has room."""
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
    k = conv.out_channels
    if task == "seg":
        _, _, v = torch.linalg.svd(centred[:: max(1, centred.shape[0] // 20000)], full_matrices=False)
        u = v[0]  # the first principal direction
        spread = (centred @ u).std()
        # logit_j = 2 t_j s - t_j^2 (tangents of s^2): argmax_j = the centre t_j nearest to s.
        s1 = (centred @ u) / spread
        active = min(k, active_classes)
        centres = torch.quantile(s1[:: max(1, s1.numel() // 100000)],
                                 (torch.arange(active, dtype=torch.float64) + 0.5) / active)
        slope = torch.zeros(k, dtype=torch.float64)
        offset = torch.full((k,), -float(centres.square().max()) - 50.0, dtype=torch.float64)  # never wins
        slope[:active], offset[:active] = 2 * centres, -centres.square()
        weight = slope[:, None] * (u / spread)[None]
        bias = offset - weight @ mean
        scale = gain if gain is not None else 4.0
    else:
        weight, bias = _blob_readouts(seen["x"][0].double() - mean[:, None, None], k, distinct=distinct_peaks)
        bias = bias - weight @ mean
        scale = gain if gain is not None else 1.0
    conv.weight.copy_((scale * weight).to(conv.weight.dtype).reshape(conv.weight.shape))
    conv.bias.copy_((scale * bias).to(conv.bias.dtype))
    return model


def _blur(maps: torch.Tensor, sigma: float = _DARK_SIGMA, radius: int = 5) -> torch.Tensor:
    """Separable Gaussian blur of (N, H, W) maps, zero border."""
    taps = torch.arange(-radius, radius + 1, dtype=maps.dtype)
    g = torch.exp(-taps.square() / (2 * sigma * sigma))
    g = g / g.sum()
    x = maps[:, None]
    x = F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(x, g.view(1, 1, -1, 1), padding=(radius, 0))[:, 0]


def _blob_readouts(fmap: torch.Tensor, k: int, *, candidates: int = 2048, ridge: float = 1e-3,
                   seed: int = 0, distinct: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (K, C), bias (K,)) on centred features `fmap` (C, H, W): K heatmaps, each the
    ridge least-squares fit of a Gaussian blob (sigma 2 px) at its own location, the closed form of
    training the 1x1 classifier with the pose loss (MSE to Gaussian targets) on this one image.

    Trained heatmaps are smooth blobs, and DARK (which refines the argmax on the blurred log-map)
    depends on that: a single-pixel spike over a rough background gives DARK an indefinite Hessian
    and offsets of tens of pixels that any rounding moves. Of `candidates` random locations, the K
    whose fitted map peaks on its target, with the blurred peak at the same pixel and the largest
    blurred margin over everything more than 3 px away (one per peak pixel), are kept; scaled to
    peak 1 over a median of 0."""
    c, h, w = fmap.shape
    flat = fmap.reshape(c, -1)
    cov = flat @ flat.T / flat.shape[1]
    cov = cov + ridge * cov.trace() / c * torch.eye(c, dtype=cov.dtype)
    low = _blur(fmap)  # low[:, y, x] = features . (blob at (y, x)): the fit's right-hand side
    gen = torch.Generator().manual_seed(seed)
    border = min(8, h // 4, w // 4)
    cy = torch.randint(border, h - border, (candidates,), generator=gen)
    cx = torch.randint(border, w - border, (candidates,), generator=gen)
    readouts = torch.linalg.solve(cov, low[:, cy, cx]).T  # (n, C)
    ys, xs = torch.arange(h * w) // w, torch.arange(h * w) % w
    margin, top, median, where = [], [], [], []
    for i in range(0, candidates, 256):
        maps = readouts[i:i + 256] @ flat  # (n, H*W)
        blurred = _blur(maps.reshape(-1, h, w)).flatten(1)
        peak, at = maps.max(1)
        bat = blurred.argmax(1)
        on_target = ((ys[at] - cy[i:i + 256]).abs() <= 2) & ((xs[at] - cx[i:i + 256]).abs() <= 2)
        aligned = ((ys[bat] - ys[at]).abs() <= 1) & ((xs[bat] - xs[at]).abs() <= 1)
        near = ((ys[None] - ys[at][:, None]).abs() <= 3) & ((xs[None] - xs[at][:, None]).abs() <= 3)
        outside = blurred.masked_fill(near, -math.inf).max(1).values
        med = maps.median(1).values
        m = (blurred.gather(1, at[:, None])[:, 0] - outside) / (peak - med)
        margin.append(torch.where(on_target & aligned, m, m - 1e3))  # misfits only if nothing else
        top.append(peak)
        median.append(med)
        where.append(at)
    # Best margin first, one keypoint per peak pixel (fits of nearby targets often land on one).
    order, at = torch.cat(margin).argsort(descending=True), torch.cat(where)
    _, first = np.unique(at[order].numpy(), return_index=True)
    best = order[np.sort(first)][:k if distinct is None else min(k, distinct)]
    if best.numel() < k:  # tiny maps: reuse the best fits
        best = best.repeat(math.ceil(k / best.numel()))[:k]
    span = (torch.cat(top)[best] - torch.cat(median)[best])[:, None]
    return readouts[best] / span, -torch.cat(median)[best] / span[:, 0]
