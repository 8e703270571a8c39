"""Export core with a stand-in target: manifest content, atomic writes, --force, interruption,
calibration sets, recipe checks. The real ONNX target is tested in test_onnx_target.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sapiens_edge.errors import CalibrationError, OutputExistsError, RecipeError
from sapiens_edge.export import core, targets
from sapiens_edge.export.calibration import calibration_data
from sapiens_edge.export.recipes import RECIPES, availability, get_recipe
from sapiens_edge.manifest import SCHEMA_VERSION, TensorSpec, read_manifest
from sapiens_edge.models import Sapiens2TaskModel
from sapiens_edge.zoo import get_model_info
from tests.helpers import ASTRONAUT, randomize_, tiny_info


class FakeTarget:
    """Writes a small file; records what it was given; can fail mid-way."""

    def __init__(self, fail: bool = False):
        self.fail, self.calls = fail, []

    def lower(self, model, recipe, input_hw, workdir: Path, calibration, progress, **target_options):
        self.calls.append({"recipe": recipe.name, "input_hw": input_hw, "calibration": calibration,
                           "target_options": target_options})
        (workdir / "model.bin").write_bytes(b"weights" * 10)
        if calibration is not None:
            self.samples = [b.shape for b in calibration.batches()]
        if self.fail:
            raise KeyboardInterrupt  # an interrupted export
        h, w = input_hw
        return targets.Lowered("model.bin", [TensorSpec("image", [1, 3, h, w], "float32")],
                               [TensorSpec("logits", [1, 29, h, w], "float32")], {"fake": "1"})


@pytest.fixture
def fake(monkeypatch):
    target = FakeTarget()
    monkeypatch.setattr(core, "get_target", lambda name: target)
    return target


@pytest.fixture
def tiny_seg():
    info = tiny_info("seg")
    model = randomize_(Sapiens2TaskModel(info).eval())
    model.sapiens_info, model.sapiens_weights, model.sapiens_weights_path, model.sapiens_seed = info, None, None, 0
    return model


def test_artifact_folder_and_manifest(fake, tiny_seg, tmp_path):
    art = core.export(tiny_seg, "onnx-fp32", tmp_path / "a", input_size=(128, 96), progress=lambda _: None)
    m = read_manifest(tmp_path / "a")  # verifies every sha256
    assert m.schema_version == SCHEMA_VERSION and m.recipe == "onnx-fp32" and m.task == "seg"
    assert m.input_hw == [128, 96] and m.model_file == "model.bin"
    assert set(m.files) == {"model.bin", "README.md"}
    assert m.source_weights["random"] is True
    assert len(m.task_metadata["class_names"]) == 29 and m.normalization["mean_rgb"][0] == pytest.approx(123.675)
    assert m.tool_versions["fake"] == "1" and "sapiens-edge" in m.tool_versions
    readme = (tmp_path / "a" / "README.md").read_text()
    assert "tiny-seg" in readme and "runtime.load" in readme
    assert art.manifest.files == m.files
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temporary folders left


def test_existing_output_needs_force(fake, tiny_seg, tmp_path):
    core.export(tiny_seg, "onnx-fp32", tmp_path / "a", input_size=(128, 96), progress=lambda _: None)
    with pytest.raises(OutputExistsError, match="force=True"):
        core.export(tiny_seg, "onnx-fp16", tmp_path / "a", input_size=(128, 96), progress=lambda _: None)
    core.export(tiny_seg, "onnx-fp16", tmp_path / "a", input_size=(128, 96), force=True, progress=lambda _: None)
    assert read_manifest(tmp_path / "a").recipe == "onnx-fp16"
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_force_never_replaces_a_folder_that_is_not_an_artifact(fake, tiny_seg, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a sapiens-edge artifact"):
        core.export(tiny_seg, "onnx-fp32", tmp_path / "docs", input_size=(128, 96), force=True)
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me"


def test_interrupted_export_leaves_nothing(monkeypatch, tiny_seg, tmp_path):
    monkeypatch.setattr(core, "get_target", lambda name: FakeTarget(fail=True))
    with pytest.raises(KeyboardInterrupt):
        core.export(tiny_seg, "onnx-fp32", tmp_path / "a", input_size=(128, 96), progress=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_forced_export_keeps_the_previous_artifact(monkeypatch, fake, tiny_seg, tmp_path):
    core.export(tiny_seg, "onnx-fp32", tmp_path / "a", input_size=(128, 96), progress=lambda _: None)
    monkeypatch.setattr(core, "get_target", lambda name: FakeTarget(fail=True))
    with pytest.raises(KeyboardInterrupt):
        core.export(tiny_seg, "onnx-fp16", tmp_path / "a", input_size=(128, 96), force=True, progress=lambda _: None)
    assert read_manifest(tmp_path / "a").recipe == "onnx-fp32"


def test_int8_gets_streamed_builtin_calibration(fake, tiny_seg, tmp_path):
    core.export(tiny_seg, "onnx-int8", tmp_path / "a", input_size=(128, 96), progress=lambda _: None)
    assert fake.samples == [(1, 3, 128, 96)] * 8
    opts = json.loads((tmp_path / "a" / "manifest.json").read_text())["export_options"]
    assert opts["calibration"]["source"] == "built-in" and "real photos" in opts["calibration"]["note"]


def test_calibration_folder_errors(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        calibration_data("seg", (128, 96), tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="No images"):
        calibration_data("seg", (128, 96), tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(ASTRONAUT.read_bytes())
    (bad / "b.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match=r"b\.png"):
        calibration_data("seg", (128, 96), bad)
    (bad / "b.png").unlink()
    good = calibration_data("pose", (128, 96), bad, limit=1)
    assert good.count == 1 and good.source == str(bad)
    batch = next(good.batches())
    assert batch.shape == (1, 3, 128, 96) and batch.dtype == np.float32


def test_recipes_are_data_with_thresholds():
    assert {"onnx-fp32", "onnx-fp16", "onnx-int8", "onnx-int8-dynamic"} <= set(RECIPES)
    assert get_recipe("onnx-int8").needs_calibration and not get_recipe("onnx-int8-dynamic").needs_calibration
    assert get_recipe("onnx-int8").thresholds_for("seg")["pixel_agreement_min"] == 0.98
    assert get_recipe("onnx-int8").thresholds_for("pose")["keypoint_err_px_max"] == 1.0
    with pytest.raises(RecipeError, match="Did you mean 'onnx-int8'"):
        get_recipe("onnx-int9")


def test_unsupported_combination_has_a_reason(fake, tmp_path):
    ok, reason = availability(get_recipe("onnx-fp32"), get_model_info("sapiens2-0.4b-pointmap"), (512, 384))
    assert not ok and "1024x768 only" in reason
    info = get_model_info("sapiens2-0.1b-pointmap")
    model = Sapiens2TaskModel(info)  # never run: the check happens before lowering
    model.sapiens_info, model.sapiens_weights_path = info, None
    with pytest.raises(RecipeError, match="1024x768 only"):
        core.export(model, "onnx-fp32", tmp_path / "a", input_size=(512, 384), progress=lambda _: None)
    assert not fake.calls


def test_keep_float_must_fit_the_recipe_and_match_a_layer(fake, tiny_seg, tmp_path):
    with pytest.raises(RecipeError, match=r"quantizes nothing statically.*onnx-int8"):
        core.export(tiny_seg, "onnx-fp32", tmp_path / "a", input_size=(128, 96), keep_float=("decode_head.",),
                    progress=lambda _: None)
    with pytest.raises(RecipeError, match=r"no calibration method 'minmax' \(none to choose: .*GPTQ only\)"):
        core.export(tiny_seg, "coreml-palettized-4bit", tmp_path / "c", input_size=(128, 96),
                    calibration_method="minmax", progress=lambda _: None)
    with pytest.raises(RecipeError, match=r"'blocks\.99\.' matches no parameter.*substrings of parameter names"):
        core.export(tiny_seg, "onnx-int8", tmp_path / "b", input_size=(128, 96), keep_float=("blocks.99.",),
                    progress=lambda _: None)
    assert not fake.calls
    core.export(tiny_seg, "onnx-int8", tmp_path / "c", input_size=(128, 96), keep_float=("blocks.0.",),
                progress=lambda _: None)
    assert fake.calls


class _Loaded(Exception):
    """Raised by a stand-in load_model: the export got past every check made before the weights load."""


@pytest.mark.parametrize(("recipe", "refused"), [("onnx-fp32", True), ("onnx-int8", False)])
def test_an_export_whose_weights_cannot_fit_on_the_disk_is_refused_before_the_model_loads(monkeypatch, tmp_path,
                                                                                          recipe, refused):
    import shutil

    from sapiens_edge.errors import DiskFullError

    params = get_model_info("sapiens2-0.4b-seg").params
    free = int(params * 1.5)  # room for int8 weights (1 byte each), not for fp32 (4 bytes)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10 * free, 9 * free, free))

    def load_model(*_a, **_k):
        raise _Loaded

    monkeypatch.setattr("sapiens_edge.loading.load_model", load_model)
    out = tmp_path / "exports" / "a"
    if refused:
        with pytest.raises(DiskFullError) as info:
            core.export("sapiens2-0.4b-seg", recipe, out, calibration_limit=1, progress=lambda _m: None)
        assert info.value.path == str(out.parent) and info.value.free == free
        assert f"{params * 4 / 2**30:.2f} GiB of weights" in str(info.value)
        assert not out.parent.exists()  # refused before anything was written
    else:
        with pytest.raises(_Loaded):
            core.export("sapiens2-0.4b-seg", recipe, out, calibration_limit=1, progress=lambda _m: None)
