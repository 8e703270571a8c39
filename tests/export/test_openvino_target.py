"""The OpenVINO target on tiny models: parity of every recipe against PyTorch through the validation gate,
the IR's weight storage per precision, the keep-float policy as NNCF's ignored scope, GPTQ's grid
surviving NNCF, the inference precision hint, the runtime backend (devices, options, torch-free), and
damaged files."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

import openvino as ov

from sapiens_edge import runtime
from sapiens_edge.errors import ArtifactError, OptionError, PlatformUnavailableError
from sapiens_edge.export import core
from sapiens_edge.export.openvino import WEIGHTED_OPS, weight_types
from sapiens_edge.quantize.gptq import round_to_grid
from sapiens_edge.runtime.backends.openvino_backend import resolve_precision
from sapiens_edge.runtime.backends.openvino_reduced import reduce_ops
from sapiens_edge.validation import metrics as M
from tests.export.shared import assert_passes_recipe_thresholds, photo_input, torch_outputs, wrecked_copy
from tests.helpers import ASTRONAUT

validate_module = importlib.import_module("sapiens_edge.validation.validate")
QUIET = {"progress": lambda _: None}
RECIPES = ("openvino-fp32", "openvino-fp16", "openvino-int8", "openvino-int8-mixed", "openvino-int8-hybrid")


@pytest.fixture(scope="module")
def artifacts(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino")
    model = models["seg"]
    hw = model.sapiens_info.input_hw
    return {r: core.export(model, r, root / r, input_size=hw, calibration_limit=2, **QUIET) for r in RECIPES}


def _ir(artifact):
    return ov.Core().read_model(str(artifact.path / "model.xml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_ir_contract(artifacts, recipe):
    m = artifacts[recipe].manifest
    assert m.target == "openvino" and m.model_file == "model.xml" and {"model.xml", "model.bin"} <= set(m.files)
    assert [(t.name, t.shape) for t in m.inputs] == [("image", [1, 3, 128, 96])]
    assert [(t.name, t.shape) for t in m.outputs] == [("logits", [1, 29, 128, 96])]
    ir = _ir(artifacts[recipe])
    assert [p.get_any_name() for p in ir.inputs] == ["image"] and [p.get_any_name() for p in ir.outputs] == ["logits"]
    assert ir.inputs[0].get_partial_shape().is_static  # fixed input size: static shapes throughout
    expected = {"openvino-fp32": "f32", "openvino-fp16": "reduced", "openvino-int8": "f32",
                "openvino-int8-mixed": "reduced", "openvino-int8-hybrid": "f32"}[recipe]
    assert m.export_options["inference_precision"] == expected
    # What the file stores, read from it: fp32 weights, fp16-compressed ones, int8 ones for the quantized layers.
    stored = weight_types(ir)
    assert m.export_options["weights_in_file"] == stored
    kinds = {k for per_op in stored.values() for k in per_op}
    assert kinds == {"openvino-fp32": {"f32"}, "openvino-fp16": {"f16"},
                     "openvino-int8": {"i8", "f32"}, "openvino-int8-mixed": {"i8", "f32"},
                     "openvino-int8-hybrid": {"i8", "f32"}}[recipe], stored
    assert ("reduced_ops" in m.export_options) == (recipe == "openvino-int8-hybrid")


def test_fp32_matches_pytorch_and_passes_its_gate(models, artifacts, tiny_reference):
    model = models["seg"]
    x = photo_input("seg", model.sapiens_info.input_hw)
    ref = torch_outputs(model, x)
    art = artifacts["openvino-fp32"]
    assert art.manifest.export_options["rope"].startswith("bf16-exact")
    with runtime.load(art.path) as p:
        assert p.backend == "openvino" and p.describe()["inference_precision"] == "f32"
        # RoPE's bf16 rounding, q and k of every block, as f32 arithmetic (runtime/backends/openvino_rounding)
        assert p.describe()["bf16_round_trips_rewritten"] >= 2 * model.sapiens_info.arch.depth
        out = p.run(x)
    with runtime.load(art.path, inference_precision="bf16") as reduced:  # the split needs f32 arithmetic
        assert reduced.describe()["bf16_round_trips_rewritten"] == 0
    assert [o.shape for o in out] == [r.shape for r in ref]
    assert M.rel_l2(ref[0], out[0]) < 1e-4, M.rel_l2(ref[0], out[0])
    report = validate_module.validate(art.path, progress=lambda _: None)
    assert report.fatal is None and report.passed, report.summary()


def test_fp16_runs_in_reduced_precision_and_passes_its_gate(models, artifacts, tiny_reference):
    art = artifacts["openvino-fp16"]
    caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    x = photo_input("seg", models["seg"].sapiens_info.input_hw)
    with runtime.load(art.path) as reduced, runtime.load(art.path, inference_precision="f32") as exact:
        used = reduced.describe()["inference_precision"]
        assert used == resolve_precision("reduced", "CPU", caps) == reduced.describe()["compiled_precision"]
        assert exact.describe()["inference_precision"] == exact.describe()["compiled_precision"] == "f32"
        if used != "f32":  # the hint is applied: the reduced run differs from the fp32 run of the same file
            assert M.rel_l2(exact.run(x)[0], reduced.run(x)[0]) > 1e-5
    fp32 = (artifacts["openvino-fp32"].path / "model.bin").stat().st_size
    assert (art.path / "model.bin").stat().st_size < 0.55 * fp32
    assert_passes_recipe_thresholds(validate_module.validate(art.path, progress=lambda _: None), "openvino-fp16", "seg")


def test_int8_keeps_the_policy_layers_float_and_passes_its_gate(models, artifacts, tiny_reference):
    art = artifacts["openvino-int8"]
    q = art.manifest.export_options["quantization"]
    depth = models["seg"].sapiens_info.arch.depth
    # NNCF's ignored scope: the patch embedding, the seg head (4 deconvs, 3 convs) and each block's FFN rotation.
    assert len(q["kept_float"]) == 1 + 7 + depth, q["kept_float"]
    assert sum("ConvolutionBackpropData" in n for n in q["kept_float"]) == 4
    stored = weight_types(_ir(art))
    assert "i8" not in stored["Convolution"] and "i8" not in stored["ConvolutionBackpropData"], stored
    assert stored["MatMul"]["i8"] == 6 * depth and stored["MatMul"]["f32"] == depth, stored  # rotations float
    assert art.manifest.export_options["weight_rounding"]["layers"] == 6 * depth
    assert_passes_recipe_thresholds(validate_module.validate(art.path, progress=lambda _: None), "openvino-int8", "seg")


def _runtime_precisions(compiled) -> dict[str, str]:
    """Original op name -> the precision the CPU plugin runs it in, from the compiled model's graph."""
    out = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        for name in info["originalLayersNames"].astype(str).split(","):
            out[name] = info["runtimePrecision"].astype(str)
    return out


