"""The gate's rules on a stand-in artifact (a tiny torch model behind a fake predictor, no export):
no check is FATAL, NaN/Inf outputs are FATAL, a named task metric that was not computed fails, and
outputs of the wrong count, shape or dtype are FATAL."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sapiens_edge.export.recipes import get_recipe  # noqa: E402
from sapiens_edge.export.targets import OUTPUT_NAMES  # noqa: E402
from sapiens_edge.manifest import TensorSpec  # noqa: E402
from sapiens_edge.validation.report import ValidationReport  # noqa: E402
from tests.export.shared import photo_input, scale_channels, tiny_model, torch_outputs  # noqa: E402

validate_module = importlib.import_module("sapiens_edge.validation.validate")
RECIPE = "onnx-fp32"


class StandIn:
    """A predictor computing `model`'s outputs, then `alter`ed: what a broken artifact would return."""

    def __init__(self, model, task: str, alter):
        self.model, self.alter = model, alter
        hw = model.sapiens_info.input_hw
        ref = torch_outputs(model, photo_input(task, hw))
        self.manifest = SimpleNamespace(
            model=f"tiny-{task}", task=task, recipe=RECIPE, input_hw=hw, export_options={},
            source_weights={"random": True, "seed": 0},
            outputs=[TensorSpec(n, list(r.shape), str(r.dtype)) for n, r in zip(OUTPUT_NAMES[task], ref, strict=True)])

    def run(self, x):
        return self.alter(torch_outputs(self.model, x))


@pytest.fixture(scope="module")
def models():
    return {}


@pytest.fixture
def gate(monkeypatch, models):
    """validate() against the intact tiny `task` model, of a stand-in artifact computing `broken(model)`
    with its outputs then altered by `alter` (seg, unbroken and unaltered by default)."""
    def model(task):
        return models.setdefault(task, tiny_model(task))

    monkeypatch.setattr(validate_module, "load_model", lambda name, weights=None, seed=0: model(name[5:]))

    def run(alter=lambda outs: outs, task="seg", broken=lambda m: m, **kw):
        stand_in = StandIn(broken(model(task)), task, alter)
        monkeypatch.setattr(validate_module, "_load_predictor",
                            lambda *a, **k: run.events.append("artifact opened") or stand_in)
        return validate_module.validate("stand-in", progress=lambda _: None, **kw)

    run.events = []
    return run


def test_unaltered_stand_in_passes(gate):
    report = gate()
    assert report.fatal is None and report.passed and report.checks, report.summary()


def test_no_check_is_never_a_pass(gate):
    assert ValidationReport.decide([], None) is False
    dropped = {key: None for key in get_recipe(RECIPE).thresholds_for("seg")}
    report = gate(thresholds=dropped)
    assert not report.passed and report.checks == []
    assert report.fatal.startswith("No metric was checked"), report.fatal
    assert "FATAL" in report.summary() and "No metric was checked" in report.to_markdown()


def test_nan_or_inf_in_an_output_is_fatal(gate):
    def poison(outs):
        outs[0][0, 0, 0, :3] = np.nan
        outs[0][0, 1, 2, :2] = np.inf
        return outs

    report = gate(poison)
    assert not report.passed and report.checks == []
    name = OUTPUT_NAMES["seg"][0]
    assert f"output 0 ({name}): 5 of " in report.fatal and "(3 NaN, 2 Inf)" in report.fatal, report.fatal


def test_named_task_metric_not_computed_fails_and_says_which(gate, monkeypatch):
    real = validate_module.task_metrics
    monkeypatch.setattr(validate_module, "task_metrics",  # as if pixel_agreement had been renamed
                        lambda *a, **k: {m: v for m, v in real(*a, **k).items() if m != "pixel_agreement"})
    report = gate()
    assert report.fatal is None and not report.passed
    [missing] = report.failed_checks
    assert missing.name == "pixel_agreement" and "not computed" in missing.reason
    assert "pixel_agreement" in report.summary() and "not computed" in report.to_markdown()
    assert [c["reason"] for c in report.to_json()["checks"] if c["name"] == "pixel_agreement"] == [missing.reason]


def test_make_checks_keeps_a_named_metric_it_has_no_value_for():
    [check] = validate_module.make_checks({"pck_min": 0.8}, {}, {})
    assert check.name == "pck" and not check.passed and "not computed" in check.reason


