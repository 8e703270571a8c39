"""`sapiens-edge run ARTIFACT IMAGE... --output DIR`: an exported artifact on images, torch-free.

Writes exactly the files `sapiens-edge predict` writes (`<stem>.json`, `<stem>_overlay.png`,
`<stem>_<array>.npy`, via results_io), so an artifact's results compare file for file with the
PyTorch reference.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import runtime
from .errors import ImageError, SapiensEdgeError
from .results_io import PredictionRecords, check_outputs, predict_each, unique_stems

Box = Sequence[float]


def run_header(predictor: Any) -> dict[str, Any]:
    """The fields every result JSON of this run starts with (predict's keys plus the artifact's)."""
    m = predictor.manifest
    info = predictor.describe()
    weights = m.source_weights or {}
    backend = {k: v for k, v in info.items() if k not in ("model", "task", "recipe", "target", "precision",
                                                          "input_hw", "artifact")}
    return {"model": m.model, "weights": weights.get("path"), "random_weights": bool(weights.get("random")),
            "backend": backend.get("summary", predictor.backend), "recipe": m.recipe, "target": m.target,
            "precision": m.precision, "artifact": str(predictor.artifact_dir), "runtime": backend}


def run_artifact(artifact_dir: str | Path, images: Sequence[str | Path], output: str | Path, *,
                 backend: str | None = None, provider: str | None = None, threads: int | None = None,
                 verify: bool = True, boxes: Sequence[Box] | None = None, flip_test: bool | None = None,
                 force: bool = False, progress: Callable[[str], None] | None = None,
                 **options: Any) -> PredictionRecords:
    """Run the artifact in ``artifact_dir`` on ``images`` and write, per image, `<stem>.json`,
    `<stem>_overlay.png` and the dense results as `<stem>_<name>.npy` into ``output``.

    ``provider``/``threads`` (and any other ``options``) go to the backend; None means its default.
    Existing outputs are refused before any work unless ``force``. An image that cannot be read is
    reported (``progress``) and skipped, the others are written: the returned list holds the records
    written and ``.failures`` the images skipped, with why."""
    progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out_dir = Path(output)
    paths = runtime.expand_image_paths(images)  # a folder stands for the images in it
    if not paths:
        raise SapiensEdgeError("No images given; pass one or more image files or folders.")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ImageError(f"Image file(s) not found: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}. "
                         "Check the paths (and the working directory).")
    stems = unique_stems(paths)
    check_outputs(out_dir, stems, force)
    opts = {k: v for k, v in {"provider": provider, "threads": threads, **options}.items() if v is not None}
    with runtime.load(artifact_dir, backend, verify=verify, **opts) as predictor:
        if predictor.task == "backbone":
            raise SapiensEdgeError(
                f"{predictor.manifest.model} is a bare backbone (feature maps only); run needs a task artifact "
                "(pose, seg, normal or pointmap).")
        header = run_header(predictor)
        progress(f"{predictor.manifest.model} ({predictor.manifest.recipe}) on {header['backend']}")
        return predict_each(paths, stems, out_dir, header,
                            lambda image: predictor.predict(image, boxes=boxes, flip_test=flip_test),
                            predictor.task, progress)
