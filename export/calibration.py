"""Calibration sets for post-training quantization: a folder of photos, or a small built-in set.

Samples are produced lazily, one pre-processed (1, 3, H, W) input at a time, so calibration
memory does not grow with the number of images.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from sapiens_edge import runtime
from sapiens_edge.errors import CalibrationError, ImageError, option
from sapiens_edge.runtime.image import IMAGE_SUFFIXES

from .targets import CalibrationData

# Not the astronaut photo: that one is the built-in *validation* image, and the gate must never
# evaluate on an image it calibrated on.
CALIBRATION_PHOTO = "grace_hopper.jpg"


def builtin_note() -> str:
    return (f"built-in calibration set (the bundled {CALIBRATION_PHOTO} in {len(VARIANTS)} variants): real photos "
            f"of people from your application (50-200, {option('--calibration DIR', 'calibration=DIR')}) give "
            f"better int8 accuracy")


def calibration_photo() -> Path:
    """The bundled photo the built-in calibration set is made from (U.S. Navy, public domain)."""
    return Path(str(resources.files("sapiens_edge").joinpath(f"assets/{CALIBRATION_PHOTO}")))


def _crop(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    w, h = img.size
    return img.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


# Deterministic variants of one photo: flips, crops, exposure, grayscale.
VARIANTS = (
    lambda img: img,
    ImageOps.mirror,
    lambda img: _crop(img, (1 / 8, 0, 7 / 8, 1)),
    lambda img: _crop(img, (0, 0, 1, 1 / 2)),
    lambda img: ImageEnhance.Brightness(img).enhance(0.6),
    lambda img: ImageEnhance.Brightness(img).enhance(1.3),
    lambda img: ImageOps.grayscale(img).convert("RGB"),
    lambda img: ImageEnhance.Contrast(ImageOps.mirror(img)).enhance(1.4),
)


def variants(photo: str | Path) -> list[np.ndarray]:
    """The VARIANTS of ``photo`` as uint8 RGB arrays."""
    img = Image.open(photo).convert("RGB")
    return [np.asarray(v(img), dtype=np.uint8) for v in VARIANTS]


def builtin_images() -> list[np.ndarray]:
    """The built-in calibration set: variants of the calibration photo (never the validation photo)."""
    return variants(calibration_photo())


def folder_images(folder: str | Path) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise CalibrationError(f"Calibration folder not found: {path}. Pass a folder of photos of people.")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationError(
            f"No images in {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}). Put 50-200 photos of "
            f"people there, or {option('leave --calibration out', 'pass calibration=None')} to use the built-in set.")
    return files


def calibration_data(task: str, input_hw: tuple[int, int], folder: str | Path | None = None,
                     limit: int | None = None) -> CalibrationData:
    """Normalized inputs for `task` at `input_hw`, from `folder` or the built-in set."""
    processor = runtime.get_processor(task if task != "backbone" else "seg")
    if folder is None:
        sources: list = builtin_images()
        source, note = "built-in", builtin_note()
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
