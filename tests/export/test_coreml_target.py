"""The Core ML target on shallow tiny models: every recipe converts, and the ML Program has the
structure it promises (inputs, outputs, weight storage and dtypes, op set, deployment target,
metadata). Core ML cannot run here (Linux): the runtime says so clearly, and the gate is shown
refusing broken models through the recipes' torch twins (quantize/coreml_twin.py)."""

from __future__ import annotations

import dataclasses
import importlib
import json

import numpy as np
import pytest
import torch

pytest.importorskip("coremltools")

from sapiens_edge import runtime
from sapiens_edge.errors import PlatformUnavailableError, RecipeError, SapiensEdgeError
from sapiens_edge.export import core
from sapiens_edge.export.coreml import describe_program
from sapiens_edge.export.recipes import get_recipe
from sapiens_edge.models import Sapiens2TaskModel
from sapiens_edge.quantize.coreml_twin import twin
from tests.export.shared import (
    WELL_CONDITIONED,
    assert_gate_fails,
    assert_passes_recipe_thresholds,
    nan_weight,
    swap_classes,
    tiny_model,
    torch_outputs,
)
from tests.helpers import TINY, randomize_, tiny_info

QUIET = {"progress": lambda _: None}
SHALLOW = dataclasses.replace(TINY, size="tiny-shallow", depth=2)  # conversion time grows with depth
RECIPES = ("coreml-fp32", "coreml-fp16", "coreml-int8", "coreml-w8a8", "coreml-palettized-6bit",
           "coreml-palettized-4bit")
# recipe -> (spec version = deployment target, weight storage op, stored weight dtype)
EXPECTED = {
    "coreml-fp32": (7, None, "float32"),  # iOS16
    "coreml-fp16": (7, None, "float16"),
    "coreml-int8": (7, "constexpr_affine_dequantize", "int8"),
    "coreml-w8a8": (8, "constexpr_affine_dequantize", "int8"),  # iOS17
    "coreml-palettized-6bit": (9, "constexpr_lut_to_dense", "uint6"),  # iOS18
    "coreml-palettized-4bit": (9, "constexpr_lut_to_dense", "uint4"),
}


def _model(task: str) -> torch.nn.Module:
    info = dataclasses.replace(tiny_info(task, SHALLOW), name=f"tiny-{task}")
    model = randomize_(Sapiens2TaskModel(info).eval())
    model.sapiens_info, model.sapiens_weights, model.sapiens_weights_path, model.sapiens_seed = info, None, None, 0
    return model


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("coreml")
    model = _model("seg")
    hw = model.sapiens_info.input_hw
    return {r: core.export(model, r, root / r, input_size=hw, calibration_limit=2, **QUIET) for r in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES)
def test_program_structure(artifacts, recipe):
    art = artifacts[recipe]
    spec_version, storage, dtype = EXPECTED[recipe]
    program = art.manifest.export_options["program"]
    assert program["spec_version"] == spec_version
    assert (art.path / "model.mlpackage" / "Manifest.json").is_file() and art.manifest.model_file == "model.mlpackage"
    # the default input: an RGB image of the export size; outputs: named float32 arrays
    (image,) = program["inputs"]
    assert image == {"name": "image", "type": "image", "height": 128, "width": 96}
    assert program["outputs"] == [{"name": "logits", "type": "multiarray", "shape": [1, 29, 128, 96],
                                   "dtype": "float32"}]
    linears = program["op_counts"].get("linear", 0) + program["op_counts"].get("conv", 0)
    if storage is None:
        assert program["weight_storage"] == {}
        assert program["weight_dtypes"].get(dtype, 0) >= linears
    else:  # every linear is compressed; the patch embedding and the seg head stay fp16 (int8 policy)
        assert program["weight_storage"][storage] == program["op_counts"]["linear"] < linears
        assert program["weight_dtypes"][dtype] == program["weight_storage"][storage]
    if recipe == "coreml-int8":
        kept = art.manifest.export_options["kept_fp16"]
        assert any("patch_embed" in k for k in kept) and any("decode_head" in k for k in kept)
        assert not any("blocks" in k for k in kept)
    # what the manifest says is what the saved package holds
    import coremltools as ct

    loaded = ct.models.MLModel(str(art.path / "model.mlpackage"), skip_model_load=True)
    assert describe_program(loaded) == program
    meta = loaded.user_defined_metadata
    assert meta["sapiens_edge.task"] == "seg" and meta["sapiens_edge.recipe"] == recipe
    assert json.loads(meta["sapiens_edge.class_names"])[0] == "Background"
    assert meta["sapiens_edge.input_hw"] == "128x96"


