"""The TFLite target on tiny models: parity of every recipe against PyTorch through the validation
gate, the NHWC layout, XNNPACK coverage, weight storage per precision, the runtime backend (also
with neither torch nor the converter importable), and damaged files."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from sapiens_edge import runtime
from sapiens_edge.errors import ArtifactError, SapiensEdgeError
from sapiens_edge.export import core
from sapiens_edge.runtime.backends.tflite_backend import delegation_report, make_interpreter, weight_types
from sapiens_edge.validation import metrics as M
from tests.export.shared import (
    DECODED_FP32_LOOSE,
    DECODED_TASKS,
    assert_decoded_export_passes,
    assert_passes_recipe_thresholds,
    photo_input,
    torch_outputs,
    wrecked_copy,
)
from tests.helpers import ASTRONAUT

validate_module = importlib.import_module("sapiens_edge.validation.validate")
QUIET = {"progress": lambda _: None}
RECIPES = ("tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8")


@pytest.fixture(scope="module")
def artifacts(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    model = models["seg"]
    hw = model.sapiens_info.input_hw
    return {r: core.export(model, r, root / r, input_size=hw, calibration_limit=2, **QUIET) for r in RECIPES}


def _tensor_types(path) -> set[str]:
    return {np.dtype(t["dtype"]).name for t in make_interpreter(path).get_tensor_details()}


@pytest.mark.parametrize("recipe", RECIPES)
def test_nhwc_contract_and_delegation(artifacts, recipe):
    m = artifacts[recipe].manifest
    assert m.target == "tflite" and m.model_file == "model.tflite"
    assert m.inputs[0].layout == "NHWC" and m.inputs[0].shape == [1, 128, 96, 3]
    assert m.inputs[0].dtype == "float32"  # float I/O for every precision, int8 included
    assert [(o.name, o.shape, o.layout) for o in m.outputs] == [("logits", [1, 128, 96, 29], "NHWC")]
    report = m.export_options["delegation"]
    # Nothing falls out of XNNPACK: attention, norms, the bf16-exact RoPE rounding (no CASTs), GQA's
    # kv expansion (a concat, not a BROADCAST_TO), the quantize/dequantize of the int8 recipes.
    assert report["outside"] == {} and report["partitions"] == 1, report
    assert report["delegated_ops"] == report["ops"] > 0
    # The model file agrees with what the manifest recorded.
    assert delegation_report(artifacts[recipe].path / "model.tflite")["outside"] == report["outside"]


def test_fp32_matches_pytorch_and_passes_its_gate(models, artifacts, tiny_reference):
    model = models["seg"]
    x = photo_input("seg", model.sapiens_info.input_hw)
    ref = torch_outputs(model, x)
    art = artifacts["tflite-fp32"]
    assert art.manifest.export_options["rope"].startswith("bf16-exact")
    with runtime.load(art.path) as p:
        assert p.backend == "tflite"
        out = p.run(x)  # NCHW in and out, like every artifact
    assert [o.shape for o in out] == [r.shape for r in ref]
    assert M.rel_l2(ref[0], out[0]) < 1e-4, M.rel_l2(ref[0], out[0])
    report = validate_module.validate(art.path, progress=lambda _: None)
    assert report.fatal is None and report.passed, report.summary()


def test_fp32_pointmap_passes_the_tight_gate(models, tiny_reference, tmp_path):
    """PixelShuffle (PyTorch's channel-major order through the NHWC converter, spec 8.9), instance
    norms, and the scale output (rank 2, no layout). (bf16-exact RoPE matters most for pose: plain
    fp32 RoPE moved tiny-model keypoints 0.19 px, over the 0.05 px limit; exact: 0.0002 px.)"""
    model = models["pointmap"]
    art = core.export(model, "tflite-fp32", tmp_path / "pointmap", input_size=model.sapiens_info.input_hw, **QUIET)
    assert [o.layout for o in art.manifest.outputs] == ["NHWC", ""]
    report = validate_module.validate(art.path, progress=lambda _: None)
    assert report.fatal is None and report.passed, report.summary()


def test_fp16_stores_half_weights_and_passes_its_gate(artifacts, tiny_reference):
    art = artifacts["tflite-fp16"]
    path = art.path / "model.tflite"
    assert "float16" in _tensor_types(path)
    assert path.stat().st_size < 0.65 * (artifacts["tflite-fp32"].path / "model.tflite").stat().st_size
    report = validate_module.validate(art.path, progress=lambda _: None)
    assert report.fatal is None and report.passed, report.summary()


@pytest.mark.parametrize("recipe", ["tflite-int8-dynamic", "tflite-int8"])
def test_int8_parity(artifacts, models, tiny_reference, recipe):
    art = artifacts[recipe]
    # Read from the file: linears int8, every conv (patch embedding, the seg head) and RMSNorm's
    # statistics rows (width-1 linears) float, as quantize.policy wants.
    layers = weight_types(art.path / "model.tflite")
    assert layers["conv_2d"]["int8"] == 0, layers
    int8_linears = layers["fully_connected"]["int8"]
    norm_rows = 2 * models["seg"].sapiens_info.arch.depth  # ln1, ln2 of every block (+ q/k norms per head)
    assert 0 < int8_linears <= layers["fully_connected"]["total"] - norm_rows, layers
    if recipe == "tflite-int8":  # GPTQ rounded exactly the block linears that are int8 (quantize.gptq)
        assert art.manifest.export_options["weight_rounding"]["layers"] == 7 * models["seg"].sapiens_info.arch.depth
    # the recipe's own thresholds on the well-conditioned stand-in (conftest `models`)
    assert_passes_recipe_thresholds(validate_module.validate(art.path, progress=lambda _: None), recipe, "seg")


@pytest.mark.parametrize("recipe", ["tflite-int8-dynamic"])
def test_int8_pose_passes_the_recipe_gate(models, tiny_reference, recipe, tmp_path):
    """Pose on the well-conditioned stand-in: keypoints within the recipe's 1 heatmap px, PCK >= 0.95. The static
    recipe's pose gate is test_decoded_int8_passes_the_gate[pose] (the same int8 network, decoded in the graph)."""
    model = models["pose"]
    art = core.export(model, recipe, tmp_path / "a", input_size=model.sapiens_info.input_hw, calibration_limit=2,
                      **QUIET)
    assert_passes_recipe_thresholds(validate_module.validate(art.path, progress=lambda _: None), recipe, "pose")


def test_int8_file_is_smaller(artifacts):
    fp32 = (artifacts["tflite-fp32"].path / "model.tflite").stat().st_size
    for recipe in ("tflite-int8-dynamic", "tflite-int8"):
        # Tiny model: the float head is a large share; on 0.1b the ratio is ~0.3.
        assert (artifacts[recipe].path / "model.tflite").stat().st_size < 0.6 * fp32, recipe


def test_backend_options(artifacts, models):
    x = photo_input("seg", models["seg"].sapiens_info.input_hw)
    path = artifacts["tflite-fp32"].path
    with runtime.load(path, threads=1) as fast, runtime.load(path, xnnpack=False) as reference:
        assert fast.describe()["threads"] == 1 and reference.describe()["xnnpack"] is False
        assert M.rel_l2(reference.run(x)[0], fast.run(x)[0]) < 1e-5  # summation order only
    with pytest.raises(SapiensEdgeError, match="no option"):
        runtime.load(path, provider="cuda")
    with pytest.raises(SapiensEdgeError, match=r"expects input 'image'.*NCHW"):
        runtime.load(path).run(x.transpose(0, 2, 3, 1))  # NHWC is the file's layout, not run()'s


def test_runs_with_neither_torch_nor_the_converter(artifacts, models, tmp_path):
    x = photo_input("seg", models["seg"].sapiens_info.input_hw)
    with runtime.load(artifacts["tflite-int8"].path) as p:
        expected = p.run(x)[0]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", expected)
    code = f"""
import sys
for blocked in ("torch", "litert_torch", "torchao"):
    sys.modules[blocked] = None  # any import of them now raises
import numpy as np
from sapiens_edge import runtime
with runtime.load({str(artifacts["tflite-int8"].path)!r}) as p:
    out = p.run(np.load({str(tmp_path / "x.npy")!r}))[0]
    result = p.predict({str(ASTRONAUT)!r})  # pre- and post-processing torch-free too
assert result.labels.ndim == 2 and "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
np.testing.assert_array_equal(out, np.load({str(tmp_path / "expected.npy")!r}))
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_damaged_file_is_a_clear_error(artifacts, tmp_path):
    bad = wrecked_copy(artifacts["tflite-fp32"].path, "model.tflite", tmp_path)  # flatbuffer header zeroed
    with pytest.raises(ArtifactError, match=r"sha256|changed"):
        runtime.load(bad)
    with pytest.raises(ArtifactError, match="LiteRT could not load"):
        runtime.load(bad, verify=False)


def test_concat_kv_expansion_is_exact():
    import torch

    from sapiens_edge.export.rewrites import concat_expand_kv
    from sapiens_edge.models.layers import _expand_kv

    t = torch.randn(1, 3, 10, 8)
    assert torch.equal(concat_expand_kv(None, t, 6), _expand_kv(t, 6))


@pytest.mark.parametrize("task", DECODED_TASKS)
def test_decoded_fp32_matches_the_python_decoders_and_passes_the_gate(models, tiny_reference, task, tmp_path):
    assert_decoded_export_passes(models[task], "tflite-fp32", task, tmp_path / task, fp32_tolerances=DECODED_FP32_LOOSE)


@pytest.mark.parametrize("task", DECODED_TASKS)
def test_decoded_int8_passes_the_gate(models, tiny_reference, task, tmp_path):
    assert_decoded_export_passes(models[task], "tflite-int8", task, tmp_path / task)
