"""The recipe contract: typed parts, targets' declarations checked before any weights load, a new
recipe added as one table entry (exported through export() and recorded in the manifest), and the
generated recipe table in the docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sapiens_edge.errors import CalibrationError, RecipeError
from sapiens_edge.export import recipe_table, recipes
from sapiens_edge.export.recipes import (
    FP16,
    RECIPES,
    ActivationKind,
    Activations,
    Granularity,
    Lowering,
    Recipe,
    Rounding,
    WeightDtype,
    Weights,
    get_recipe,
)
from sapiens_edge.export.target_table import APPLE, TARGETS, check_recipe, check_request, require_calibration, runs_on

ROOT = Path(__file__).resolve().parents[2]


def test_labels_and_calibration_follow_from_the_parts():
    # The precision labels the manifest records, and which recipes calibrate, as before the parts.
    expected = {"onnx-fp32": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8", "onnx-int8-dynamic": "int8-dynamic",
                "executorch-xnnpack-int8-dynamic": "int8", "coreml-int8": "int8-weights", "coreml-w8a8": "int8",
                "coreml-palettized-4bit": "palettized-4bit", "tflite-int8-dynamic": "int8-dynamic",
                "tensorrt-fp32": "fp32", "tensorrt-fp16": "fp16", "tensorrt-int8": "int8"}
    assert {n: get_recipe(n).precision for n in expected} == expected
    calibrated = {n for n, r in RECIPES.items() if r.needs_calibration}
    assert calibrated == {"onnx-int8", "executorch-xnnpack-int8", "executorch-xnnpack-int8-dynamic", "coreml-w8a8",
                          "coreml-palettized-6bit", "coreml-palettized-4bit", "tflite-int8", "tensorrt-int8",
                          "openvino-int8", "openvino-int8-mixed", "openvino-int8-hybrid"}
    # GPTQ alone makes a recipe calibrate: palettized weights on float activations.
    pal = get_recipe("coreml-palettized-6bit")
    assert pal.activations.kind is ActivationKind.FLOAT and pal.weights.rounding is Rounding.GPTQ
    assert not dataclasses.replace(pal, weights=dataclasses.replace(pal.weights, rounding=Rounding.NEAREST)
                                   ).needs_calibration
    assert get_recipe("onnx-int8").default_calibration_method == "percentile"
    for r in RECIPES.values():  # every shipped recipe is what its target declares
        check_recipe(r)


def test_requirements_and_where_it_runs_come_from_the_target_table():
    assert get_recipe("coreml-w8a8").requires == ("coremltools", "executorch", "torchao")
    assert get_recipe("executorch-coreml-fp16").requires == ("executorch", "coremltools")
    assert get_recipe("tflite-int8-dynamic").requires == ("litert_torch", "ai_edge_litert")
    # NNCF only where the recipe calibrates: the runtime extra stays OpenVINO alone.
    assert get_recipe("openvino-int8").requires == ("openvino", "nncf")
    assert get_recipe("openvino-fp16").requires == ("openvino",)
    apple = {n for n, r in RECIPES.items() if runs_on(r) == APPLE}
    assert apple == {n for n in RECIPES if n.startswith("coreml-")} | {"executorch-coreml-fp16"}
    assert {n for n, r in RECIPES.items() if runs_on(r) not in ("anywhere", APPLE)} == {
        n for n in RECIPES if n.startswith("openvino-")}


@pytest.mark.parametrize(("change", "message"), [
    ({"weights": Weights(WeightDtype.PALETTIZED, 4, Granularity.PER_GROUP, 16)}, "lowers fp32, fp16, int8"),
    ({"activations": Activations(ActivationKind.DYNAMIC_INT8, dynamic_layers=("backbone.blocks",)),
      "weights": Weights(WeightDtype.INT8, granularity=Granularity.PER_CHANNEL)}, "cannot limit dynamic int8"),
    ({"weights": Weights(WeightDtype.INT8, granularity=Granularity.PER_GROUP, group_size=32),
      "activations": Activations(ActivationKind.DYNAMIC_INT8)}, "int8 weights per-channel"),
    ({"weights": Weights(WeightDtype.FP16, rounding=Rounding.GPTQ)}, "GPTQ-rounds only int8"),
    ({"lowering": Lowering("onnx", delegate="xnnpack")}, "no delegate 'xnnpack'"),
    ({"lowering": Lowering("onnx", delegate="tensorrt"), "activations": Activations(ActivationKind.DYNAMIC_INT8),
      "weights": Weights(WeightDtype.INT8, granularity=Granularity.PER_CHANNEL)},
     "onnx target with the tensorrt delegate lowers fp32, fp16, int8, not int8-dynamic"),
    ({"lowering": Lowering("onnx", deployment_target="iOS17")}, "deployment target 'iOS17'"),
    ({"lowering": Lowering("tvm")}, "known targets: onnx"),
])
def test_a_recipe_its_target_does_not_declare_is_refused(change, message):
    bad = dataclasses.replace(get_recipe("onnx-fp32"), name="toy", **change)
    with pytest.raises(RecipeError, match=message):
        check_recipe(bad)
    with pytest.raises(RecipeError, match=message):
        recipes.register(bad)
    assert "toy" not in RECIPES


def test_tool_versions_outside_the_declared_ones_make_a_recipe_unavailable(monkeypatch):
    pytest.importorskip("onnx")
    from importlib.metadata import version

    from sapiens_edge.export import target_table

    assert recipes.availability(get_recipe("onnx-fp32")) == (True, "available")
    monkeypatch.setitem(target_table.TARGETS, "onnx", dataclasses.replace(TARGETS["onnx"], tools={"onnx": ">=99"}))
    ok, reason = recipes.availability(get_recipe("onnx-fp32"))
    assert not ok and reason == f"needs onnx>=99, found {version('onnx')}: pip install 'sapiens-edge[onnx]'"


def test_request_checks_fill_the_targets_defaults():
    assert check_request(get_recipe("coreml-fp16")) == {"input": "image"}
    assert check_request(get_recipe("coreml-fp16"), target_options={"input": "tensor"}) == {"input": "tensor"}
    assert check_request(get_recipe("onnx-int8"), "entropy", ("decode_head.",)) == {"pipeline": "auto", "opset": "23",
                                                                             "contrib_ops": "yes"}
    with pytest.raises(RecipeError, match=r"no calibration method 'histogram' \(percentile, minmax, entropy\)"):
        check_request(get_recipe("onnx-int8"), "histogram")
    with pytest.raises(CalibrationError, match="tflite-int8 needs calibration data"):
        require_calibration(get_recipe("tflite-int8"), None)
    assert TARGETS["coreml"].options["input"][0] == "image"


def test_a_new_recipe_is_one_table_entry(monkeypatch, models, tmp_path):
    """An ONNX fp32 recipe without the rewrites and with its own threshold: registered, exported by
    name through export(), recorded in the manifest, held to its own threshold by the validator."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx

    from sapiens_edge.export import core
    from sapiens_edge.manifest import read_manifest

    monkeypatch.setattr(recipes, "RECIPES", dict(RECIPES))  # the shipped table stays as it is
    toy = recipes.register(Recipe("onnx-fp32-plain", "ONNX fp32 without graph rewrites", Lowering("onnx"),
                                  thresholds={**FP16, "tensor": {"cosine_min": 0.9999}}))
    model = models["seg"]
    art = core.export(model, "onnx-fp32-plain", tmp_path / "toy", input_size=model.sapiens_info.input_hw,
                      progress=lambda _: None)
    m = read_manifest(art.path)
    assert (m.recipe, m.target, m.precision) == ("onnx-fp32-plain", "onnx", "fp32")
    assert m.export_options["rewrites"] == []
    ops = {n.op_type for n in onnx.load(str(art.path / "model.onnx")).graph.node}
    # No fused_attention rewrite: no contrib MultiHeadAttention; no subpixel_deconv: the ConvTranspose stays.
    assert "MultiHeadAttention" not in ops and "ConvTranspose" in ops
    assert recipes.get_recipe("onnx-fp32-plain") is toy and toy.thresholds_for("seg")["cosine_min"] == 0.9999
    assert "onnx-fp32-plain" not in RECIPES


