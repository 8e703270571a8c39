"""An independent, deliberately naive functional Sapiens2 forward written from the spec.

It reads only a state_dict and re-derives every layout rule by hand (per-head loops, explicit
kv-head index i // 2, explicit RoPE pairing, explicit softmax attention, explicit PixelShuffle
mapping), so wiring mistakes in the real modules (w12 split order, GQA head order, missing
LayerScale, y/x RoPE order, PixelShuffle ordering) show up as large differences.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BF16 = torch.bfloat16


def rms(x, w, eps=1e-6):
    return F.rms_norm(x, (x.shape[-1],), w, eps)


def rope_tables(periods: torch.Tensor, hp: int, wp: int):
    """Spec 2.4 steps 1-7, one op at a time, each rounded to bf16."""
    ys = (torch.arange(hp, dtype=torch.float32) + 0.5).to(BF16) / hp
    xs = (torch.arange(wp, dtype=torch.float32) + 0.5).to(BF16) / wp
    d4 = periods.numel()
    ang = torch.empty(hp * wp, 4 * d4, dtype=BF16)
    for j in range(hp):
        for k in range(wp):
            cy = (2.0 * ys[j]) - 1.0
            cx = (2.0 * xs[k]) - 1.0
            ay = (2 * math.pi * cy) / periods
            ax = (2 * math.pi * cx) / periods
            ang[j * wp + k] = torch.cat([ay, ax, ay, ax])
    return torch.sin(ang), torch.cos(ang)


def rope_rotate(x, sin, cos):
    """x: (N_grid, d) bf16. out_i = x_i cos_i - x_{i+d/2} sin_i ; out_{i+d/2} = x_{i+d/2} cos + x_i sin."""
    d2 = x.shape[-1] // 2
    out = torch.empty_like(x)
    out[:, :d2] = (x[:, :d2] * cos[:, :d2]) + ((-x[:, d2:]) * sin[:, :d2])
    out[:, d2:] = (x[:, d2:] * cos[:, d2:]) + (x[:, :d2] * sin[:, d2:])
    return out


def attention(sd, p, x, heads, rope, qk_norm=True, layer_scale=True):
    n, c = x.shape
    d = c // heads
    q = x @ sd[p + "wq.weight"].T + sd[p + "wq.bias"]
    k = x @ sd[p + "wk.weight"].T + sd[p + "wk.bias"]
    v = x @ sd[p + "wv.weight"].T + sd[p + "wv.bias"]
    kv = k.shape[-1] // d
    outs = []
    for i in range(heads):
        j = i * kv // heads  # query head i uses kv head i // (heads/kv)
        qi, ki, vi = q[:, i * d:(i + 1) * d], k[:, j * d:(j + 1) * d], v[:, j * d:(j + 1) * d]
        if qk_norm:
            qi, ki = rms(qi, sd[p + "q_norm.weight"]), rms(ki, sd[p + "k_norm.weight"])
        if rope is not None:
            sin, cos = rope
            pre = n - sin.shape[0]
            qb, kb = qi.to(BF16), ki.to(BF16)
            qi = torch.cat([qb[:pre], rope_rotate(qb[pre:], sin, cos)]).float()
            ki = torch.cat([kb[:pre], rope_rotate(kb[pre:], sin, cos)]).float()
        att = torch.softmax((qi @ ki.T) / math.sqrt(d), dim=-1)
        outs.append(att @ vi)
    o = torch.cat(outs, dim=-1) @ sd[p + "proj.weight"].T + sd[p + "proj.bias"]
    return o * sd[p + "gamma.weight"] if layer_scale else o


def ffn(sd, p, x):
    h = x @ sd[p + "w12.weight"].T + sd[p + "w12.bias"]
    hid = h.shape[-1] // 2
    return (F.silu(h[:, :hid]) * h[:, hid:]) @ sd[p + "w3.weight"].T + sd[p + "w3.bias"]


def block(sd, p, x, heads, rope, **kw):
    x = x + attention(sd, p + "attn.", rms(x, sd[p + "ln1.weight"]), heads, rope, **kw)
    return x + ffn(sd, p + "ffn.", rms(x, sd[p + "ln2.weight"]))


def backbone(sd, img, heads, prefix=""):
    """img: (3, H, W) -> featmap (C, Hp', Wp') for one image."""
    s = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    w = s["patch_embed.projection.weight"]
    c = w.shape[0]
    hp, wp = img.shape[1] // 16, img.shape[2] // 16
    tokens = torch.empty(hp * wp, c)
    for y in range(hp):
        for x in range(wp):
            patch = img[:, 16 * y:16 * y + 16, 16 * x:16 * x + 16]
            tokens[y * wp + x] = (w * patch).sum(dim=(1, 2, 3)) + s["patch_embed.projection.bias"]
    n_tok = len({k.split(".")[2] for k in s if k.startswith("tokenizer.blocks.")})
    if n_tok:
        pooled = []
        for wy in range(hp // 4):
            for wx in range(wp // 4):
                win = [tokens[(4 * wy + a) * wp + 4 * wx + b] for a in range(4) for b in range(4)]
                t = torch.cat([s["tokenizer.w_cls"][0], torch.stack(win)]) + s["tokenizer.local_pos_embed"][0]
                for i in range(n_tok):
                    t = block(s, f"tokenizer.blocks.{i}.", t, heads, None, qk_norm=False, layer_scale=False)
                pooled.append(t[0])
        tokens, hp, wp = torch.stack(pooled), hp // 4, wp // 4
    x = torch.cat([s["cls_token"][0], s["storage_tokens"][0], tokens])
    rope = rope_tables(s["rope_embed.periods"], hp, wp)
    depth = len({k.split(".")[1] for k in s if k.startswith("blocks.")})
    for i in range(depth):
        x = block(s, f"blocks.{i}.", x, heads, rope)
    x = rms(x, s["ln1.weight"])
    return x[9:].T.reshape(c, hp, wp)


def _inorm_silu(x):
    return F.silu(F.instance_norm(x[None])[0])


def pixel_shuffle(x):
    c4, h, w = x.shape
    out = torch.empty(c4 // 4, 2 * h, 2 * w)
    for i in range(2):
        for j in range(2):
            out[:, i::2, j::2] = x[[4 * c + 2 * i + j for c in range(c4 // 4)]]
    return out


def head(sd, task, feat):
    s = {k[len("decode_head."):]: v for k, v in sd.items() if k.startswith("decode_head.")}

    def conv(x, name, stride=1, pad=None):
        wt = s[name + ".weight"]
        p = (wt.shape[-1] - 1) // 2 if pad is None else pad
        return F.conv2d(x[None], wt, s.get(name + ".bias"), stride=stride, padding=p)[0]

    x = feat
    if task in ("pose", "seg"):
        i = 0
        while f"deconv_layers.{i}.weight" in s:
            x = _inorm_silu(F.conv_transpose2d(x[None], s[f"deconv_layers.{i}.weight"], stride=2, padding=1)[0])
            i += 3
        i = 0
        while f"conv_layers.{i}.weight" in s:
            x = _inorm_silu(conv(x, f"conv_layers.{i}"))
            i += 3
        return conv(x, "conv_pose" if task == "pose" else "conv_seg")
    x = _inorm_silu(conv(x, "input_conv.0"))
    for u in range(4):
        x = _inorm_silu(pixel_shuffle(conv(x, f"upsample_blocks.{u}.0")))
    for i in (0, 3, 6):
        x = _inorm_silu(conv(x, f"conv_layers.{i}"))
    if task == "normal":
        return conv(x, "conv_normal")
    dense = conv(x, "conv_pointmap")
    y = feat
    for i in (0, 3, 6):
        y = _inorm_silu(conv(y, f"scale_conv_layers.{i}", stride=2, pad=0))
    y = y.reshape(-1)
    y = F.silu(y @ s["scale_final_layer.1.weight"].T + s["scale_final_layer.1.bias"])
    y = F.silu(y @ s["scale_final_layer.3.weight"].T + s["scale_final_layer.3.bias"])
    return dense, y @ s["scale_final_layer.5.weight"].T + s["scale_final_layer.5.bias"]