def test_output_layer_is_pinned_to_f32_under_a_reduced_hint(models, artifacts, tiny_reference):
    """Every recipe's IR carries OpenVINO's `precise` attribute (read back as the IR reader's
    DisablePrecisionConversion) on the output layer, seg's classifier conv, and its bias add: nothing else.
    Compiled with the bf16 hint on a CPU with bf16, the classifier runs in f32 and the head's other convs and
    deconvs in bf16; openvino-int8-mixed passes the int8 gate with that hint."""
    art = artifacts["openvino-int8-mixed"]
    ir = _ir(art)
    pinned = {op.get_friendly_name(): op.get_type_name() for op in ir.get_ordered_ops()
              if any(k.startswith("DisablePrecisionConversion") for k in op.get_rt_info().keys())}  # noqa: SIM118 (RTMap)
    assert len(pinned) == art.manifest.export_options["pinned_f32"]["ops"] > 0
    # The classifier: the last Convolution before the output, and the Add of its bias.
    convs = [o.get_friendly_name() for o in ir.get_ordered_ops() if o.get_type_name() == "Convolution"]
    assert sorted(pinned.values()) == ["Add", "Convolution"] and convs[-1] in pinned, pinned
    assert sum(op.get_type_name() == "ConvolutionBackpropData" for op in ir.get_ordered_ops()) == 4
    # The same rule for the f32-hint recipe (the pins act only if a user asks for bf16/f16):
    assert artifacts["openvino-int8"].manifest.export_options["pinned_f32"] == art.manifest.export_options["pinned_f32"]
    caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if "BF16" in caps:  # the plugin honours the pins (on a CPU without bf16 everything runs f32 anyway)
        compiled = ov.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
        ran = _runtime_precisions(compiled)
        deconvs = [n for n, t in ((o.get_friendly_name(), o.get_type_name()) for o in ir.get_ordered_ops())
                   if t == "ConvolutionBackpropData"]
        assert ran[convs[-1]] == "f32", ran
        # The head's other convs (2 conv_layers) and its deconvs: bf16, as the hint asks.
        assert {ran[n] for n in [*convs[-3:-1], *deconvs]} == {"bf16"}, ran
    assert_passes_recipe_thresholds(validate_module.validate(art.path, progress=lambda _: None),
                                    "openvino-int8-mixed", "seg")