def test_thresholds_render_compactly():
    text = recipe_table.thresholds_text(get_recipe("onnx-fp32"))
    assert text.startswith("cosine ≥ 0.99999, rel L2 ≤ 0.001; seg ≥ 99.9 %, mIoU ≥ 0.99; kp ≤ 0.05 hm px")
    assert "depth ≤ 0.1 %" in text
    table = recipe_table.markdown()
    assert table.count("\n") == len(RECIPES) + 2 and "| `coreml-w8a8` | int8 |" in table
    assert "histogram (default), minmax | Apple devices only" in table


def test_checked_in_tables_are_the_generated_one():
    """Every README.md / docs/**/*.md holding the markers has today's table (refresh:
    python -m sapiens_edge.export.recipe_table --write FILE...)."""
    files = recipe_table.marked_files(ROOT)
    assert ROOT / "docs" / "recipes.md" in files
    stale = [str(p.relative_to(ROOT)) for p in files
             if recipe_table.with_table(p.read_text(encoding="utf-8")) != p.read_text(encoding="utf-8")]
    assert not stale, f"stale recipe tables in {stale}: run python -m sapiens_edge.export.recipe_table --write"


def test_write_refreshes_between_the_markers(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text(f"intro\n{recipe_table.START}\nold\n{recipe_table.END}\nafter\n", encoding="utf-8")
    assert recipe_table.main(["--check", str(doc)]) == 1
    assert recipe_table.main(["--write", str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == (f"intro\n{recipe_table.START}\n{recipe_table.markdown()}"
                                               f"{recipe_table.END}\nafter\n")
    assert recipe_table.main(["--check", str(doc)]) == 0
    (tmp_path / "e.md").write_text("no markers\n", encoding="utf-8")
    with pytest.raises(Exception, match="has no <!-- recipes-table:start -->"):
        recipe_table.main(["--write", str(tmp_path / "e.md")])


@pytest.mark.parametrize("recipe", sorted(recipes.RECIPES))
def test_bytes_per_weight_follows_the_precision_label(recipe):
    """The export's disk check (the fewest bytes an artifact can hold) agrees with each recipe's precision label."""
    rec = recipes.RECIPES[recipe]
    label = rec.precision
    expected = (int(label.split("-")[1].removesuffix("bit")) / 8 if label.startswith("palettized-")
                else {"fp32": 4, "fp16": 2}.get(label, 1 if label.startswith("int8") else None))
    assert expected is not None, f"{recipe}: unknown precision label {label!r}"
    assert rec.weights.bytes_per_weight == expected


def test_palettized_weights_without_bits_are_our_bug():
    with pytest.raises(RuntimeError, match="without bits"):
        _ = recipes.Weights(recipes.WeightDtype.PALETTIZED).bytes_per_weight
