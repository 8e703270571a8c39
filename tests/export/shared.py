"""Tiny models and inputs shared by the export target tests."""

from __future__ import annotations

import numpy as np
import torch

from sapiens_edge import runtime
from sapiens_edge.models import Sapiens2TaskModel
from sapiens_edge.models.synthetic import make_confident_
from sapiens_edge.zoo import BackboneArch
from tests.helpers import ASTRONAUT, TINY_EXPORT, randomize_, tiny_info


def photo_input(task: str, input_hw: tuple[int, int]) -> np.ndarray:
    proc = runtime.get_processor(task)
    return np.ascontiguousarray(proc.prepare(runtime.load_image(ASTRONAUT), input_hw=input_hw).inputs, np.float32)


def tiny_model(task: str, seed: int = 0, arch: BackboneArch = TINY_EXPORT, **confident) -> torch.nn.Module:
    """The tiny export model of `task` (backbone `arch`); seg/pose heads made confident (`make_confident_`)."""
    info = tiny_info(task, arch)
    model = randomize_(Sapiens2TaskModel(info).eval(), seed=seed)
    model.sapiens_info, model.sapiens_weights, model.sapiens_weights_path, model.sapiens_seed = info, None, None, seed
    if task in ("seg", "pose"):
        make_confident_(model, torch.from_numpy(photo_input(task, info.input_hw)), **confident)
    return model


# Better conditioned than the default stand-in, so that static int8 meets the recipes' real task limits:
# seg with 3 classes (fewer, longer label boundaries, where int8 noise flips pixels) and pose with its
# 308 heatmaps drawn from the 8 best-separated blob fits (the default gives each keypoint its own fit where
# the 32x24 map has room, and the weaker ones flip under int8). Measured with onnx-int8 on the bundled
# photo: seg pixel agreement 0.9915 (0.981 by default), pose 0.12 px / PCK 1.0 (2.4 px / 0.945 by default;
# with 16 fits one flips and takes ~19 keypoints with it: 3.5 px).
WELL_CONDITIONED = {"seg": {"active_classes": 3}, "pose": {"distinct_peaks": 8}}


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


def assert_gate_fails(report, verdict: str, reason: str) -> None:
    """FATAL: `reason` is in the fatal reason; FAILED: the metric `reason` is among the failed checks."""
    assert not report.passed and report.summary().startswith(verdict), report.summary()
    if verdict == "FATAL":
        assert report.checks == [] and reason in report.fatal, report.fatal
    else:
        assert report.fatal is None and reason in {c.metric for c in report.failed_checks}, report.summary()