def _quantized_before(op) -> bool:
    """Whether a FakeQuantize lies on a path from the nearest MatMuls (or the input) up to `op`'s inputs."""
    frontier, seen = [v.get_node() for v in op.input_values()], set()
    while frontier:
        node = frontier.pop()
        if node.get_friendly_name() in seen or node.get_type_name() in ("MatMul", "Parameter", "Constant"):
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() == "FakeQuantize":
            return True
        frontier.extend(v.get_node() for v in node.input_values())
    return False


def test_hybrid_runs_attention_and_deconvs_reduced_and_passes_its_gate(models, artifacts, tiny_reference):
    """openvino-int8-hybrid: int8 linears (SwiGLU split: 7 per block), attention left float by NNCF, and on a CPU
    with bf16 the backend compiles f32 but for attention and the head's deconvs, in bf16; the int8 gate passes."""
    art = artifacts["openvino-int8-hybrid"]
    options = art.manifest.export_options
    depth = models["seg"].sapiens_info.arch.depth
    assert options["reduced_ops"] == ["ScaledDotProductAttention", "ConvolutionBackpropData"]
    assert options["quantization"]["kept_float_types"] == ["ScaledDotProductAttention"]
    stored = weight_types(_ir(art))
    assert stored["MatMul"]["i8"] == 7 * depth and stored["MatMul"]["f32"] == depth, stored
    for recipe, quantized in (("openvino-int8-hybrid", False), ("openvino-int8", True)):  # the check can fail
        sdpa = [o for o in _ir(artifacts[recipe]).get_ordered_ops() if o.get_type_name() == "ScaledDotProductAttention"]
        assert len(sdpa) == depth and {_quantized_before(o) for o in sdpa} == {quantized}, recipe
    caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    reduced = resolve_precision("reduced", "CPU", caps)
    with runtime.load(art.path) as p:
        info = p.describe()
    assert info["inference_precision"] == "f32"
    assert info["reduced_ops"] == {"op_types": options["reduced_ops"], "precision": reduced,
                                   "ops": 0 if reduced == "f32" else depth + 4}
    with runtime.load(art.path, inference_precision="f32") as p:  # asked for: the whole model as asked
        assert p.describe()["reduced_ops"] is None
    if reduced == "bf16":  # what the plugin runs, read back from the compiled model
        ir = _ir(art)
        reduce_ops(ir, options["reduced_ops"], "bf16")
        ran = _runtime_precisions(ov.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}))
        by_type: dict[str, set[str]] = {}
        for op in _ir(art).get_ordered_ops():
            if op.get_friendly_name() in ran:
                by_type.setdefault(op.get_type_name(), set()).add(ran[op.get_friendly_name()])
        assert by_type["ScaledDotProductAttention"] == by_type["ConvolutionBackpropData"] == {"bf16"}, by_type
        # Everything else f32, but the FakeQuantize after attention, which quantizes its bf16 output as it is.
        others = {t: p for t, p in by_type.items() if t not in (*options["reduced_ops"], "FakeQuantize")}
        assert by_type["Convolution"] == {"f32"} and not any("bf16" in p for p in others.values()), others
    assert_passes_recipe_thresholds(validate_module.validate(art.path, progress=lambda _: None),
                                    "openvino-int8-hybrid", "seg")


def _int8_weight(ir, index: int) -> np.ndarray:
    """The dequantized weight (int8 x per-channel scale) of the `index`-th MatMul of the IR."""
    op = [o for o in ir.get_ordered_ops() if o.get_type_name() == "MatMul"][index]
    multiply = op.input_value(1).get_node()
    assert multiply.get_type_name() == "Multiply", multiply.get_type_name()
    values = [multiply.input_value(i).get_node() for i in range(2)]
    q = next(v.input_value(0).get_node() for v in values if v.get_type_name() == "Convert")
    scale = next(v for v in values if v.get_type_name() == "Constant")
    assert q.get_output_element_type(0).get_type_name() == "i8"
    return q.get_data().astype(np.float32) * scale.get_data()


