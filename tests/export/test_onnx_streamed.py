"""The streamed ONNX route of large models (export.onnx_streamed) on tiny models: the same graph
contract and gate as the in-memory route, fp16 built in torch, external data, the memory check."""

from __future__ import annotations

import importlib
import re
from collections import Counter

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sapiens_edge import runtime  # noqa: E402
from sapiens_edge.errors import InsufficientMemoryError  # noqa: E402
from sapiens_edge.export import core, onnx_streamed  # noqa: E402
from sapiens_edge.export import onnx as onnx_target  # noqa: E402
from sapiens_edge.export.recipes import get_recipe  # noqa: E402
from sapiens_edge.validation import metrics as M  # noqa: E402
from tests.export.shared import photo_input, torch_outputs  # noqa: E402

validate_module = importlib.import_module("sapiens_edge.validation.validate")
QUIET = {"progress": lambda _: None}
STREAMED = {"pipeline": "streamed"}


def export(model, recipe, path, **options):
    return core.export(model, recipe, path, input_size=model.sapiens_info.input_hw,
                       target_options={**STREAMED, **options}, **QUIET)


@pytest.mark.parametrize("task", ["seg", "normal"])
def test_streamed_fp16_passes_the_recipe_gate(models, tiny_reference, task, tmp_path):
    model = models[task]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    art = export(model, "onnx-fp16", tmp_path / "a")
    proto = onnx.load(str(art.path / "model.onnx"))
    graph = proto.graph
    ops = Counter(n.op_type for n in graph.node)
    # fp16 weights, fp32 graph I/O, the attention's softmax pinned to fp32, instance norms as LayerNorm.
    weights = [t for t in graph.initializer if len(t.dims) == 2 and np.prod(t.dims) >= 1024]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*graph.input, *graph.output])
    attention = [n for n in graph.node if n.op_type == "Attention"]
    assert len(attention) == model.sapiens_info.arch.depth
    assert all(a.i == 1 for n in attention for a in n.attribute if a.name == "softmax_precision")
    assert ops["InstanceNormalization"] == 0 and ops["LayerNormalization"] > 0
    # Norm statistics in fp32: RMSNormalization / LayerNormalization keep stash_type 1 (the default).
    for n in graph.node:
        if n.op_type in ("RMSNormalization", "LayerNormalization"):
            assert all(a.i == 1 for a in n.attribute if a.name == "stash_type"), n.name
    assert art.manifest.export_options["pipeline"] == "streamed"
    assert art.manifest.export_options["simplifier"] is None
    # The caller's model is left as it was (the route converts a copy).
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    report = validate_module.validate(art.path, progress=lambda _: None)
    assert report.fatal is None and report.passed, report.summary()


def test_streamed_fp32_equals_in_memory_route(models, tmp_path):
    """fp32 through the streamed route: the same numbers as the in-memory route within fp32 rounding."""
    model = models["pose"]
    streamed = export(model, "onnx-fp32", tmp_path / "s")
    in_memory = core.export(model, "onnx-fp32", tmp_path / "m", input_size=model.sapiens_info.input_hw, **QUIET)
    x = photo_input("pose", model.sapiens_info.input_hw)
    ref = torch_outputs(model, x)
    with runtime.load(streamed.path) as a, runtime.load(in_memory.path) as b:
        out_s, out_m = a.run(x), b.run(x)
    for s, m, r in zip(out_s, out_m, ref, strict=True):
        assert M.rel_l2(r, s) < 1e-4 and M.rel_l2(m, s) < 1e-4


