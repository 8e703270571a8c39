"""Tiny models and inputs shared by the export target tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from sapiens_edge import runtime
from sapiens_edge.models import Sapiens2TaskModel
from sapiens_edge.models.synthetic import make_confident_
from sapiens_edge.zoo import BackboneArch, HeadConfig
from tests.helpers import ASTRONAUT, TINY_EXPORT, randomize_, tiny_info


def photo_input(task: str, input_hw: tuple[int, int]) -> np.ndarray:
    proc = runtime.get_processor(task)
    return np.ascontiguousarray(proc.prepare(runtime.load_image(ASTRONAUT), input_hw=input_hw).inputs, np.float32)


def tiny_model(task: str, seed: int = 0, arch: BackboneArch = TINY_EXPORT, head: HeadConfig | None = None,
               **confident) -> torch.nn.Module:
    """The tiny export model of `task` (backbone `arch`, head `head` or the tiny one); seg/pose heads made
    confident (`make_confident_`)."""
    info = tiny_info(task, arch)
    if head is not None:
        info = dataclasses.replace(info, head=head)
    model = randomize_(Sapiens2TaskModel(info).eval(), seed=seed)
    model.sapiens_info, model.sapiens_weights, model.sapiens_weights_path, model.sapiens_seed = info, None, None, seed
    if task in ("seg", "pose"):
        make_confident_(model, torch.from_numpy(photo_input(task, info.input_hw)), **confident)
    return model


# The export tests' stand-in (conftest `models`): better conditioned than the default one, so that every
# int8 recipe meets its real task thresholds on it and the suite shows the gate passing for the right
# reason (docs/design/standin-weights.md). Seg: 2 classes, one label boundary (int8 noise flips the pixels
# along boundaries; 3 classes leave coreml-w8a8, which has no Hadamard rotation, at 97.5-98.0 % over seeds
# 0-2). Pose: a final head width of 64 instead of 8, so each heatmap (a 1x1 readout of those channels) can
# be a clean blob (with 8 channels the best of 2048 fits has a second peak at 94-98 % of its height and
# int8 noise flips some: executorch-xnnpack-int8 0.87 PCK), and the 308 keypoints share the 8
# best-separated fits (`distinct_peaks`). Measured on the bundled photo (seg pixel agreement; pose mean
# error, PCK 1.0 for all): onnx-int8 99.45 %, 0.045 px; onnx-int8-dynamic 99.09 %, 0.037 px; executorch-
# xnnpack-int8 and tflite-int8 99.12 %, 0.055 px; their -dynamic twins 99.59 % / 99.39 %, 0.032 / 0.025 px;
# Core ML twins: coreml-int8 99.63 %, 0.019 px, coreml-w8a8 98.61 %, 0.053 px.
WIDE_POSE_HEAD = HeadConfig("pose", deconv=(32, 16), conv=(16, 16, 64), out_channels=308)
WELL_CONDITIONED = {"seg": {"active_classes": 2}, "pose": {"distinct_peaks": 8, "head": WIDE_POSE_HEAD}}


def torch_outputs(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def wrecked_copy(artifact, model_file: str, tmp_path):
    """A copy of the artifact folder whose model file's first 64 bytes (its header) are zeroed."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    data = bytearray((bad / model_file).read_bytes())
    data[:64] = bytes(64)
    (bad / model_file).write_bytes(bytes(data))
    return bad


# ---------------------------------------------------------------------------- broken models for the gate
# Each returns a damaged deep copy (the reference stays intact): exported, it must fail validation.

def _head_layer(model: torch.nn.Module, name: str) -> torch.nn.Module:
    return dict(model.named_modules())[f"decode_head.{name}"]


def damaged(model: torch.nn.Module, layer: str, edit) -> torch.nn.Module:
    """A copy of `model` whose head `layer`'s weight and bias went through `edit(tensor)` in place."""
    import copy

    bad = copy.deepcopy(model)
    with torch.no_grad():
        mod = _head_layer(bad, layer)
        for p in (mod.weight, mod.bias):
            edit(p)
    return bad


def swap_classes(model: torch.nn.Module) -> torch.nn.Module:
    return damaged(model, "conv_seg", lambda p: p.copy_(p.flip(0)))


def scale_channels(model: torch.nn.Module, layer: str, channels: slice, factor: float) -> torch.nn.Module:
    return damaged(model, layer, lambda p: p[channels].mul_(factor))


def nan_weight(model: torch.nn.Module, layer: str) -> torch.nn.Module:
    """One NaN weight in `layer`: every output it feeds turns NaN."""
    return damaged(model, layer, lambda p: p.view(-1)[0].fill_(float("nan")) if p.dim() > 1 else None)


