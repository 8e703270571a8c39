"""Torch twins of the Core ML recipes: each applies its recipe's compression, and the damage
grows as the bits shrink."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")

from sapiens_edge.export.calibration import calibration_data  # noqa: E402
from sapiens_edge.export.recipes import Rounding, get_recipe  # noqa: E402
from sapiens_edge.models import Sapiens2TaskModel  # noqa: E402
from sapiens_edge.quantize.coreml_twin import LUT_BUFFER, palettize, twin  # noqa: E402
from tests.export.shared import photo_input  # noqa: E402
from tests.helpers import TINY, randomize_, tiny_info  # noqa: E402

SHALLOW = dataclasses.replace(TINY, size="tiny-shallow", depth=2)


@pytest.fixture(scope="module")
def setup():
    info = dataclasses.replace(tiny_info("seg", SHALLOW), name="tiny-seg")
    model = randomize_(Sapiens2TaskModel(info).eval())
    model.sapiens_info = info
    x = torch.from_numpy(photo_input("seg", info.input_hw))
    with torch.no_grad():
        ref = model(x)
    return model, x, ref


def _rel_err(module, x, ref) -> float:
    with torch.no_grad():
        out = module(x)
    return float((out.float() - ref).norm() / ref.norm())


def test_twins_damage_grows_as_bits_shrink(setup):
    model, x, ref = setup
    hw = model.sapiens_info.input_hw
    calib = calibration_data("seg", hw, None, 2)
    err = {r: _rel_err(twin(model, get_recipe(r), hw, calib), x, ref)
           for r in ("coreml-fp32", "coreml-fp16", "coreml-int8", "coreml-palettized-6bit", "coreml-palettized-4bit")}
    assert err["coreml-fp32"] == 0
    assert 0 < err["coreml-fp16"] < 1e-2
    assert 0 < err["coreml-int8"] < err["coreml-palettized-6bit"] < err["coreml-palettized-4bit"] < 0.5, err


def test_twins_leave_the_model_alone_and_compress_weights(setup):
    model, _, _ = setup
    before = {n: p.clone() for n, p in model.named_parameters()}
    pal = twin(model, get_recipe("coreml-palettized-4bit"), model.sapiens_info.input_hw,
               calibration_data("seg", model.sapiens_info.input_hw, None, 2))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    w = dict(pal.named_parameters())["backbone.blocks.0.ffn.w12.weight"].detach()  # (512, 64)
    # 4-bit LUT per group of 16 output channels: at most 16 distinct values per group
    assert max(g.unique().numel() for g in w.reshape(-1, 16, w.shape[1])) <= 16
    assert w.unique().numel() > 16  # ... and the groups have LUTs of their own
    # The int8 policy's float layers (patch embedding, seg head) keep their weights, as in every int8 recipe
    for twin_model in (pal, twin(model, get_recipe("coreml-int8"), model.sapiens_info.input_hw)):
        params = dict(twin_model.named_parameters())
        for name in ("backbone.patch_embed.projection.weight", "decode_head.conv_seg.weight",
                     "decode_head.deconv_layers.0.weight"):
            assert torch.equal(params[name], before[name]), name
        assert not torch.equal(params["backbone.blocks.1.attn.wq.weight"], before["backbone.blocks.1.attn.wq.weight"])

def test_w8a8_twin_is_the_calibrated_pt2e_program(setup):
    pytest.importorskip("executorch")
    model, x, ref = setup
    hw = model.sapiens_info.input_hw
    recipe = get_recipe("coreml-w8a8")
    calib = calibration_data("seg", hw, None, 2)
    err = _rel_err(twin(model, recipe, hw, calib), x, ref)
    assert 1e-3 < err < 0.5, err
    with pytest.raises(Exception, match="needs calibration"):
        twin(model, recipe, hw)


def test_palettized_twin_chooses_lut_entries_by_gptq(setup):
    """GPTQ keeps each group's LUT and picks among its entries; the output comes closer to float
    than with every weight at its nearest entry, and without calibration it says what is missing."""
    model, x, ref = setup
    hw = model.sapiens_info.input_hw
    recipe = get_recipe("coreml-palettized-4bit")
    nearest_recipe = dataclasses.replace(recipe, weights=dataclasses.replace(recipe.weights, rounding=Rounding.NEAREST))
    # All 8 built-in images: they are another photo than `x`, and GPTQ fitted to 2 of them generalises
    # less (output error vs nearest: 0.80x with 2, 0.69x with 8; 0.43x when it calibrated on `x` itself)
    calib = calibration_data("seg", hw, None, None)
    gptq_model, info = palettize(model, recipe, calib)
    nearest_model, nearest_info = palettize(model, nearest_recipe)
    assert info["weight_rounding"]["layers"] == 6 * len(model.backbone.blocks)
    assert nearest_info["weight_rounding"]["method"].startswith("nearest")
    gptq_mods, nearest_mods = dict(gptq_model.named_modules()), dict(nearest_model.named_modules())
    name = "backbone.blocks.1.ffn.w12"
    lut = gptq_mods[name].get_buffer(LUT_BUFFER)  # (groups, 1, 16, 1)
    assert torch.equal(lut, nearest_mods[name].get_buffer(LUT_BUFFER))  # same k-means LUTs
    w = gptq_mods[name].weight.detach()
    for group, rows in enumerate(w.split(16)):
        assert set(rows.flatten().tolist()) <= set(lut[group].flatten().tolist())
    assert not torch.equal(w, nearest_mods[name].weight)
    assert _rel_err(gptq_model, x, ref) < 0.8 * _rel_err(nearest_model, x, ref)
    with pytest.raises(Exception, match="needs calibration"):
        twin(model, recipe, hw)


def test_keep_float_leaves_matched_layers_unpalettized(setup):
    """`--keep-float` (the calibration's keep_float) applies to palettization as to int8."""
    model, _, _ = setup
    calib = calibration_data("seg", model.sapiens_info.input_hw, None, 2)
    calib.keep_float = ("blocks.0.attn.",)
    compressed, info = palettize(model, get_recipe("coreml-palettized-4bit"), calib)
    modules, params = dict(compressed.named_modules()), dict(model.named_parameters())
    for name in ("wq", "wk", "wv", "proj"):
        layer = modules[f"backbone.blocks.0.attn.{name}"]
        assert LUT_BUFFER not in dict(layer.named_buffers())
        assert torch.equal(layer.weight, params[f"backbone.blocks.0.attn.{name}.weight"])
    assert LUT_BUFFER in dict(modules["backbone.blocks.1.attn.wq"].named_buffers())
    assert info["weight_rounding"]["layers"] == 6 * len(model.backbone.blocks) - 4
