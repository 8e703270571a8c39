"""Writing task results to disk: `<stem>.json`, `<stem>_overlay.png`, `<stem>_<array>.npy`.

Shared by `predict` (PyTorch reference) and `run` (exported artifacts) so both write the same
files. Torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageError
from .fileio import atomic_save_image, atomic_save_npy, atomic_write_json, refuse_overwrite


@dataclass
class PredictionRecord:
    image: Path
    json_path: Path
    overlay_path: Path
    array_paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ImageFailure:
    """An image that could not be read or decoded, and why; the others were still written."""

    image: Path
    reason: str


class PredictionRecords(list):
    """The records written (a list, in input order) and ``failures``: the images skipped, with why."""

    def __init__(self, records: Sequence[PredictionRecord] = (), failures: Sequence[ImageFailure] = ()):
        super().__init__(records)
        self.failures = list(failures)


def predict_each(paths: Sequence[Path], stems: Sequence[str], out_dir: Path, header: dict[str, Any],
                 infer: Callable[[np.ndarray], Any], task: str,
                 progress: Callable[[str], None]) -> PredictionRecords:
    """Run `infer` on every image and write its results. An image that cannot be read (ImageError) is
    reported and skipped, and the run goes on: one bad file in a folder of photos costs only itself."""
    from .runtime import load_image

    out = PredictionRecords()
    for i, (path, stem) in enumerate(zip(paths, stems, strict=True), 1):
        try:
            image = load_image(path)
            t0 = time.perf_counter()
            result = infer(image)
        except ImageError as exc:
            out.failures.append(ImageFailure(path, str(exc)))
            progress(f"[{i}/{len(paths)}] {path}: FAILED: {exc}")
            continue
        seconds = time.perf_counter() - t0
        rec = write_result(out_dir, stem, path, image, result, header, seconds)
        progress(f"[{i}/{len(paths)}] {path.name}: {task} in {seconds:.2f} s -> {rec.json_path}")
        out.append(rec)
    return out


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique (`a`, `a-1`, ...) when two images share a name."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}-{n}")
    return stems


def check_outputs(out_dir: Path, stems: Sequence[str], force: bool) -> None:
    refuse_overwrite([out_dir / f"{s}{suffix}" for s in stems for suffix in (".json", "_overlay.png")], force)


def write_result(out_dir: Path, stem: str, image_path: Path, image: np.ndarray, result: Any,
                 header: dict[str, Any], seconds: float) -> PredictionRecord:
    """Arrays first, then the overlay, then the JSON that points at both (each written atomically)."""
    rec = PredictionRecord(image_path, out_dir / f"{stem}.json", out_dir / f"{stem}_overlay.png", seconds=seconds)
    for name, arr in result.arrays().items():
        rec.array_paths[name] = atomic_save_npy(out_dir / f"{stem}_{name}.npy", arr)
    atomic_save_image(rec.overlay_path, result.overlay(image))
    doc = {**header, "image": str(image_path), "seconds": round(seconds, 4),
           "arrays": {k: p.name for k, p in rec.array_paths.items()}, "overlay": rec.overlay_path.name,
           **result.to_json()}
    atomic_write_json(rec.json_path, doc)
    return rec