def test_streamed_writes_external_data_past_the_protobuf_limit(models, monkeypatch, tmp_path):
    """Models whose weights pass protobuf's 2 GB go to model.onnx.data, written tensor by tensor;
    the limit is lowered here so that a tiny model takes that path."""
    monkeypatch.setattr(onnx_streamed, "PROTOBUF_LIMIT", 1024)
    model = models["seg"]
    art = export(model, "onnx-fp16", tmp_path / "a")
    assert sorted(art.manifest.files) == ["README.md", "model.onnx", "model.onnx.data"]
    assert art.manifest.export_options["external_data"] is True
    graph_only = onnx.load(str(art.path / "model.onnx"), load_external_data=False)
    external = [t for t in graph_only.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and all(e.value == "model.onnx.data" for t in external for e in t.external_data
                            if e.key == "location")
    assert (art.path / "model.onnx").stat().st_size < (art.path / "model.onnx.data").stat().st_size
    x = photo_input("seg", model.sapiens_info.input_hw)
    with runtime.load(art.path) as p:  # the manifest's hashes cover the .data file too
        out = p.run(x)
    assert M.cosine(torch_outputs(model, x)[0], out[0]) > 0.999


def test_auto_streams_large_models_only():
    fp16, fp32, int8 = get_recipe("onnx-fp16"), get_recipe("onnx-fp32"), get_recipe("onnx-int8")
    big, small = 814_283_520, 113_993_472  # 0.8b, 0.1b
    for recipe in (fp16, fp32, int8, get_recipe("onnx-int8-dynamic"), get_recipe("tensorrt-fp16"),
                   get_recipe("tensorrt-int8")):
        assert onnx_streamed.is_streamed(recipe, big) and not onnx_streamed.is_streamed(recipe, small)
        assert not onnx_streamed.is_streamed(recipe, big, "in-memory")
        assert onnx_streamed.is_streamed(recipe, small, "streamed")
    # export() loads a streamed model straight into the recipe's storage dtype (no fp32 copy); int8
    # quantizes from fp32.
    assert onnx_target.load_dtype(fp16, big) == torch.float16
    assert onnx_target.load_dtype(fp16, small) == torch.float32
    assert onnx_target.load_dtype(int8, big) == torch.float32


@pytest.mark.parametrize("recipe", ["onnx-int8", "tensorrt-int8"])
def test_streamed_int8_passes_the_recipe_gate(models, tiny_reference, monkeypatch, tmp_path, recipe):
    """int8 of large models: the fp32 graph streamed to disk (external data, the limit lowered here), then
    calibrated and quantized from disk; the same keep-float policy by parameter name, and the recipe's
    own int8 thresholds."""
    from sapiens_edge.export.tensorrt_check import check_tensorrt
    from tests.export.shared import assert_passes_recipe_thresholds

    monkeypatch.setattr(onnx_streamed, "PROTOBUF_LIMIT", 1024)
    model = models["seg"]
    art = export(model, recipe, tmp_path / "s")
    in_memory = core.export(model, recipe, tmp_path / "m", input_size=model.sapiens_info.input_hw, **QUIET)
    opts, mem = art.manifest.export_options, in_memory.manifest.export_options
    assert opts["pipeline"] == "streamed" and opts["external_data"] is True
    assert opts["weight_rounding"]["method"] == mem["weight_rounding"]["method"]
    # The same layers stay float on both routes (here by name, there by value).
    assert len(opts["quantization"]["kept_float"]) == len(mem["quantization"]["kept_float"]) > 0
    graph = onnx.load(str(art.path / "model.onnx"), load_external_data=False).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["DequantizeLinear"] > 0 and ops["QuantizeLinear"] > 0
    # No stale data file: the artifact lists model.onnx.data exactly when the graph reads tensors from it.
    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert ("model.onnx.data" in art.manifest.files) == bool(external)
    if recipe.startswith("tensorrt"):
        report = check_tensorrt(art.path, "10.3")
        assert report.violations == (), [v.line() for v in report.violations]
    gate = validate_module.validate(art.path, progress=lambda _: None)
    assert_passes_recipe_thresholds(gate, recipe, "seg")


def test_streamed_int8_rewrites_a_loaded_model_in_place_and_frees_it(models, tmp_path):
    """The model export() loaded itself is rewritten and GPTQ-rounded in place (no second copy of a 1b's
    5.9 GB of fp32 weights) and freed once captured; a caller's model is copied and left as it was."""
    import copy

    from sapiens_edge.export.calibration import calibration_data
    from sapiens_edge.export.rewrites import RotatedInputLinear

    recipe = get_recipe("onnx-int8")
    calib = calibration_data("seg", models["seg"].sapiens_info.input_hw, limit=2)
    loaded = copy.deepcopy(models["seg"])
    loaded.sapiens_disposable = True
    onnx_streamed.write_int8_source(loaded, recipe, loaded.sapiens_info.input_hw, tmp_path / "a.onnx", 23, calib,
                                    lambda _: None)
    assert any(isinstance(m, RotatedInputLinear) for m in loaded.modules())
    assert all(p.device.type == "meta" for p in loaded.parameters())
    caller = models["seg"]
    before = {k: v.clone() for k, v in caller.state_dict().items()}
    onnx_streamed.write_int8_source(caller, recipe, caller.sapiens_info.input_hw, tmp_path / "b.onnx", 23, calib,
                                    lambda _: None)
    assert not any(isinstance(m, RotatedInputLinear) for m in caller.modules())
    assert all(torch.equal(before[k], v) for k, v in caller.state_dict().items())


def test_export_refuses_before_loading_when_memory_is_short(monkeypatch, tmp_path):
    """The memory check runs before the weights load: a typed error naming the phase and the memory,
    not the OOM killer's bare 'Killed'."""
    from sapiens_edge import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    monkeypatch.setattr(memory, "process_rss", lambda: 2**29)
    monkeypatch.setattr(core, "process_rss", lambda: 2**29)
    loaded = []
    monkeypatch.setattr("sapiens_edge.loading.load_model", lambda *a, **k: loaded.append(a))
    expected = r"loading sapiens2-1b-seg needs about 3\.5 GiB of memory .3\.0 GiB more than this process holds. and 1"
    with pytest.raises(InsufficientMemoryError, match=expected) as e:
        core.export("sapiens2-1b-seg", "onnx-fp16", tmp_path / "a", **QUIET)
    assert e.value.phase == "loading sapiens2-1b-seg" and e.value.available == 2**30
    assert not loaded and not (tmp_path / "a").exists()
    monkeypatch.setenv(memory.SKIP_ENV, "1")  # the documented way to try anyway
    memory.require_memory("anything", 2**40)


def test_streamed_route_checks_memory_before_converting(models, monkeypatch, tmp_path):
    from sapiens_edge import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    monkeypatch.setattr(memory, "process_rss", lambda: 0)  # a long test session's own RSS is not the export's
    with pytest.raises(InsufficientMemoryError, match=re.escape("exporting tiny-seg to ONNX (onnx-fp16, streamed)")):
        export(models["seg"], "onnx-fp16", tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_in_memory_route_checks_memory_before_converting(models, monkeypatch, tmp_path):
    from sapiens_edge import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    monkeypatch.setattr(memory, "process_rss", lambda: 0)  # a long test session's own RSS is not the export's
    with pytest.raises(InsufficientMemoryError, match=re.escape("exporting tiny-seg to ONNX (onnx-fp32, in memory)")):
        core.export(models["seg"], "onnx-fp32", tmp_path / "a", input_size=models["seg"].sapiens_info.input_hw, **QUIET)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("recipe", ["tensorrt-fp16", "tensorrt-fp32"])
def test_streamed_tensorrt_recipes_parse_on_10_3_and_pass_the_gate(models, tiny_reference, monkeypatch, tmp_path,
                                                                   recipe):
    """The TensorRT float recipes of large models take the streamed route too; with external data (the limit
    lowered here), the opset-17 downgrade reads its constants back from model.onnx.data."""
    from sapiens_edge.export.tensorrt_check import check_tensorrt

    monkeypatch.setattr(onnx_streamed, "PROTOBUF_LIMIT", 1024)
    model = models["seg"]
    art = export(model, recipe, tmp_path / "a")
    opts = art.manifest.export_options
    assert opts["pipeline"] == "streamed" and opts["external_data"] is True and opts["opset"] == 17
    assert "model.onnx.data" in art.manifest.files
    report = check_tensorrt(art.path, "10.3")
    assert report.violations == (), [v.line() for v in report.violations]
    graph = onnx.load(str(art.path / "model.onnx")).graph
    assert Counter(n.op_type for n in graph.node)["Softmax"] == model.sapiens_info.arch.depth
    gate = validate_module.validate(art.path, progress=lambda _: None)
    assert gate.fatal is None and gate.passed, gate.summary()


def test_pretransposed_linears_leave_no_weight_transpose_for_the_exporter_to_fold():
    """A Linear on 3-D tokens is exported as MatMul(x, Transpose(W)); the optimizer folds each Transpose into
    a second copy of the weight (the 5b export's peak). Stored transposed, the MatMul reads the parameter."""
    from sapiens_edge.export.rewrites import PretransposedLinear, pretranspose_linears

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(16, 32), torch.nn.Linear(32, 8, bias=False)

        def forward(self, x):
            return self.b(self.a(x))

    def weight_transposes(module) -> int:
        program = torch.onnx.export(module, (torch.zeros(1, 5, 16),), dynamo=True, optimize=False, verbose=False)
        graph = program.model.graph
        weights = set(graph.initializers)
        return sum(1 for n in graph if n.op_type == "Transpose" and n.inputs[0].name in weights)

    module = Tokens().eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        expected = module(x)
    assert weight_transposes(module) == 2
    assert pretranspose_linears(module) == 2 and isinstance(module.a, PretransposedLinear)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-6)
    assert weight_transposes(module) == 0


def test_calibration_by_parts_cuts_a_real_graph_between_blocks_with_the_same_ranges(models, monkeypatch, tmp_path):
    """A large model's calibration runs part by part (quantize.onnx_parts; the part size lowered here so that
    a tiny model is cut): on the streamed fp32 graph of a Sapiens2 model the cuts fall between transformer
    blocks (only the residual stream crosses them), and the ranges are those of the whole graph."""
    from sapiens_edge.export.calibration import calibration_data
    from sapiens_edge.export.targets import INPUT_NAME
    from sapiens_edge.quantize import onnx_parts, onnx_ptq

    monkeypatch.setattr(onnx_streamed, "PROTOBUF_LIMIT", 1024)
    model = models["seg"]
    art = export(model, "onnx-fp32", tmp_path / "a")  # external data, the parameters' names kept
    calib = calibration_data("seg", model.sapiens_info.input_hw, limit=2)
    planned, lines = [], []
    real = onnx_parts.PartedModel

    def spy(*args, **kwargs):
        parted = real(*args, **kwargs)
        planned.append(parted.parts)
        return parted

    monkeypatch.setattr(onnx_parts, "PartedModel", spy)

    def ranges(name, part_bytes):
        (tmp_path / name).mkdir()
        found = onnx_ptq.calibrate(art.path / "model.onnx", INPUT_NAME, calib.batches, calib.count,
                                   method="percentile", workdir=tmp_path / name, max_part_bytes=part_bytes,
                                   progress=lines.append)
        return {k: np.asarray(v.range_value, np.float64) for k, v in found.items()}

    weights = sum(p.numel() for p in model.parameters()) * 4
    whole, parted = ranges("whole", 2 * weights), ranges("parted", weights // 4)
    assert len(planned[0]) == 1
    parts = planned[1]
    assert len(parts) >= 3
    assert all(len(p.inputs) == 1 for p in parts), parts  # the image, then the residual stream between two blocks
    assert any(line.startswith(f"part {len(parts)}/{len(parts)}: calibrating") for line in lines)
    assert whole.keys() == parted.keys() and len(whole) > 10
    for name, value in whole.items():
        np.testing.assert_allclose(parted[name], value, rtol=1e-5, err_msg=name)
    assert not [f for f in art.path.iterdir() if ".part" in f.name]  # the parts' files are gone
