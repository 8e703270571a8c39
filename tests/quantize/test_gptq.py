"""GPTQ weight rounding (`quantize.gptq`): the weights land on the int8 grid every target's quantizer
uses (so it reproduces them exactly), the layer output error is lower than rounding to nearest, the
policy's float layers are left alone, and the exporters ship exactly these weights."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from sapiens_edge.export.calibration import calibration_data
from sapiens_edge.export.capture import prepare, prepare_static_int8
from sapiens_edge.export.recipes import get_recipe
from sapiens_edge.models import Sapiens2TaskModel
from sapiens_edge.quantize.gptq import QMAX, gptq_, gptq_round, gptq_round_lut, round_to_grid
from tests.helpers import TINY, randomize_, tiny_info

QUIET = {"progress": lambda _: None}
SHALLOW = dataclasses.replace(TINY, size="tiny-shallow", depth=3)  # GPTQ's cost grows with depth


def tiny_model(task: str) -> torch.nn.Module:
    info = dataclasses.replace(tiny_info(task, SHALLOW), name=f"tiny-{task}")
    model = randomize_(Sapiens2TaskModel(info).eval())
    model.sapiens_info, model.sapiens_weights, model.sapiens_weights_path, model.sapiens_seed = info, None, None, 0
    return model


def _on_grid(weight: torch.Tensor, reference: torch.Tensor) -> None:
    """Every row of `weight` is k * max|reference row| / 127, k in -127..127, and keeps that max."""
    scale = reference.abs().amax(1, keepdim=True) / QMAX
    levels = weight / scale
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert levels.abs().max() <= QMAX + 1e-3
    assert torch.equal(weight.abs().amax(1), reference.abs().amax(1))  # the quantizer derives the same scale


def test_gptq_lowers_the_output_error_and_stays_on_the_grid():
    g = torch.Generator().manual_seed(0)
    # Correlated inputs, as a layer's activations are: where GPTQ's error feedback has something to use.
    mix = torch.eye(256) + 0.5 * torch.randn(256, 256, generator=g) / 16
    x = torch.randn(2000, 256, generator=g) @ mix
    w = torch.randn(96, 256, generator=g) / 16
    hessian = (x.T @ x).double()
    q = gptq_round(w, hessian)
    _on_grid(q, w)
    err_gptq = ((q - w) @ x.T).square().sum()
    err_nearest = ((round_to_grid(w) - w) @ x.T).square().sum()
    assert err_gptq < 0.85 * err_nearest, (err_gptq, err_nearest)  # measured: ~0.8x here, ~0.1x on 0.4b layers
    # An input that never fired (a zero Hessian column) leaves the rest well defined.
    x0 = x.clone()
    x0[:, 7] = 0
    q0 = gptq_round(w, (x0.T @ x0).double())
    assert torch.isfinite(q0).all()
    _on_grid(q0, w)


def test_gptq_onto_a_lut_picks_each_rows_entries_and_lowers_the_output_error():
    """The palettized Core ML recipes: GPTQ chooses among each row's LUT entries (the LUT is kept)."""
    g = torch.Generator().manual_seed(0)
    mix = torch.eye(128) + 0.5 * torch.randn(128, 128, generator=g) / 12
    x = torch.randn(1500, 128, generator=g) @ mix
    w = torch.randn(64, 128, generator=g) / 12
    # one 16-entry LUT per 16 rows, spread over each group's range (as k-means would place them)
    lut = torch.stack([torch.quantile(w[r // 16 * 16:r // 16 * 16 + 16].flatten(), torch.linspace(0.02, 0.98, 16))
                       for r in range(64)])
    q = gptq_round_lut(w, (x.T @ x).double(), lut)
    assert all(set(q[r].tolist()) <= set(lut[r].tolist()) for r in range(64))
    nearest = lut.gather(1, (w[:, :, None] - lut[:, None, :]).abs().argmin(2))
    err_gptq = ((q - w) @ x.T).square().sum()
    err_nearest = ((nearest - w) @ x.T).square().sum()
    assert err_gptq < 0.85 * err_nearest, (err_gptq, err_nearest)
    assert (q != nearest).any()  # it did choose differently


def test_gptq_rounds_the_block_linears_and_leaves_the_policy_float_layers_alone():
    model = tiny_model("seg")
    recipe = get_recipe("onnx-int8")
    calib = calibration_data("seg", model.sapiens_info.input_hw, limit=2)
    calib.method, calib.keep_float = None, ("blocks.0.attn.",)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    module, info = prepare_static_int8(model, recipe, calib, **QUIET)
    # The caller's model is untouched; the copy carries the recipe's rewrites.
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert info["images"] == 2 and info["kept_float"] == len(model.backbone.blocks) + 4
    reference = dict(prepare(model, recipe.rewrites, always_copy=True).named_parameters())
    rounded = kept = 0
    for name, p in module.named_parameters():
        if ".blocks." not in name or not name.endswith("weight") or p.dim() != 2:
            continue
        if "rotation" in name or "blocks.0.attn." in name:  # float by policy / by --keep-float
            assert torch.equal(p, reference[name])
            kept += 1
        else:
            assert not torch.equal(p, reference[name])
            _on_grid(p.detach(), reference[name].detach())
            rounded += 1
    depth = len(model.backbone.blocks)
    assert kept == depth + 4  # one rotation per block; block 0's q, k, v, proj
    assert info["layers"] == rounded == 7 * depth - 4  # q, k, v, proj, gate, value, down; not block 0 attn


def test_gptq_output_is_closer_to_float_than_rounding_to_nearest():
    """End to end, weights only, on an input GPTQ calibrated with: the whole model's output."""
    model = tiny_model("seg")
    recipe = get_recipe("onnx-int8")
    calib = calibration_data("seg", model.sapiens_info.input_hw, limit=2)
    float_module = prepare(model, recipe.rewrites, always_copy=True)
    gptq_module, nearest = copy.deepcopy(float_module), copy.deepcopy(float_module)
    gptq_(gptq_module, calib.batches(), skip=lambda name: "rotation" in name)
    with torch.no_grad():
        for name, p in nearest.named_parameters():
            if ".blocks." in name and name.endswith("weight") and p.dim() == 2 and "rotation" not in name:
                p.copy_(round_to_grid(p))
    x = torch.from_numpy(np.ascontiguousarray(next(iter(calib.batches())), dtype=np.float32))
    with torch.no_grad():
        ref = float_module(x)
        err_gptq = (gptq_module(x) - ref).square().mean().item()
        err_nearest = (nearest(x) - ref).square().mean().item()
    assert err_gptq < 0.8 * err_nearest, (err_gptq, err_nearest)


@pytest.mark.parametrize("recipe", ["onnx-int8"])
def test_the_exported_int8_weights_are_the_gptq_weights(recipe, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from sapiens_edge.export import core

    model = tiny_model("seg")
    hw = model.sapiens_info.input_hw
    art = core.export(model, recipe, tmp_path / "a", input_size=hw, calibration_limit=2, **QUIET)
    rounding = art.manifest.export_options["weight_rounding"]
    assert rounding["method"].startswith("GPTQ") and rounding["layers"] == 7 * len(model.backbone.blocks)
    calib = calibration_data("seg", hw, limit=2)
    calib.method, calib.keep_float = None, ()
    module, _ = prepare_static_int8(model, get_recipe(recipe), calib, **QUIET)
    wq = dict(module.named_parameters())["backbone.blocks.1.attn.inner.wq.weight"].detach()  # fused_attention
    expected = wq.numpy()
    graph = onnx.load(str(art.path / "model.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    dequantized = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and inits.get(node.input[0]) is not None \
                and inits[node.input[0]].dtype == np.int8 and inits[node.input[0]].shape == expected.shape:
            levels, scale = inits[node.input[0]], inits[node.input[1]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            weight = levels.astype(np.float32) * np.expand_dims(scale, 1 - axis)  # per output channel:
            dequantized.append(weight if axis == 0 else weight.T)  # Gemm(transB) holds (out, in), MatMul (in, out)
    matches = [d for d in dequantized if np.allclose(d, expected, rtol=0, atol=1e-6)]
    assert len(matches) == 1, "block 1's wq should appear once, exactly as GPTQ rounded it"
    float_wq = dict(prepare(model, get_recipe(recipe).rewrites, always_copy=True).named_parameters())[
        "backbone.blocks.1.attn.inner.wq.weight"].detach()
    nearest = round_to_grid(float_wq).numpy()
    assert not np.allclose(nearest, expected, atol=1e-6)  # and GPTQ did move it off round-to-nearest


def test_gptq_takes_the_calibration_images_it_needs(monkeypatch):
    """Each image costs a pass per block: GPTQ stops drawing images once it has TOKENS_PER_INPUT
    tokens per input channel of the widest layer (the whole set when it has fewer)."""
    from sapiens_edge.quantize import gptq

    model = tiny_model("seg")
    calib = calibration_data("seg", model.sapiens_info.input_hw, limit=3)
    module = prepare(model, get_recipe("onnx-int8").rewrites, always_copy=True)
    tokens = 57  # per 128x96 image: 8x6 patches + the class and storage tokens
    widest = 256  # the SwiGLU down projection's input
    monkeypatch.setattr(gptq, "TOKENS_PER_INPUT", 1.5 * tokens / widest)
    assert gptq_(copy.deepcopy(module), calib.batches(), skip=lambda n: "rotation" in n)["images"] == 2
    monkeypatch.setattr(gptq, "TOKENS_PER_INPUT", 3)
    assert gptq_(module, calib.batches(), skip=lambda n: "rotation" in n)["images"] == 3


def test_gptq_says_what_is_missing():
    from sapiens_edge.errors import CalibrationError, SapiensEdgeError

    module = prepare(tiny_model("seg"), (), always_copy=True)
    with pytest.raises(CalibrationError, match="no images"):
        gptq_(module, iter(()), skip=lambda n: False)
    with pytest.raises(SapiensEdgeError, match=r"`backbone\.blocks` ModuleList"):
        gptq_(torch.nn.Linear(4, 4), iter(()), skip=lambda n: False)
