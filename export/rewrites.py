"""Export-time module rewrites: numerically equivalent replacements that targets run better.

Each rewrite edits a model in place (capture applies them to a copy) and keeps its state_dict
meaning: the same weights, re-arranged. Results change only by fp32 summation order.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from sapiens_edge.memory import trim_heap
from sapiens_edge.models.layers import Attention, SwiGLUFFN

from .fused_attention import fused_attention

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


class SplitSwiGLU(nn.Module):
    """SwiGLU with the fused gate/value projection split in two Linears: the graph then has no
    Split of the (N, 2*hidden) activation (0.1 s per 0.1b run in ONNX Runtime); same weights."""

    def __init__(self, ffn: nn.Module):
        super().__init__()
        hidden = ffn.w12.out_features // 2
        halves = []
        for part in range(2):  # first half gates (layers.SwiGLUFFN)
            # Built on the meta device, then given exact copies of the halves in their own dtype: no
            # initialisation, no fp32 detour for an fp16 model (a 5b's FFNs would double in size).
            lin = nn.Linear(ffn.w12.in_features, hidden, device="meta")
            rows = slice(part * hidden, (part + 1) * hidden)
            lin.weight = nn.Parameter(ffn.w12.weight.detach()[rows].clone(), requires_grad=False)
            lin.bias = nn.Parameter(ffn.w12.bias.detach()[rows].clone(), requires_grad=False)
            halves.append(lin)
        self.w_gate, self.w_value = halves
        self.w3 = ffn.w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.w_gate(x)
        return self.w3(gate * torch.sigmoid(gate) * self.w_value(x))  # SiLU spelled out (see SigmoidSiLU)


def explicit_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: torch.Tensor | None = None,
                  softmax_dtype: torch.dtype | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as matmul + softmax + matmul: ops every delegate lowers, where
    a fused SDPA op may be left to slow fallback kernels (ExecuTorch portable ops). The scale
    multiplies q before the first matmul (the pattern TensorRT fuses). `scale`: a tensor holding
    1/sqrt(d) in the model's dtype (a Python float becomes an fp32 constant plus a cast in an fp16
    program). `softmax_dtype`: run the softmax in that dtype (float32 in an fp16 program: casts
    either side), and the second matmul in q's."""
    b, h, n, d = q.shape
    # 3-D bmm: a 4-D matmul decomposes into expand copies (of the N x N probabilities, too).
    q = q * (scale if scale is not None else d ** -0.5)
    q3, k3, v3 = (t.reshape(b * h, t.shape[2], t.shape[3]) for t in (q, k, v))
    scores = torch.bmm(q3, k3.transpose(1, 2))
    probs = torch.softmax(scores if softmax_dtype is None else scores.to(softmax_dtype), dim=-1).to(q.dtype)
    return torch.bmm(probs, v3).reshape(b, h, n, v.shape[-1])


