"""Decoded outputs (`export(..., decode=True)`, `sapiens-edge export --decode`): the task's decoding in the
graph, so an app gets class ids, keypoints or unit normals instead of 91 MB of logits per frame.

One torch wrapper around the task model, applied before capture, so every target lowers the same thing.
The contract (runtime/golden.py's docstring; the Kotlin kit reads it):
- seg: `labels` [1, h, w], the argmax over classes (first maximum on ties), uint8 (int32 where a target's
  outputs cannot be uint8: `TargetSpec.decode_labels`);
- pose: `keypoints` [N, K, 2] (x, y) in heatmap pixels and `scores` [N, K], as `runtime.pose.decode_udp_dark`
  computes them (argmax, then one DARK-UDP step on the Gaussian-blurred log map);
- normal: `normals` [1, 3, h, w] divided by their norm (clamped to >= 1e-8), like `runtime.normal.unit_normals`.
Pointmap outputs are dense geometry already: decoding them is refused.

The decoding stays float in every quantized recipe: its only convs (DARK's blur, `blur`) are kept float by
the module path `decoder` (quantize.policy) and by node in the ONNX target; the rest is argmax, gather and
elementwise ops, which no quantizer here annotates. DARK's blur covers the whole map, as the numpy decoder's
does: the blurred maximum (which rescales the map before the log's clipping) may lie far from the peak on a
noisy map (8 rows away on a random-weight tiny model's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sapiens_edge.errors import OptionError
from sapiens_edge.runtime.pose import _gaussian_kernel

# Output names (in order) of a decoded graph, per task.
DECODED_OUTPUTS = {"seg": ["labels"], "pose": ["keypoints", "scores"], "normal": ["normals"]}
LABEL_DTYPES = {"uint8": torch.uint8, "int32": torch.int32}

_BLUR = 11  # mmpose UDPHeatmap's blur kernel (runtime.pose._BLUR_K)
_R = _BLUR // 2
_EPS = float(torch.finfo(torch.float32).eps)


# cv2.getGaussianKernel(11, 0) as float32, as Python floats: graph constants an fp16 cast of the module leaves alone.
_G = _gaussian_kernel(_BLUR).tolist()


def check_decode(task: str) -> None:
    """OptionError unless `task` has decoded outputs."""
    if task not in DECODED_OUTPUTS:
        why = ("its outputs (pointmap and scale) are dense geometry already" if task == "pointmap"
               else "a backbone has no task decoding")
        raise OptionError(f"--decode (decode=True) does not apply to the {task} task: {why}. Export it without "
                          f"--decode; decoded outputs exist for {', '.join(DECODED_OUTPUTS)}.")


def blur(heatmaps: torch.Tensor) -> torch.Tensor:
    """mmpose's Gaussian blur of every map (11 taps, zero border; runtime.pose._blur_boxes): two depthwise convs,
    columns then rows. The only convs of the decoding: every int8 recipe keeps them float (`decoder` in
    quantize.policy.NEVER_QUANTIZE for PT2E; the ONNX target excludes `onnx_float.decoder_nodes`)."""
    k = heatmaps.shape[1]
    g = torch.tensor(_G, dtype=heatmaps.dtype)
    t = F.conv2d(heatmaps, g.view(1, 1, 1, _BLUR).expand(k, 1, 1, _BLUR), padding=(0, _R), groups=k)
    return F.conv2d(t, g.view(1, 1, _BLUR, 1).expand(k, 1, _BLUR, 1), padding=(_R, 0), groups=k)


def decode_pose(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w) heatmaps -> keypoints (N, K, 2) in heatmap pixels and scores (N, K), float32."""
    hm = heatmaps.float()
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    idx = flat.argmax(dim=-1, keepdim=True)
    score = flat.gather(-1, idx)[..., 0]
    # Row and column in float: exact below 2**24 pixels, and no integer division for converters to lower.
    fidx = idx[..., 0].float()
    ys = torch.floor((fidx + 0.5) / w)
    xs = fidx - ys * w
    blurred = blur(hm).reshape(n, k, h * w)
    bmax = blurred.amax(dim=-1)
    valid = score > 0
    ok = valid & (bmax > 0)
    factor = torch.where(ok, score / torch.where(ok, bmax, torch.ones_like(bmax)), torch.ones_like(bmax))

    def at(dy: int, dx: int) -> torch.Tensor:  # the rescaled, clipped log of the blur at the edge-clamped neighbour
        where = (ys + dy).clamp(0, h - 1) * w + (xs + dx).clamp(0, w - 1)
        v = blurred.gather(-1, where.long()[..., None])[..., 0]
        return torch.log((v * factor).clamp(1e-3, 50.0))

    i_, ix1, ix1_, iy1, iy1_ = at(0, 0), at(0, 1), at(0, -1), at(1, 0), at(-1, 0)
    ix1y1, ix1_y1_ = at(1, 1), at(-1, -1)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    a, b, d = dxx + _EPS, dxy, dyy + _EPS
    det = a * d - b * b
    ok = ok & (det.abs() < float("inf")) & (det != 0)  # finite and invertible (a NaN fails the first test)
    det = torch.where(ok, det, torch.ones_like(det))
    x = torch.where(ok, xs - (d * dx - b * dy) / det, xs)
    y = torch.where(ok, ys - (-b * dx + a * dy) / det, ys)
    keypoints = torch.stack([x, y], dim=-1)
    keypoints = torch.where(valid[..., None], keypoints, torch.full_like(keypoints, -1.0))
    return keypoints, score


def unit_normals(raw: torch.Tensor) -> torch.Tensor:
    x = raw.float()
    return x / torch.sqrt((x * x).sum(dim=1, keepdim=True)).clamp(min=1e-8)


class Decoder(nn.Module):
    """The decoding step on the task model's raw output (a submodule: its ops carry the module path `decoder`,
    by which the PT2E quantizers leave its convs in float)."""

    def __init__(self, task: str, labels_dtype: str = "uint8"):
        super().__init__()
        check_decode(task)
        self.task = task
        self.labels_dtype = LABEL_DTYPES[labels_dtype]

    def forward(self, raw: torch.Tensor):
        if self.task == "seg":
            return raw.argmax(dim=1).to(self.labels_dtype)
        if self.task == "pose":
            return decode_pose(raw)
        return unit_normals(raw)


class DecodedModel(nn.Module):
    """`model` with its outputs decoded in the graph (module docstring); what `export()` hands a target."""

    def __init__(self, model: nn.Module, labels_dtype: str = "uint8"):
        super().__init__()
        info = model.sapiens_info
        self.inner = model
        self.decoder = Decoder(info.task, labels_dtype)
        self.sapiens_info = info
        self.sapiens_output_names = list(DECODED_OUTPUTS[info.task])
        for attr in ("sapiens_disposable", "sapiens_weights", "sapiens_weights_path", "sapiens_seed"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    @property
    def backbone(self) -> nn.Module:  # what capture's RoPE freezing and GPTQ look for
        return self.inner.backbone

    def forward(self, x: torch.Tensor):
        return self.decoder(self.inner(x))
