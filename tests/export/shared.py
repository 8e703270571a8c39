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


def tiny_model(task: str, seed: int = 0, arch: BackboneArch = TINY_EXPORT) -> torch.nn.Module:
    info = tiny_info(task, arch)
    model = randomize_(Sapiens2TaskModel(info).eval(), seed=seed)
    model.sapiens_info, model.sapiens_weights, model.sapiens_weights_path, model.sapiens_seed = info, None, None, seed
    if task in ("seg", "pose"):
        make_confident_(model, torch.from_numpy(photo_input(task, info.input_hw)))
    return model


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