def test_rmsnorm_converts_op_by_op_and_fp16_keeps_instance_norm_in_fp32(artifacts):
    ops = artifacts["coreml-fp16"].manifest.export_options["program"]["op_counts"]
    # MaxScaledRMSNorm: max-abs scaling and mean of squares, no fused (mis-scaled) rms_norm form
    assert ops["reduce_max"] >= 2 * 2 + 1 and "rms_norm" not in ops
    fp32 = artifacts["coreml-fp32"].manifest.export_options
    fp16 = artifacts["coreml-fp16"].manifest.export_options
    assert fp32["compute_precision"] == "float32" and fp16["compute_precision"].startswith("float16")
    # instance norms of the head compute in fp32: casts into and out of them
    assert ops.get("instance_norm", 0) > 0 and ops.get("cast", 0) >= 2 * ops["instance_norm"]


def test_w8a8_quantizes_activations(artifacts):
    ops = artifacts["coreml-w8a8"].manifest.export_options["program"]["op_counts"]
    assert ops.get("quantize", 0) > 0 and ops.get("dequantize", 0) > 0
    assert artifacts["coreml-w8a8"].manifest.export_options["quantization"]["calibration_method"] == "histogram"
    assert "quantize" not in artifacts["coreml-int8"].manifest.export_options["program"]["op_counts"]


def test_compressed_packages_are_smaller(artifacts):
    def size(recipe):  # the weight blobs (on a tiny model the program text is a large share of the package)
        weights = artifacts[recipe].path / "model.mlpackage" / "Data" / "com.apple.CoreML" / "weights"
        return sum(p.stat().st_size for p in weights.rglob("*") if p.is_file())

    fp16 = size("coreml-fp16")
    assert size("coreml-fp32") > 1.8 * fp16
    # the patch embedding and the seg head keep fp16 (int8 policy): on this 2-block model they are
    # half the weights; on 0.4b they are 7 % of them
    assert size("coreml-int8") < 0.8 * fp16
    # (6-bit is not below int8 on a model this small: a 64-entry fp16 LUT per 16 channels of 64
    # weights, and the fp16 layers palettization skips, weigh as much as the 2 bits saved)
    assert size("coreml-palettized-4bit") < size("coreml-palettized-6bit") < 0.75 * fp16
    assert size("coreml-palettized-4bit") < size("coreml-int8")


def test_tensor_input_option(tmp_path):
    model = _model("pose")
    art = core.export(model, "coreml-fp16", tmp_path / "t", input_size=(128, 96), target_options={"input": "tensor"},
                      **QUIET)
    program = art.manifest.export_options["program"]
    assert program["inputs"] == [{"name": "image", "type": "multiarray", "shape": [1, 3, 128, 96],
                                  "dtype": "float32"}]
    assert program["outputs"][0]["name"] == "heatmaps"
    assert art.manifest.export_options["input"]["kind"] == "tensor"
    with pytest.raises(RecipeError, match="must be one of image, tensor"):
        core.export(model, "coreml-fp16", tmp_path / "u", target_options={"input": "nchw"}, **QUIET)
    with pytest.raises(RecipeError, match="has no option 'input'"):
        core.export(model, "onnx-fp32", tmp_path / "v", target_options={"input": "tensor"}, **QUIET)


def test_runtime_says_where_core_ml_runs(artifacts):
    with pytest.raises(PlatformUnavailableError, match="Apple platforms only"):
        runtime.load(artifacts["coreml-fp16"].path)


def test_fp16_recipes_record_the_activation_headroom(artifacts):
    ranges = artifacts["coreml-fp16"].manifest.export_options["fp16_ranges"]
    assert 0 < ranges["max_abs"] < 65504 and ranges["headroom"] == pytest.approx(65504 / ranges["max_abs"])
    assert ranges["where"] == ranges["largest"][0][0]
    assert "fp16_ranges" not in artifacts["coreml-fp32"].manifest.export_options


def test_activations_past_fp16_fail_the_fp16_export(tmp_path):
    model = _model("seg")
    with torch.no_grad():  # a head conv whose output leaves fp16's range
        model.decode_head.conv_layers[0].weight.mul_(1e6)
    with pytest.raises(SapiensEdgeError, match=r"past fp16's range.*coreml-fp32"):
        core.export(model, "coreml-fp16", tmp_path / "o", input_size=(128, 96), **QUIET)
    assert not (tmp_path / "o").exists()


