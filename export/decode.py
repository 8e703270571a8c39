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

The decoding uses no conv, linear or matmul, the only ops the int8 quantizers annotate (`quantize.pt2e`,
`quantize.onnx_ptq.STATIC_OPS`, TFLite's FULLY_CONNECTED): it stays float in every quantized recipe.
DARK's blur is evaluated on an 11x11 neighbourhood of each peak (from a 21x21 window gathered around it), not
on the whole map: the 3x3 stencil needs only that, and the blurred maximum (which rescales the map before the
log's clipping) is taken there too. That equals the numpy decoder's whole-map maximum whenever the blurred
map peaks within 5 px of the unblurred argmax (one blob per map, as trained heatmaps have); with a second,
broader mode elsewhere only keypoints whose stencil is clipped (score > 50, or blurred values < 1e-3) differ.
"""

from __future__ import annotations

import torch
from torch import nn

from sapiens_edge.errors import OptionError

# Output names (in order) of a decoded graph, per task.
DECODED_OUTPUTS = {"seg": ["labels"], "pose": ["keypoints", "scores"], "normal": ["normals"]}
LABEL_DTYPES = {"uint8": torch.uint8, "int32": torch.int32}

_BLUR = 11  # mmpose UDPHeatmap's blur kernel (runtime.pose._BLUR_K)
_R = _BLUR // 2
_EPS = float(torch.finfo(torch.float32).eps)


def _gaussian() -> list[float]:
    """cv2.getGaussianKernel(11, 0) as float32 values (runtime.pose._gaussian_kernel), as Python floats: graph
    constants that an fp16 cast of the module does not touch."""
    sigma = 0.3 * ((_BLUR - 1) * 0.5 - 1) + 0.8
    x = torch.arange(_BLUR, dtype=torch.float64) - (_BLUR - 1) / 2
    k = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (k / k.sum()).float().tolist()


_G = _gaussian()


def check_decode(task: str) -> None:
    """OptionError unless `task` has decoded outputs."""
    if task not in DECODED_OUTPUTS:
        why = ("its outputs (pointmap and scale) are dense geometry already" if task == "pointmap"
               else "a backbone has no task decoding")
        raise OptionError(f"--decode (decode=True) does not apply to the {task} task: {why}. Export it without "
                          f"--decode; decoded outputs exist for {', '.join(DECODED_OUTPUTS)}.")


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
    # The map on a 21x21 window around the peak, zero outside it (mmpose's zero padding of the blur).
    off = torch.arange(-2 * _R, 2 * _R + 1, dtype=torch.float32)
    rows, cols = ys[..., None] + off, xs[..., None] + off  # (n, k, 21)
    inside = ((rows >= 0) & (rows < h))[..., :, None] & ((cols >= 0) & (cols < w))[..., None, :]
    where = rows.clamp(0, h - 1)[..., :, None] * w + cols.clamp(0, w - 1)[..., None, :]
    win = flat.gather(-1, where.reshape(n, k, -1).long()).reshape(n, k, 4 * _R + 1, 4 * _R + 1)
    win = torch.where(inside, win, torch.zeros_like(win))
    # Separable blur, columns then rows, in numpy's order (runtime.pose._blur_boxes): an 11x11 blurred patch.
    t = sum(_G[i] * win[..., :, i:i + 2 * _R + 1] for i in range(_BLUR))
    blur = sum(_G[i] * t[..., i:i + 2 * _R + 1, :] for i in range(_BLUR))
    centre_in = inside[..., _R:3 * _R + 1, _R:3 * _R + 1]
    bmax = torch.where(centre_in, blur, torch.full_like(blur, -1.0)).amax(dim=(-2, -1))
    valid = score > 0
    ok = valid & (bmax > 0)
    factor = torch.where(ok, score / torch.where(ok, bmax, torch.ones_like(bmax)), torch.ones_like(bmax))
    patch = blur.reshape(n, k, (2 * _R + 1) ** 2)

    def at(dy: int, dx: int) -> torch.Tensor:  # the blurred log at the edge-clamped neighbour (dy, dx)
        r = (ys + dy).clamp(0, h - 1) - ys + _R
        c = (xs + dx).clamp(0, w - 1) - xs + _R
        v = patch.gather(-1, (r * (2 * _R + 1) + c).long()[..., None])[..., 0]
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
    by which the ONNX fp16 pass keeps them in fp32)."""

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
