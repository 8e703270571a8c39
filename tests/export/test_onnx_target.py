"""The ONNX target on tiny models: fp32 parity (tight) for every task, fp16 and both int8 recipes
through the validation gate with the recipe thresholds, graph contents (the rewrites: test_rewrites.py)."""

from __future__ import annotations

import importlib
from collections import Counter

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402

from sapiens_edge import runtime  # noqa: E402
from sapiens_edge.errors import RecipeError  # noqa: E402
from sapiens_edge.export import core  # noqa: E402
from sapiens_edge.export.rewrites import hadamard as hadamard_matrix  # noqa: E402
from sapiens_edge.export.targets import OUTPUT_NAMES  # noqa: E402
from sapiens_edge.manifest import sha256_file  # noqa: E402
from sapiens_edge.metadata import bundled_photo  # noqa: E402
from sapiens_edge.validation import metrics as M  # noqa: E402
from tests.export.shared import (  # noqa: E402
    DECODED_TASKS,
    assert_decoded_export_passes,
    assert_gate_fails,
    assert_passes_recipe_thresholds,
    nan_weight,
    photo_input,
    reshaped,
    scale_channels,
    torch_outputs,
)

validate_module = importlib.import_module("sapiens_edge.validation.validate")
QUIET = {"progress": lambda _: None}


