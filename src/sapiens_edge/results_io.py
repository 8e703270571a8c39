"""Writing task results to disk: `<stem>.json`, `<stem>_overlay.png`, `<stem>_<array>.npy`.

Shared by `predict` (PyTorch reference) and `run` (exported artifacts) so both write the same
files. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_save_image, atomic_save_npy, atomic_write_json, refuse_overwrite


@dataclass
class PredictionRecord:
    image: Path
    json_path: Path
    overlay_path: Path
    array_paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


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
