"""Calibration sets for post-training quantization: a folder of photos, or a small built-in set.

Samples are produced lazily, one pre-processed (1, 3, H, W) input at a time, so calibration
memory does not grow with the number of images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from sapiens_edge import metadata, runtime
from sapiens_edge.errors import CalibrationError, ImageError

from .targets import CalibrationData

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
BUILTIN_NOTE = ("built-in calibration set (the bundled astronaut photo in 8 variants): real photos of "
                "people from your application (50-200, --calibration DIR) give better int8 accuracy")


def builtin_images() -> list[np.ndarray]:
    """Deterministic variants of the bundled photo: flips, crops, exposure, grayscale."""
    img = Image.open(metadata.bundled_photo()).convert("RGB")
    w, h = img.size
    variants = [
        img,
        ImageOps.mirror(img),
        img.crop((w // 8, 0, w - w // 8, h)),
        img.crop((0, 0, w, h // 2)).resize((w, h // 2)),
        ImageEnhance.Brightness(img).enhance(0.6),
        ImageEnhance.Brightness(img).enhance(1.3),
        ImageOps.grayscale(img).convert("RGB"),
        ImageEnhance.Contrast(ImageOps.mirror(img)).enhance(1.4),
    ]
    return [np.asarray(v, dtype=np.uint8) for v in variants]


def folder_images(folder: str | Path) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise CalibrationError(f"Calibration folder not found: {path}. Pass a folder of photos of people.")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationError(
            f"No images in {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}). Put 50-200 photos of "
            f"people there, or leave --calibration out to use the built-in set.")
    return files


def calibration_data(task: str, input_hw: tuple[int, int], folder: str | Path | None = None,
                     limit: int | None = None) -> CalibrationData:
    """Normalized inputs for `task` at `input_hw`, from `folder` or the built-in set."""
    processor = runtime.get_processor(task if task != "backbone" else "seg")
    if folder is None:
        sources: list = builtin_images()
        source, note = "built-in", BUILTIN_NOTE
    else:
        sources = folder_images(folder)
        source, note = str(folder), ""
        # Decode everything once up front so an unreadable file fails before minutes of export work.
        for p in sources:
            try:
                with Image.open(p) as im:
                    im.verify()
            except Exception as exc:  # PIL raises many types for broken files
                raise CalibrationError(f"Calibration image {p} cannot be read ({exc}); remove or fix it.") from exc
    if limit is not None:
        sources = sources[:limit]

    def batches() -> Iterator[np.ndarray]:
        for src in sources:
            try:
                image = runtime.load_image(src)
            except ImageError as exc:
                raise CalibrationError(str(exc)) from exc
            inputs = processor.prepare(image, input_hw=input_hw).inputs
            for row in inputs:
                yield np.ascontiguousarray(row[None], dtype=np.float32)

    return CalibrationData(batches=batches, count=len(sources), source=source, note=note)
