"""Stand-in weights for the main job (`sapiens-edge report`) and the benchmarks: seeded random,
classifier made confident by `models.synthetic`, so that task metrics mean something."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .metadata import bundled_photo


def write_standin_weights(model_name: str, path: Path, input_hw: tuple[int, int], seed: int = 0,
                          dtype: str = "fp32") -> None:
    """Seeded random weights, attention switched on (LayerScale 1) and a confident classifier
    (seg/pose), saved as .safetensors with tensors in `dtype` (fp32, or bf16 as large checkpoints are
    published: a 5b stand-in is then built, made confident and saved in 10 GB, never 20)."""
    import torch
    from safetensors.torch import save_file

    from . import runtime
    from .loading import load_model
    from .models.synthetic import make_confident_, wake_layer_scale_
    from .models.upcast import compute_in_fp32_

    storage = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(model_name, None, seed=seed, dtype=storage)
    if storage != torch.float32:
        compute_in_fp32_(model)  # make_confident_ runs the model
    task = model.sapiens_info.task
    wake_layer_scale_(model)
    if task in ("seg", "pose"):
        prepared = runtime.get_processor(task).prepare(runtime.load_image(bundled_photo()), input_hw=input_hw)
        make_confident_(model, torch.from_numpy(np.ascontiguousarray(prepared.inputs, np.float32)))
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