class _Apply(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def reshaped(model: torch.nn.Module, layer: str, fn) -> torch.nn.Module:
    """A copy of `model` whose head `layer`'s output goes through `fn` (a crop, a transpose): an artifact
    returning the wrong shape. (In the head, not around the model: the export wraps the model itself.)"""
    import copy

    bad = copy.deepcopy(model)
    setattr(bad.decode_head, layer, torch.nn.Sequential(_head_layer(bad, layer), _Apply(fn)))
    return bad


def assert_passes_recipe_thresholds(report, recipe: str, task: str, tensor_checked: bool = True) -> None:
    """The gate passed on `recipe`'s own thresholds for `task` (read from the recipe: no override, no
    floor), every one of them checked: a limit whose metric was not computed is a failing check.
    `tensor_checked=False`: the outputs are integer class ids (decoded seg), which only the task metrics check."""
    from sapiens_edge.export.recipes import get_recipe
    from sapiens_edge.validation.metrics import TASK_METRICS

    limits = get_recipe(recipe).thresholds_for(task)
    assert report.recipe == recipe and report.task == task and report.thresholds == limits, report.thresholds
    assert report.fatal is None and report.passed, report.summary()
    task_limits = [k for k in limits if k.rsplit("_", 1)[0] in TASK_METRICS[task]]
    assert len(report.checks) >= (len(limits) if tensor_checked else len(task_limits)) and task_limits
    assert {c.metric for c in report.checks} >= {k.rsplit("_", 1)[0] for k in task_limits}


def assert_gate_fails(report, verdict: str, reason: str) -> None:
    """FATAL: `reason` is in the fatal reason; FAILED: the metric `reason` is among the failed checks."""
    assert not report.passed and report.summary().startswith(verdict), report.summary()
    if verdict == "FATAL":
        assert report.checks == [] and reason in report.fatal, report.fatal
    else:
        assert report.fatal is None and reason in {c.metric for c in report.failed_checks}, report.summary()


# ---------------------------------------------------------------------------- decoded outputs (--decode)
DECODED_TASKS = ("seg", "pose", "normal")
# fp32: the graph's decoding against the Python decoders on the reference's outputs. Labels: near-tied logits
# may flip with last-bit differences; keypoints: DARK's step magnifies them (flat peaks of tiny models).
# ONNX fp32 is bit-exact to the reference but for op order; ExecuTorch and TFLite rotate RoPE in plain fp32
# (up to 1e-3 relative on the heatmaps: the fp32 recipes' rel_l2_max), hence their looser `loose` bounds.
DECODED_FP32_LABEL_AGREEMENT = 0.999
DECODED_FP32 = {"keypoint_px": 1e-2, "rtol": 1e-4, "normal_atol": 1e-4}
DECODED_FP32_LOOSE = {"keypoint_px": 0.05, "rtol": 2e-3, "normal_atol": 5e-3}


def export_decoded(model: torch.nn.Module, recipe: str, folder, **options):
    """`model` exported with `recipe` and decoded outputs (quietly), at its own input size."""
    from sapiens_edge.export import core

    return core.export(model, recipe, folder, input_size=model.sapiens_info.input_hw, decode=True,
                       progress=lambda _: None, **options)


def assert_decoded_export_passes(model: torch.nn.Module, recipe: str, task: str, folder, *,
                                 fp32_tolerances: dict | None = None) -> None:
    """`model` exported with `recipe` and decoded outputs passes the gate with the recipe's thresholds. A float
    recipe also equals the Python decoders (`fp32_tolerances`: assert_decoded_fp32_parity's, default tight);
    an int8 one (2 calibration images) keeps the decoding float: it has no conv/linear for the quantizer."""
    import importlib

    int8 = "int8" in recipe
    art = export_decoded(model, recipe, folder, **({"calibration_limit": 2} if int8 else {}))
    if int8:
        assert art.manifest.export_options["decoded"] is True
    else:
        assert_decoded_fp32_parity(art, model, task, **(fp32_tolerances or {}))
    report = importlib.import_module("sapiens_edge.validation.validate").validate(art.path, progress=lambda _: None)
    assert_passes_recipe_thresholds(report, recipe, task, tensor_checked=task != "seg")


def assert_decoded_fp32_parity(art, model: torch.nn.Module, task: str, keypoint_px: float = DECODED_FP32["keypoint_px"],
                               rtol: float = DECODED_FP32["rtol"],
                               normal_atol: float = DECODED_FP32["normal_atol"]) -> None:
    """The artifact's decoded outputs equal the Python decoders' on the PyTorch model's raw outputs (stated
    tolerances), and the manifest says what they are."""
    from sapiens_edge.runtime.decoded import decode_raw

    m = art.manifest
    assert m.export_options["decoded"] is True
    pins = m.export_options["app_runtime"]  # what an app pins, said in the README too (export.runtime_pins)
    assert pins["min_version"] and pins["pin"] in (art.path / "README.md").read_text()
    x = photo_input(task, model.sapiens_info.input_hw)
    ref = decode_raw(task, torch_outputs(model, x), m.outputs[0].dtype)
    with runtime.load(art.path) as pred:
        cand = pred.run(x)
    assert [o.name for o in m.outputs] == {"seg": ["labels"], "pose": ["keypoints", "scores"],
                                           "normal": ["normals"]}[task]
    assert [(list(c.shape), str(c.dtype)) for c in cand] == [(list(r.shape), str(r.dtype)) for r in ref]
    if task == "seg":
        assert m.outputs[0].dtype in ("uint8", "int32")
        assert np.mean(cand[0] == ref[0]) >= DECODED_FP32_LABEL_AGREEMENT
    elif task == "pose":
        np.testing.assert_allclose(cand[1], ref[1], rtol=rtol, atol=1e-5)
        assert np.abs(cand[0] - ref[0]).max() <= keypoint_px
    else:
        np.testing.assert_allclose(cand[0], ref[0], atol=normal_atol)
        np.testing.assert_allclose(np.linalg.norm(cand[0], axis=1), 1, atol=1e-5)