def weight_values(graph) -> dict[str, np.ndarray]:
    """Constant weights by the name their consumers read: initializers, and the Casts to fp32 in front
    of the fp16-stored weights of float layers (`export.onnx_int8.store_float_weights_fp16`)."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Cast" and n.input[0] in values:
            values[n.output[0]] = values[n.input[0]].astype(np.float32)
    return values


# Golden: the op types (as exported, before ONNX Runtime's fusions) of graphs whose every node the
# CUDA provider of onnxruntime-gpu 1.31.1 took, by `benchmarks/studies/cuda_placement/check.py` on the fp32
# and fp16 exports of all four tiny tasks and of full-size 0.1b seg. An op type outside this set
# may have no CUDA kernel and run on the CPU with copies either side (opset-23 InstanceNormalization
# did): check it there, then add it.
CUDA_PLACED_OPS = {
    "ai.onnx:Add", "ai.onnx:Attention", "ai.onnx:Cast", "ai.onnx:Concat", "ai.onnx:ConstantOfShape", "ai.onnx:Conv",
    "ai.onnx:DepthToSpace", "ai.onnx:Expand", "ai.onnx:Gemm", "ai.onnx:LayerNormalization", "ai.onnx:Mul",
    "ai.onnx:Neg", "ai.onnx:RMSNormalization", "ai.onnx:Reshape", "ai.onnx:Sigmoid", "ai.onnx:Slice",
    "ai.onnx:Transpose", "ai.onnx:Unsqueeze", "com.microsoft:MultiHeadAttention",
}


def assert_cuda_placed(graph) -> None:
    ops = {f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in graph.node}
    assert ops <= CUDA_PLACED_OPS, f"op types not checked on ONNX Runtime's CUDA provider: {ops - CUDA_PLACED_OPS}"


@pytest.mark.parametrize("task", ["pose", "seg", "normal", "pointmap"])
def test_fp32_matches_pytorch(models, task, tmp_path):
    model = models[task]
    art = core.export(model, "onnx-fp32", tmp_path / task, input_size=model.sapiens_info.input_hw, **QUIET)
    graph = onnx.load(str(art.path / "model.onnx"))
    ops = Counter(n.op_type for n in graph.graph.node)
    # Fused ops ONNX Runtime runs natively, not spelled-out chains: one contrib MultiHeadAttention
    # per block (token-major, so no transposes around it) and opset-23 RMSNormalization.
    assert ops["MultiHeadAttention"] == model.sapiens_info.arch.depth and ops["Attention"] == 0
    assert ops["RMSNormalization"] > 0 and ops["Softmax"] == 0 and ops["Transpose"] <= 2
    # The heads' instance norms as LayerNormalization: opset-23 InstanceNormalization has no CUDA kernel
    assert ops["InstanceNormalization"] == 0 and ops["LayerNormalization"] > 0
    assert_cuda_placed(graph.graph)
    assert art.manifest.export_options["opset"] == 23
    x = photo_input(task, model.sapiens_info.input_hw)
    ref = torch_outputs(model, x)
    with runtime.load(art.path) as p:
        out = p.run(x)
        assert [o.name for o in p.manifest.outputs] == OUTPUT_NAMES[task]
    assert [o.shape for o in out] == [r.shape for r in ref]
    assert [list(o.shape) for o in out] == [s.shape for s in art.manifest.outputs]
    for o, r in zip(out, ref, strict=True):
        # fp32 with another summation order: relative L2 well under the recipe's 1e-3.
        assert M.rel_l2(r, o) < 1e-4, (task, M.rel_l2(r, o))
        assert M.cosine(r, o) > 0.999999


@pytest.mark.parametrize("task", ["seg"])
def test_fp16_passes_the_recipe_gate(models, tiny_reference, task, tmp_path):
    model = models[task]
    art = core.export(model, "onnx-fp16", tmp_path / "a", input_size=model.sapiens_info.input_hw, **QUIET)
    graph = onnx.load(str(art.path / "model.onnx")).graph
    ops = Counter(n.op_type for n in graph.node)
    attention = [n for n in graph.node if n.op_type == "Attention"]
    assert_cuda_placed(graph)
    # The standard op, its softmax pinned to fp32.
    assert len(attention) == model.sapiens_info.arch.depth and ops["MultiHeadAttention"] == 0
    assert all(a.i == 1 for n in attention for a in n.attribute if a.name == "softmax_precision")
    report = validate_module.validate(art.path, progress=lambda _: None)
    assert report.fatal is None and report.passed, report.summary()
    names = {c.metric for c in report.checks}
    assert "cosine" in names and names & {"pixel_agreement", "keypoint_err_px"}


# Every reduced-precision recipe passes its own thresholds, task limits included (int8: 98 % / 1 px; fp16
# pose: 0.25 px) on the well-conditioned tiny stand-in (conftest `models`, shared.WELL_CONDITIONED).
@pytest.mark.parametrize(("task", "recipe"), [
    ("seg", "onnx-int8"), ("seg", "onnx-int8-dynamic"), ("pose", "onnx-int8"), ("pose", "onnx-int8-dynamic"),
    ("pose", "onnx-fp16"),
])
def test_reduced_precision_passes_the_recipe_gate(models, tiny_reference, task, recipe, tmp_path):
    model = models[task]
    art = core.export(model, recipe, tmp_path / "a", input_size=model.sapiens_info.input_hw, **QUIET)
    ops = Counter(n.op_type for n in onnx.load(str(art.path / "model.onnx")).graph.node)
    marker = {"onnx-int8": "DequantizeLinear", "onnx-int8-dynamic": "DynamicQuantizeLinear", "onnx-fp16": "Cast"}
    assert ops[marker[recipe]] > 0
    report = validate_module.validate(art.path, progress=lambda _: None)
    # the report names the images it evaluated and, from the manifest, what the artifact was calibrated on
    assert report.image_sha256 == [sha256_file(bundled_photo())]
    assert (report.calibration.get("source") == "built-in") == (recipe == "onnx-int8")
    assert ("grace_hopper.jpg" in report.to_markdown()) == (recipe == "onnx-int8")
    assert_passes_recipe_thresholds(report, recipe, task)


def test_int8_is_smaller_and_records_calibration(models, tmp_path):
    import gc

    # forget_rewriter_graphs finds the matchers with gc.get_objects(), which skips what tests/conftest.py froze at
    # the module's start: unfrozen here, as in a process that never froze anything (the CLI).
    gc.unfreeze()
    model = models["seg"]
    hw = model.sapiens_info.input_hw
    fp32 = core.export(model, "onnx-fp32", tmp_path / "fp32", input_size=hw, **QUIET)
    int8 = core.export(model, "onnx-int8", tmp_path / "int8", input_size=hw, calibration_limit=3, **QUIET)
    size = (int8.path / "model.onnx").stat().st_size / (fp32.path / "model.onnx").stat().st_size
    # Tiny models carry fixed overhead (RoPE tables, QDQ scales, the fp32 64x64 rotations); 0.1b measures ~0.32
    assert size < 0.47
    opts = int8.manifest.export_options
    assert opts["calibration"]["count"] == 3 and opts["calibration"]["source"] == "built-in"
    assert opts["quantization"]["calibration_method"] == "percentile" and "Conv" in opts["quantization"]["op_types"]
    # The layers left in float (the seg head, the patch embedding) store fp16 weights behind a Cast to fp32
    graph = onnx.load(str(int8.path / "model.onnx")).graph
    fp16 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    casts = {n.output[0] for n in graph.node if n.op_type == "Cast" and n.input[0] in fp16}
    stored = [n for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1
              and n.input[1] in casts]
    assert len(stored) == opts["quantization"]["fp16_stored_layers"]
    # every block's Hadamard rotation (exact in fp16: +-1/8), the patch embedding and the head convs
    # of over 1024 weights (the 29-class classifier has 232)
    assert sum(n.op_type == "Conv" for n in stored) == 5 and len(stored) == 5 + len(model.backbone.blocks)
    big_fp32 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) >= 1024}
    assert not any(n.op_type == "Conv" and n.input[1] in big_fp32 for n in graph.node)
    # The caller's model is the caller's: only a model export() loaded itself has its weights freed.
    assert not any(p.is_meta for p in model.parameters())
    # onnxscript's and onnxslim's module-level pattern matchers kept the last graph they matched, with
    # every weight (a second copy of the model under the rest of the export); forget_rewriter_graphs drops it.
    from onnxscript.rewriter._matcher import PatternMatcher
    from onnxslim.core.pattern import PatternMatcher as SlimMatcher

    objects = gc.get_objects()
    gc.collect()
    gc.freeze()  # as tests/conftest.py left it at the start
    holding = [m for m in objects if issubclass(type(m), PatternMatcher) and getattr(m, "_graph", None) is not None]
    assert holding == []
    slim = [m for m in objects if issubclass(type(m), SlimMatcher)]
    assert slim and not [m for m in slim if set(vars(m)) & set(m.pattern_dict)]  # no matched node kept


def test_drop_weights_frees_only_models_export_loaded():
    from sapiens_edge.memory import drop_weights
    from tests.export.shared import tiny_model

    model = tiny_model("seg")
    assert drop_weights(model) is False and not any(p.is_meta for p in model.parameters())
    model.sapiens_disposable = True
    assert drop_weights(model) is True and all(p.is_meta for p in model.parameters())


def test_tampered_quantized_model_is_caught_by_validation(models, tiny_reference, tmp_path, monkeypatch):
    """The gate can fail: a wrong weight scale in the artifact fails the checks (not FATAL)."""
    model = models["seg"]
    art = core.export(model, "onnx-int8-dynamic", tmp_path / "a", input_size=model.sapiens_info.input_hw, **QUIET)
    proto = onnx.load(str(art.path / "model.onnx"))
    for init in proto.graph.initializer:
        if init.name.startswith("decode_head.conv_seg") or "conv_seg" in init.name:
            arr = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array(np.flip(arr, 0).copy(), init.name))  # swap classes
    onnx.save(proto, str(art.path / "model.onnx"))
    report = validate_module.validate(art.path, progress=lambda _: None, verify=False)
    assert report.fatal is None and not report.passed
    assert any(c.metric == "pixel_agreement" and not c.passed for c in report.checks)


@pytest.mark.parametrize(("task", "damage", "verdict", "reason"), [
    ("pose", lambda m: scale_channels(m, "conv_pose", slice(0, None, 2), -1.0), "FAILED", "keypoint_err_px"),
    # one NaN weight of the classifier: its class's logits are NaN at every pixel (128 x 96 of 29 x 128 x 96)
    ("seg", lambda m: nan_weight(m, "conv_seg"), "FATAL",
     "output 0 (logits): 12288 of 356352 values are not finite (12288 NaN, 0 Inf)"),
    # the normal head's x channel scaled 4x: every normal turns
    ("normal", lambda m: scale_channels(m, "conv_normal", slice(0, 1), 4.0), "FAILED", "angle_mean_deg"),
    # heatmaps transposed (H and W swapped) inside the model: the gate compares nothing and says why
    ("pose", lambda m: reshaped(m, "conv_pose", lambda o: o.transpose(2, 3)), "FATAL",
     "output 0 (heatmaps): shape (1, 308, 24, 32) from the artifact vs (1, 308, 32, 24) from the reference"),
], ids=["pose-negated-heatmaps", "seg-nan-weight", "normal-turned", "pose-transposed"])
def test_broken_model_fails_the_gate(models, tiny_reference, task, damage, verdict, reason, tmp_path):
    """Broken before export, validated against the intact model: the gate must refuse the artifact. The gate is
    the same for every target: these run on the quickest export (ONNX)."""
    model = models[task]
    art = core.export(damage(model), "onnx-fp32", tmp_path / "a", input_size=model.sapiens_info.input_hw, **QUIET)
    assert_gate_fails(validate_module.validate(art.path, progress=lambda _: None), verdict, reason)


def test_calibration_method_is_selectable(models, tmp_path):
    model = models["seg"]
    hw = model.sapiens_info.input_hw
    art = core.export(model, "onnx-int8", tmp_path / "p", input_size=hw, calibration_limit=2,
                      calibration_method="minmax", keep_float=("blocks.0.attn.",), **QUIET)
    opts = art.manifest.export_options["quantization"]
    assert opts["calibration_method"] == "minmax"
    graph = onnx.load(str(art.path / "model.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}

    def weights_are_float(nodes) -> bool:
        return bool(nodes) and all(producers.get(n.input[1]) != "DequantizeLinear" for n in nodes)

    def computes_in_float(nodes) -> bool:  # no int8 activations in
        return bool(nodes) and all(producers.get(n.input[0]) != "DequantizeLinear" for n in nodes)

    # The seg head stays float by policy; --keep-float adds block 0's attention linears.
    def layers(ops: tuple[str, ...], key: str) -> list:
        return [n for n in graph.node if n.op_type in ops and key in "".join(n.input[1:])]

    head_convs = layers(("Conv",), "decode_head")
    block0_attn, block1_attn = (layers(("MatMul", "Gemm"), f"blocks.{i}.attn.") for i in (0, 1))
    assert weights_are_float(head_convs) and computes_in_float(head_convs)
    assert weights_are_float(block0_attn) and computes_in_float(block0_attn)
    assert block1_attn and not any(producers.get(n.input[1]) != "DequantizeLinear" for n in block1_attn)
    assert not computes_in_float(block1_attn)
    # The Hadamard rotations in front of the SwiGLU down projections (rotate_ffn_input) stay float too.
    inits = {k: v for k, v in weight_values(graph).items() if v.ndim == 2}
    hadamard = hadamard_matrix(64).numpy()
    rotations = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits
                 and inits[n.input[1]].shape == hadamard.shape and np.allclose(inits[n.input[1]], hadamard)]
    assert len(rotations) == len(model.backbone.blocks)
    assert weights_are_float(rotations) and computes_in_float(rotations)
    assert len(opts["kept_float"]) == len(head_convs) + len(block0_attn) + len(rotations) + 1  # + patch embedding
    from sapiens_edge.errors import RecipeError

    with pytest.raises(RecipeError, match="no calibration method"):
        core.export(model, "onnx-fp32", tmp_path / "f", input_size=hw, calibration_method="percentile", **QUIET)
    with pytest.raises(RecipeError, match="percentile, minmax, entropy"):
        core.export(model, "onnx-int8", tmp_path / "g", input_size=hw, calibration_method="kl", **QUIET)


def test_keep_float_finds_linears_by_weight_whatever_the_graph_calls_them(models, tmp_path):
    """onnxslim renames linear weights (`val_16_weight`, transposed for Gemm) and the exporter merges
    identical constants (all-zero biases under one parameter's name), so names alone would miss
    `ffn.w3` and a bias name would drag unrelated layers along."""
    import copy

    model = copy.deepcopy(models["seg"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") and ".blocks." in name:
                p.zero_()
    hw = model.sapiens_info.input_hw
    art = core.export(model, "onnx-int8", tmp_path / "w3", input_size=hw, calibration_limit=1,
                      keep_float=("ffn.w3",), **QUIET)
    graph = onnx.load(str(art.path / "model.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    linears = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
               and n.input[1] not in {t.name for t in graph.input}]
    float_linears = [n for n in linears if producers.get(n.input[1]) != "DequantizeLinear"]
    depth = len(model.backbone.blocks)
    # Per block, w3 and the Hadamard rotation in front of it (rotate_ffn_input), nothing else.
    assert len(float_linears) == 2 * depth, [n.input[1] for n in float_linears]
    inits = {k: v for k, v in weight_values(graph).items() if v.shape == (64, 64)}
    hadamard = hadamard_matrix(64).numpy()
    assert sum(n.input[1] in inits and np.allclose(inits[n.input[1]], hadamard) for n in float_linears) == depth
    assert len(linears) - 2 * depth >= 4 * depth  # q, k, v, proj, gate, value ... are int8
    from sapiens_edge.errors import RecipeError

    with pytest.raises(RecipeError, match="'q_norm' matches no Conv/MatMul/Gemm weight"):
        core.export(model, "onnx-int8", tmp_path / "qn", input_size=hw, calibration_limit=1,
                    keep_float=("q_norm",), **QUIET)


@pytest.mark.parametrize("task", DECODED_TASKS)
def test_decoded_fp32_matches_the_python_decoders_and_passes_the_gate(models, tiny_reference, task, tmp_path):
    assert_decoded_export_passes(models[task], "onnx-fp32", task, tmp_path / task)


@pytest.mark.parametrize("task", DECODED_TASKS)
def test_decoded_int8_passes_the_gate(models, tiny_reference, task, tmp_path):
    assert_decoded_export_passes(models[task], "onnx-int8", task, tmp_path / task)


def test_older_opset_without_contrib_ops_for_an_older_onnx_runtime(models, tiny_reference, tmp_path):
    """`--target-option opset=17 contrib_ops=no`: plain ai.onnx opset 17 (RMSNorm and attention spelled out),
    pinned to the ONNX Runtime release of that opset, through the same gate; the default pins the release whose
    kernels its opset-23 ops need, and names its contrib op."""
    model = models["seg"]
    art = core.export(model, "onnx-fp32", tmp_path / "old", input_size=model.sapiens_info.input_hw,
                      target_options={"opset": "17", "contrib_ops": "no"}, **QUIET)
    graph = onnx.load(str(art.path / "model.onnx"))
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 17)]
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}
    pins = art.manifest.export_options["app_runtime"]
    assert (pins["min_version"], pins["opset"], pins["contrib_ops"], pins["kit_runs_it"]) == ("1.13.1", 17, [], True)
    assert "ONNX Runtime 1.13.1 or newer" in (art.path / "README.md").read_text()
    assert_passes_recipe_thresholds(validate_module.validate(art.path, progress=lambda _: None), "onnx-fp32", "seg")
    default = core.export(model, "onnx-fp32", tmp_path / "new", input_size=model.sapiens_info.input_hw, **QUIET)
    pins = default.manifest.export_options["app_runtime"]
    assert (pins["opset"], pins["contrib_ops"]) == (23, ["com.microsoft.MultiHeadAttention"])
    assert pins["min_version"] == "1.23.0"  # RMSNormalization-23's kernels


def test_every_target_option_reaches_load_dtype():
    """export() passes a zoo model's target options (defaults filled in) to load_dtype before loading it."""
    from sapiens_edge.export import onnx as onnx_target
    from sapiens_edge.export.recipes import get_recipe
    from sapiens_edge.export.target_table import check_request

    recipe = get_recipe("onnx-fp32")
    options = check_request(recipe, target_options={"opset": "17", "contrib_ops": "no"})
    assert onnx_target.load_dtype(recipe, 100_000_000, **options) == torch.float32


def test_tensorrt_recipes_take_no_opset_option(models, tmp_path):
    with pytest.raises(RecipeError, match="opset 17/19 without contrib ops already"):
        core.export(models["seg"], "tensorrt-fp32", tmp_path / "a", input_size=models["seg"].sapiens_info.input_hw,
                    target_options={"opset": "20"}, **QUIET)