def test_gptq_rounding_survives_nncf(models, artifacts):
    """NNCF's grid is GPTQ's (symmetric, scale = row max / 127, levels -127..127): the first block's query
    weights in the IR keep each row's largest weight exactly (GPTQ pins it) and differ from
    round-to-nearest, which is what NNCF alone would have stored."""
    w = models["seg"].backbone.blocks[0].attn.wq.weight.detach().numpy()
    stored = _int8_weight(_ir(artifacts["openvino-int8"]), 0)  # the first MatMul: blocks.0.attn.wq
    assert stored.shape == w.shape
    np.testing.assert_allclose(np.abs(stored).max(1), np.abs(w).max(1), rtol=1e-6)
    nearest = round_to_grid(models["seg"].backbone.blocks[0].attn.wq.weight.detach()).numpy()
    assert (np.abs(stored - nearest) > 1e-7).mean() > 0.01  # GPTQ moved some weights to another grid point


def test_backend_options_and_devices(artifacts, models):
    x = photo_input("seg", models["seg"].sapiens_info.input_hw)
    path = artifacts["openvino-fp32"].path
    with runtime.load(path, threads=1) as one, runtime.load(path, device="cpu") as default:
        assert one.describe()["threads"] == 1 and default.describe()["device"] == "CPU"
        assert M.rel_l2(default.run(x)[0], one.run(x)[0]) < 1e-5  # summation order only
    seen = ov.Core().available_devices
    for device in ("GPU", "NPU"):
        if device not in seen and not any(d.startswith(device + ".") for d in seen):
            with pytest.raises(PlatformUnavailableError, match=rf"{device}.*not available.*Not falling back"):
                runtime.load(path, device=device)
    with pytest.raises(OptionError, match="Unknown OpenVINO device"):
        runtime.load(path, device="TPU")
    with pytest.raises(OptionError, match="inference_precision"):
        runtime.load(path, inference_precision="int4")
    with pytest.raises(OptionError, match="no option"):
        runtime.load(path, provider="cuda")


def test_cli_passes_device_and_precision_to_the_backend(artifacts, tmp_path):
    from sapiens_edge import cli

    out = tmp_path / "out"
    args = ["run", str(artifacts["openvino-fp16"].path), "-o", str(out), "--device", "cpu", "--threads", "1",
            "--inference-precision", "f32"]
    assert cli.main(args) == 0 and any(out.iterdir())
    parsed = cli.build_parser().parse_args(args)
    assert cli._backend_options(parsed) == {"device": "cpu", "threads": 1, "inference_precision": "f32"}
    assert cli.main(["run", str(artifacts["openvino-fp32"].path), "-o", str(tmp_path / "o2"), "--device", "TPU"]) == 2


def test_report_all_takes_the_openvino_recipes(models, monkeypatch):
    import importlib.util

    from sapiens_edge.report import resolve_recipes

    info, hw = models["seg"].sapiens_info, models["seg"].sapiens_info.input_hw
    keep, _ = resolve_recipes("all", info, hw)
    assert set(RECIPES) <= set(keep)
    find = importlib.util.find_spec  # without NNCF: int8 is skipped, naming the extra; fp32/fp16 stay
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else find(name, *a))
    keep, skipped = resolve_recipes("all", info, hw)
    assert "openvino-fp32" in keep and "sapiens-edge[openvino]" in skipped["openvino-int8"]


def test_resolve_precision_per_device():
    assert resolve_precision("reduced", "CPU", ["FP32", "BF16", "FP16"]) == "bf16"
    assert resolve_precision("reduced", "CPU", ["FP32", "FP16"]) == "f16"  # ARM64 CPUs
    assert resolve_precision("reduced", "CPU", ["FP32", "INT8"]) == "f32"  # x86 without bf16
    assert resolve_precision("reduced", "GPU.0", ["FP32", "FP16"]) == "f16"
    assert resolve_precision("f32", "GPU", ["FP16"]) == "f32"  # asked for: as asked


