"""Reference pipeline: the PyTorch model end to end on images (`sapiens-edge predict`).

Every exported artifact is later compared against what this writes: same pre/post-processing
(sapiens_edge.runtime), PyTorch fp32 in the middle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import runtime
from .loading import load_model
from .results_io import PredictionRecords, check_outputs, predict_each, unique_stems
from .zoo import ModelInfo

Box = Sequence[float]


def torch_model_fn(model: nn.Module) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Wrap a torch model as the runtime's model_fn: float32 NCHW numpy in, numpy outputs out."""

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.float().numpy() for o in outs]

    return run


def predict(model: str | nn.Module, images: Sequence[str | Path], output: str | Path, *,
            weights: str | Path | None = None, boxes: Sequence[Box] | None = None,
            flip_test: bool | None = None, force: bool = False,
            progress: Callable[[str], None] | None = None) -> PredictionRecords:
    """Run a task model on images and write, per image, `<stem>.json`, `<stem>_overlay.png` and
    the dense results as `<stem>_<name>.npy` into `output`. An image that cannot be read is reported
    and skipped; the returned list's ``.failures`` names each, with why."""
    progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    net = load_model(model, weights) if isinstance(model, str) else model
    info: ModelInfo = net.sapiens_info
    if info.task == "backbone":
        from .errors import SapiensEdgeError

        raise SapiensEdgeError(
            f"{info.name} is a bare backbone (feature maps only); predict needs a task model such as "
            f"sapiens2-{info.size}-seg.")
    out_dir = Path(output)
    paths = runtime.expand_image_paths(images)  # a folder stands for the images in it
    stems = unique_stems(paths)
    check_outputs(out_dir, stems, force)
    model_fn = torch_model_fn(net)
    header = {"model": info.name, "weights": getattr(net, "sapiens_weights", None),
              "random_weights": getattr(net, "sapiens_weights", None) is None,
              "backend": f"torch {torch.__version__} (reference, fp32, CPU)"}
    return predict_each(paths, stems, out_dir, header,
                        lambda image: runtime.run_task(model_fn, image, info.task, boxes=boxes, flip_test=flip_test,
                                                       input_hw=info.input_hw),
                        info.task, progress)