@pytest.mark.parametrize(("alter", "reason"), [
    (lambda outs: outs + outs, "the artifact returns 2 output(s), the reference 1"),
    (lambda outs: [o[..., :-1] for o in outs], "shape"),
    (lambda outs: [o.transpose(0, 1, 3, 2) for o in outs], "shape"),
    (lambda outs: [o.astype(np.float64) for o in outs], "dtype float64 from the artifact vs float32"),
], ids=["count", "cropped", "transposed", "dtype"])
def test_wrong_output_structure_is_fatal(gate, alter, reason):
    report = gate(alter)
    assert not report.passed and report.checks == [] and reason in report.fatal, report.fatal


# Damage to each task's head, and the task check it must fail (besides the tensor checks).
DAMAGE = {
    "pose": (lambda m: scale_channels(m, "conv_pose", slice(0, None, 2), -1.0), "keypoint_err_px"),
    "normal": (lambda m: scale_channels(m, "conv_normal", slice(0, 1), 4.0), "angle_mean_deg"),
    "pointmap": (lambda m: scale_channels(m, "scale_final_layer.5", slice(None), 2.0), "depth_rel_err"),
}


@pytest.mark.parametrize("task", list(DAMAGE))
def test_damaged_head_fails_its_task_check(gate, task):
    """Every task's checks can fail: a damaged head fails its task metric, not only the tensor ones."""
    broken, metric = DAMAGE[task]
    assert gate(task=task).passed  # the intact stand-in passes ...
    report = gate(task=task, broken=broken)  # ... the damaged one fails, on its task metric too
    assert report.fatal is None and not report.passed
    assert metric in {c.metric for c in report.failed_checks}, report.summary()


def test_reference_first_gives_the_same_report_and_frees_the_reference_first(gate, monkeypatch):
    """Reference first (large models): every reference output is computed, stored and the reference freed
    before the artifact opens; the metrics are those of the interleaved run."""
    events = gate.events
    monkeypatch.setattr(validate_module, "read_manifest", lambda *a, **k: StandIn(tiny_model("seg"), "seg",
                                                                                  lambda o: o).manifest)
    monkeypatch.setattr(validate_module.runtime_backends, "check_target", lambda *a: None)
    monkeypatch.setattr(validate_module.runtime_backends, "default_backend", lambda m: "onnxruntime")
    interleaved = gate()
    from sapiens_edge.validation import reference_outputs

    real_init = reference_outputs.StoredReference.__init__

    def stored(self, *a, **k):
        real_init(self, *a, **k)
        events.append("reference stored")

    monkeypatch.setattr(reference_outputs.StoredReference, "__init__", stored)
    events.clear()
    first = gate(reference_first=True)
    assert first.passed and first.checks
    assert [(c.metric, c.value) for c in first.checks] == [(c.metric, c.value) for c in interleaved.checks]
    assert "Reference first" in " ".join(first.notes)
    assert events.index("reference stored") < events.index("artifact opened")


def test_auto_reference_first_when_both_do_not_fit(monkeypatch, tmp_path):
    """Auto: reference first when the reference's weights plus the artifact's (2.5x, ONNX Runtime's fp16 copies)
    exceed the memory available; a bf16 checkpoint counts 2 bytes per parameter."""
    from sapiens_edge import memory
    from sapiens_edge.manifest import Manifest

    art = tmp_path / "a"
    art.mkdir()
    (art / "model.onnx").write_bytes(b"\0" * 1000)
    manifest = Manifest(model="sapiens2-1b-seg", task="seg", recipe="onnx-fp16", target="onnx", precision="fp16",
                        input_hw=[1024, 768], files={"model.onnx": "x"}, model_file="model.onnx", inputs=[],
                        outputs=[], normalization={}, source_weights={}, tool_versions={})
    from sapiens_edge.validation import reference_outputs

    monkeypatch.setattr(reference_outputs, "read_manifest", lambda *a, **k: manifest)
    params = 1_470_819_805
    monkeypatch.setattr(memory, "available_bytes", lambda: int(params * 4 * 1.1) + 1000 * 3)
    assert not reference_outputs.too_big_together(art, None)
    monkeypatch.setattr(memory, "available_bytes", lambda: int(params * 4 * 1.1) + 1000 * 2)
    assert reference_outputs.too_big_together(art, None)


def test_report_paths_keep_dots_in_names():
    """`--report out/sapiens2-0.4b-seg` wrote `out/sapiens2-0.4b-seg` (JSON, no suffix) and `out/sapiens2-0.md`."""
    from pathlib import Path

    from sapiens_edge.validation.report import report_paths

    stem = "out/sapiens2-0.4b-seg"
    assert report_paths(stem) == (Path(f"{stem}.json"), Path(f"{stem}.md"))
    assert report_paths("r.json") == (Path("r.json"), Path("r.md"))
    assert report_paths("r.MD") == (Path("r.json"), Path("r.MD"))
    assert report_paths("r") == (Path("r.json"), Path("r.md"))