def test_runs_without_torch_or_nncf(artifacts, models, tmp_path):
    x = photo_input("seg", models["seg"].sapiens_info.input_hw)
    with runtime.load(artifacts["openvino-int8"].path) as p:
        expected = p.run(x)[0]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", expected)
    code = f"""
import sys
for blocked in ("torch", "nncf"):
    sys.modules[blocked] = None  # any import of them now raises
import numpy as np
from sapiens_edge import runtime
with runtime.load({str(artifacts["openvino-int8"].path)!r}) as p:
    out = p.run(np.load({str(tmp_path / "x.npy")!r}))[0]
    result = p.predict({str(ASTRONAUT)!r})  # pre- and post-processing torch-free too
assert result.labels.ndim == 2
np.testing.assert_array_equal(out, np.load({str(tmp_path / "expected.npy")!r}))
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_damaged_files_are_clear_errors(artifacts, tmp_path):
    art = artifacts["openvino-fp32"].path
    bad_xml = wrecked_copy(art, "model.xml", tmp_path / "xml")  # XML header zeroed
    with pytest.raises(ArtifactError, match=r"sha256|changed"):
        runtime.load(bad_xml)
    with pytest.raises(ArtifactError, match="OpenVINO could not load"):
        runtime.load(bad_xml, verify=False)
    bad_bin = wrecked_copy(art, "model.bin", tmp_path / "bin")
    with pytest.raises(ArtifactError, match=r"sha256|changed"):
        runtime.load(bad_bin)
    short = bad_bin / "model.bin"
    short.write_bytes(short.read_bytes()[: short.stat().st_size // 2])  # truncated weights
    with pytest.raises(ArtifactError, match="OpenVINO could not load"):
        runtime.load(bad_bin, verify=False)


def test_weighted_ops_cover_the_layers(artifacts, models):
    """Every linear and conv of the model is one weighted op of the IR (what the ignored scope relies on)."""
    import torch

    layers = sum(isinstance(m, torch.nn.Linear | torch.nn.Conv2d | torch.nn.ConvTranspose2d)
                 for m in models["seg"].modules())
    ops = [o for o in _ir(artifacts["openvino-fp32"]).get_ordered_ops() if o.get_type_name() in WEIGHTED_OPS]
    assert len(ops) == layers


def test_int8_rounds_a_model_export_loaded_in_place_and_frees_it(models, artifacts, tmp_path):
    """GPTQ rounds the model export() loaded itself in place and its torch weights are freed before NNCF
    (one fp32 copy fewer: 0.4b's export peak was 9.3 GiB with it); the IR is the one a caller's copied
    model gives, and the caller's model is left as it was."""
    import copy

    from sapiens_edge.export import openvino as openvino_target
    from sapiens_edge.export.calibration import calibration_data
    from sapiens_edge.export.recipes import get_recipe
    from sapiens_edge.export.rewrites import RotatedInputLinear

    hw = models["seg"].sapiens_info.input_hw
    loaded = copy.deepcopy(models["seg"])
    loaded.sapiens_disposable = True
    openvino_target.lower(loaded, get_recipe("openvino-int8"), hw, tmp_path, calibration_data("seg", hw, limit=2),
                          lambda _: None)
    assert any(isinstance(m, RotatedInputLinear) for m in loaded.modules())  # rewritten in place, not copied
    assert all(p.is_meta for p in loaded.parameters())
    np.testing.assert_array_equal(_int8_weight(ov.Core().read_model(str(tmp_path / "model.xml")), 0),
                                  _int8_weight(_ir(artifacts["openvino-int8"]), 0))
    caller = models["seg"]  # the fixture's exports copied it
    assert not any(isinstance(m, RotatedInputLinear) for m in caller.modules())
    assert not any(p.is_meta for p in caller.parameters())


def test_a_precision_openvino_cannot_compile_is_an_option_error(artifacts, monkeypatch):
    """A requested inference precision that OpenVINO fails to compile (2026.4: int8 IRs in f16 on CPUs with
    AVX512-FP16) is the caller's option to change, not a damaged artifact; the manifest's own hint still loads."""
    from sapiens_edge.errors import OptionError

    real = ov.Core.compile_model

    def refuses_bf16(self, model, device=None, config=None):
        if (config or {}).get("INFERENCE_PRECISION_HINT") == "bf16":
            raise RuntimeError("Check 'element::Type::merge(...)' failed")  # OpenVINO's kind of message
        return real(self, model, device, config)

    monkeypatch.setattr(ov.Core, "compile_model", refuses_bf16)
    art = artifacts["openvino-int8"].path
    with pytest.raises(OptionError, match=r"inference precision bf16.*compiles in f32.*manifest's hint \(f32\)"):
        runtime.load(art, inference_precision="bf16")
    with runtime.load(art) as p:  # the manifest's f32
        assert p.describe()["inference_precision"] == "f32"