def _explicit_sdpa_scaled(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return explicit_sdpa(q, k, v, attn.sdpa_scale)


def _explicit_sdpa_fp32_softmax(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return explicit_sdpa(q, k, v, attn.sdpa_scale, softmax_dtype=torch.float32)


def broadcast_expand_kv(attn: Attention, t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """GQA kv expansion (`layers._expand_kv`) as a broadcast multiply by the block's `kv_ones`
    buffer (1, 1, r, 1, 1): exact, and a mul is lowered by XNNPACK where expand (or a cat of a
    tensor with itself) is not. Bound to the block, so copies and .half() carry it along."""
    b, _, n, d = t.shape
    return (t[:, :, None] * attn.kv_ones).reshape(b, num_heads, n, d)


def explicit_attention(model: nn.Module, *, fp32_softmax: bool = False) -> int:
    """Compute every `Attention` of `model` with `explicit_sdpa` (and GQA's kv expansion as a
    broadcast multiply); returns how many. `fp32_softmax`: the softmax runs in fp32 whatever the
    model's dtype (TensorRT's strongly typed fp16 builds take the graph's precision as written)."""
    blocks = [m for m in model.modules() if isinstance(m, Attention)]
    kernel = _explicit_sdpa_fp32_softmax if fp32_softmax else _explicit_sdpa_scaled
    for m in blocks:
        # Buffers, bound methods: deep copies and .half() carry them along with the block.
        m.register_buffer("sdpa_scale", torch.tensor(m.head_dim ** -0.5), persistent=False)
        m.kernel = types.MethodType(kernel, m)
        if m.num_kv_heads != m.num_heads:
            m.register_buffer("kv_ones", torch.ones(1, 1, m.num_heads // m.num_kv_heads, 1, 1), persistent=False)
            m.expand_kv = types.MethodType(broadcast_expand_kv, m)
    return len(blocks)


def concat_expand_kv(attn: Attention, t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """GQA kv expansion as a concatenation of r copies along a new axis (exact): LiteRT's XNNPACK
    delegate takes a CONCATENATION, whereas the converter turns the broadcast multiply into a
    BROADCAST_TO that XNNPACK leaves to LiteRT's own kernels."""
    b, kv, n, d = t.shape
    return torch.cat([t[:, :, None]] * (num_heads // kv), dim=2).reshape(b, num_heads, n, d)


def concat_kv(model: nn.Module) -> int:
    """GQA's kv expansion of every `Attention` as `concat_expand_kv`; returns how many blocks."""
    blocks = [m for m in model.modules() if isinstance(m, Attention) and m.num_kv_heads != m.num_heads]
    for m in blocks:
        m.expand_kv = types.MethodType(concat_expand_kv, m)
    return len(blocks)


class LinearMeanRMSNorm(nn.Module):
    """RMSNorm whose mean of squares (+ eps) is a 1-output linear layer: delegates such as XNNPACK
    lower linears but not a mean over the last axis or a scalar add. Same weight."""

    def __init__(self, norm: nn.RMSNorm):
        super().__init__()
        dim = norm.normalized_shape[-1]
        self.mean_sq = nn.Linear(dim, 1)
        with torch.no_grad():
            self.mean_sq.weight.fill_(1.0 / dim)
            self.mean_sq.bias.fill_(norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps)
        self.weight = norm.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(self.mean_sq(x * x)) * self.weight


class MaxScaledRMSNorm(nn.Module):
    """RMSNorm on x / m with m = max|x| (at least 1/64), and eps scaled by the same 1/m^2: equal to
    RMSNorm for any positive m, and the squares stay <= 1, so fp16 compute cannot overflow.
    coremltools converts `aten.rms_norm` with this scaling but adds eps unscaled, so rows of small
    activations come out wrong (apple/coremltools#2821); this form is converted op by op."""

    def __init__(self, norm: nn.RMSNorm):
        super().__init__()
        self.eps = norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
        self.weight = norm.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.abs().amax(-1, keepdim=True).clamp_min(1.0 / 64)
        y = x / m
        return y * torch.rsqrt((y * y).mean(-1, keepdim=True) + self.eps / (m * m)) * self.weight


def scaled_norms(model: nn.Module) -> int:
    """RMSNorm -> `MaxScaledRMSNorm`; returns how many were replaced."""
    return _replace(model, lambda m: isinstance(m, nn.RMSNorm), MaxScaledRMSNorm)


class Fp32StatsRMSNorm(nn.Module):
    """RMSNorm whose mean of squares and normalization run in fp32 whatever the input's dtype, the
    weight applied in the input's: in an fp16 program the squares of a residual stream past 256
    overflow fp16. In fp32 the casts vanish and the ops are torch's own decomposition."""

    def __init__(self, norm: nn.RMSNorm):
        super().__init__()
        self.eps = norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
        self.weight = norm.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class Fp32InstanceNorm(nn.Module):
    """InstanceNorm2d (no affine, no running stats) computed in fp32 whatever the input's dtype: its
    statistics over a whole feature map overflow fp16 at 1024x768."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x.float(), eps=self.eps).to(x.dtype)


def fp32_norm_statistics(model: nn.Module) -> int:
    """RMSNorm -> `Fp32StatsRMSNorm`, InstanceNorm2d -> `Fp32InstanceNorm`: norms that keep fp32
    statistics once the model is cast to fp16 (export.onnx_tensorrt); returns how many."""
    return (_replace(model, lambda m: isinstance(m, nn.RMSNorm), Fp32StatsRMSNorm)
            + _replace(model, _plain_instance_norm, Fp32InstanceNorm))


class SpatialMeanInstanceNorm(nn.Module):
    """InstanceNorm2d (no affine, no running stats) from two spatial means, the form of global
    average pooling that delegates lower; eps is a tensor so that its add is tensor-tensor."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.register_buffer("eps", torch.tensor([norm.eps]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean((-2, -1), keepdim=True)
        var = (centred * centred).mean((-2, -1), keepdim=True)
        return centred * torch.rsqrt(var + self.eps)


class SigmoidSiLU(nn.Module):
    """x * sigmoid(x): ExecuTorch's edge decomposition of an fp16 SiLU upcasts it to fp32 with
    casts that XNNPACK does not take; the spelled-out form stays in fp16 and in the delegate."""

    def __init__(self, _: nn.Module | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def _plain_instance_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.InstanceNorm2d) and not m.affine and not m.track_running_stats


def delegate_norms(model: nn.Module) -> int:
    """RMSNorm -> `LinearMeanRMSNorm`, InstanceNorm2d -> `SpatialMeanInstanceNorm`, SiLU ->
    `SigmoidSiLU`; returns how many modules were replaced."""
    return (_replace(model, lambda m: isinstance(m, nn.RMSNorm), LinearMeanRMSNorm)
            + _replace(model, _plain_instance_norm, SpatialMeanInstanceNorm)
            + _replace(model, lambda m: isinstance(m, nn.SiLU), SigmoidSiLU))


def hadamard(n: int) -> torch.Tensor:
    """The n x n Walsh-Hadamard matrix scaled to be orthonormal (Sylvester's construction; n a power
    of 2). Symmetric, so it is its own inverse."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"Hadamard size must be a power of 2, got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h / math.sqrt(n)).float()


class BlockRotation(nn.Module):
    """x -> x rotated by a block-diagonal Hadamard matrix along its last axis (blocks of `block`):
    a linear layer on the (..., n/block, block) view. Named `rotation` so that int8 recipes keep it
    in float (`quantize.policy.NEVER_QUANTIZE`): its purpose is what the next layer's int8 input sees."""

    def __init__(self, block: int):
        super().__init__()
        self.block = block
        self.rotation = nn.Linear(block, block, bias=False)
        with torch.no_grad():
            self.rotation.weight.copy_(hadamard(block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return self.rotation(x.reshape(*shape[:-1], shape[-1] // self.block, self.block)).reshape(shape)


class RotatedInputLinear(nn.Module):
    """`linear` on a Hadamard-rotated input: y = (W H)(H x) + b, H block-diagonal orthonormal and
    symmetric, equal to W x + b up to fp32 rounding. Static int8 quantizes the input per tensor, and
    SwiGLU's product silu(gate) * value is heavy-tailed (rare large values set the range, the rest
    share few steps); rotated, each element mixes `block` of them and comes out near-Gaussian.
    QuaRot / SpinQuant rotate the same tensor (the FFN down projection's input) online, as here."""

    def __init__(self, linear: nn.Linear, block: int = 64):
        super().__init__()
        self.rotate = BlockRotation(block)
        self.linear = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            h = hadamard(block).double()
            w = linear.weight.double().reshape(linear.out_features, -1, block)
            self.linear.weight.copy_((w @ h).reshape(linear.out_features, -1))
            if linear.bias is not None:
                self.linear.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.rotate(x))


def rotate_ffn_input(model: nn.Module, block: int = 64) -> int:
    """The down projection (`w3`) of every SwiGLU (fused or split) -> `RotatedInputLinear` with blocks
    of `block` (or the largest power of 2 dividing the FFN width, from 8 up); returns how many.
    Meant for static int8 recipes: the rotation is one more fp32 matmul per block."""
    ffns = [m for m in model.modules() if isinstance(m, (SwiGLUFFN, SplitSwiGLU)) and isinstance(m.w3, nn.Linear)]
    done = 0
    for m in ffns:
        size = math.gcd(m.w3.in_features, block)  # block is a power of 2: so is the gcd
        if size >= 8:
            m.w3 = RotatedInputLinear(m.w3, size)
            done += 1
    return done


class PretransposedLinear(nn.Module):
    """nn.Linear storing W^T (in x out), the same numbers as x @ W^T + b. The dynamo exporter writes a
    Linear on 3-D tokens as MatMul(x, Transpose(W)), and its optimizer folds each Transpose into a new
    tensor: a second copy of every weight at the export's peak (10 GB on a 5b). Stored transposed, the
    MatMul reads the initializer as it is."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, self.weight_t)
        return y if self.bias is None else y + self.bias


def pretranspose_linears(model: nn.Module) -> int:
    """Every nn.Linear of `model` -> `PretransposedLinear`, one at a time (each old weight is freed before
    the next is transposed); returns how many."""
    return _replace(model, lambda m: type(m) is nn.Linear, PretransposedLinear)


def split_swiglu(model: nn.Module) -> int:
    """Replace every `SwiGLUFFN` of `model` by `SplitSwiGLU`; returns how many were replaced."""
    return _replace(model, lambda m: isinstance(m, SwiGLUFFN), SplitSwiGLU)


def _replace(model: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every module `match`es by `make(module)`, one at a time: each old module (and the weights only
    it holds) is freed before the next is made, so a rewrite never holds two copies of a model's weights."""
    names = [name for name, m in model.named_modules() if match(m)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(getattr(parent, child)))
        trim_heap()  # give the replaced weights back now, not at the end (see memory.trim_heap)
    return len(names)


def _is_k4s2p1(m: nn.Module) -> bool:
    return (isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (4, 4) and m.stride == (2, 2)
            and m.padding == (1, 1) and m.output_padding == (0, 0) and m.groups == 1
            and m.dilation == (1, 1) and m.bias is None)


def subpixel_deconv(model: nn.Module) -> int:
    """Replace every ConvTranspose2d(k=4, s=2, p=1) in `model`; returns how many were replaced."""
    return _replace(model, _is_k4s2p1, SubPixelConvTranspose)


REWRITES: dict[str, Callable[[nn.Module], int]] = {"subpixel_deconv": subpixel_deconv,
                                                   "fused_attention": fused_attention, "split_swiglu": split_swiglu,
                                                   "explicit_attention": explicit_attention,
                                                   "delegate_norms": delegate_norms, "scaled_norms": scaled_norms,
                                                   "concat_kv": concat_kv, "rotate_ffn_input": rotate_ffn_input,
                                                   "fp32_softmax_attention": functools.partial(explicit_attention,
                                                                                               fp32_softmax=True),
                                                   "fp32_norm_statistics": fp32_norm_statistics,
                                                   "pretranspose_linears": pretranspose_linears}