def test_palettized_package_holds_exactly_the_torch_twins_weights(artifacts):
    """What the Core ML benchmark measures off Apple (the twin) is what the package computes with."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    from sapiens_edge.export.calibration import calibration_data
    from sapiens_edge.export.recipes import get_recipe
    from sapiens_edge.quantize.coreml_twin import twin

    recipe = get_recipe("coreml-palettized-4bit")
    loaded = ct.models.MLModel(str(artifacts[recipe.name].path / "model.mlpackage"), skip_model_load=True)
    weights = cto.get_weights_metadata(cto.decompress_weights(loaded), weight_threshold=1024)
    (key,) = [k for k in weights if "blocks_0_ffn_w12" in k]
    packaged = np.asarray(weights[key].val, np.float32)
    calib = calibration_data("seg", (128, 96), None, 2)  # the export's: calibration_limit=2
    twinned = dict(twin(_model("seg"), recipe, (128, 96), calib).named_parameters())["backbone.blocks.0.ffn.w12.weight"]
    np.testing.assert_allclose(packaged, twinned.detach().numpy(), rtol=1e-3, atol=1e-4)  # fp16 storage of the LUT
    assert np.unique(packaged[:16]).size <= 16  # one 4-bit LUT for the first 16 output channels


def test_tampered_package_is_refused_before_core_ml_is_asked(artifacts, tmp_path):
    """The manifest's sha256 covers every file inside the .mlpackage folder."""
    import shutil

    from sapiens_edge.errors import ArtifactError

    copy = tmp_path / "tampered"
    shutil.copytree(artifacts["coreml-int8"].path, copy)
    (weights,) = (copy / "model.mlpackage").rglob("weight.bin")
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)
    with pytest.raises(ArtifactError, match=r"weight\.bin"):
        runtime.load(copy)


class _TwinPredictor:
    """A Core ML artifact as validate() can run it off Apple: its manifest, computed by its recipe's torch twin."""

    def __init__(self, manifest, module: torch.nn.Module):
        self.manifest, self.module = manifest, module

    def run(self, x):
        return torch_outputs(self.module, x)


@pytest.mark.parametrize(("recipe", "damage", "verdict", "reason"), [
    ("coreml-fp32", swap_classes, "FAILED", "pixel_agreement"),
    # fp16 compute: one NaN classifier weight still poisons its class's logits at every pixel (128 x 96)
    ("coreml-fp16", lambda m: nan_weight(m, "conv_seg"), "FATAL", "output 0 (logits): 12288 of 356352 values"),
], ids=["fp32-swapped-classes", "fp16-nan-weight"])
def test_broken_model_fails_the_gate_through_its_twin(artifacts, monkeypatch, recipe, damage, verdict, reason):
    validate_module = importlib.import_module("sapiens_edge.validation.validate")
    art, model = artifacts[recipe], _model("seg")
    broken = twin(damage(model), get_recipe(recipe), model.sapiens_info.input_hw)
    monkeypatch.setattr(validate_module, "load_model", lambda name, weights=None, seed=0: model)
    monkeypatch.setattr(validate_module, "_load_predictor", lambda *a, **k: _TwinPredictor(art.manifest, broken))
    assert_gate_fails(validate_module.validate(art.path, progress=lambda _: None), verdict, reason)


@pytest.fixture(scope="module")
def pose_artifacts(tmp_path_factory):
    """The int8 recipes exported for pose: their manifests are what validate() reads (recipe, task, outputs)."""
    root = tmp_path_factory.mktemp("coreml-pose")
    model = _model("pose")
    return {r: core.export(model, r, root / r, input_size=model.sapiens_info.input_hw, calibration_limit=2, **QUIET)
            for r in ("coreml-int8", "coreml-w8a8")}


@pytest.mark.parametrize("task", ["seg", "pose"])
@pytest.mark.parametrize("recipe", ["coreml-int8", "coreml-w8a8"])
def test_int8_twin_passes_the_recipe_gate(artifacts, pose_artifacts, monkeypatch, recipe, task):
    """The int8 recipes' numbers (their torch twins) on the well-conditioned tiny stand-in pass the recipe's
    own thresholds through validate(): the artifact's manifest says what to check, the twin computes."""
    from sapiens_edge.export.calibration import calibration_data

    validate_module = importlib.import_module("sapiens_edge.validation.validate")
    art = (artifacts if task == "seg" else pose_artifacts)[recipe]
    model = tiny_model(task, **WELL_CONDITIONED[task])
    hw = model.sapiens_info.input_hw
    quantized = twin(model, get_recipe(recipe), hw, calibration_data(task, hw, None, 2))  # the exports' calibration
    monkeypatch.setattr(validate_module, "load_model", lambda name, weights=None, seed=0: model)
    monkeypatch.setattr(validate_module, "_load_predictor", lambda *a, **k: _TwinPredictor(art.manifest, quantized))
    assert_passes_recipe_thresholds(validate_module.validate(art.path, progress=lambda _: None), recipe, task)
