"""The built-in calibration set and the built-in validation images are disjoint: the gate never
evaluates on an image it calibrated on (nor on one derived from it)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sapiens_edge.export.calibration import builtin_images, calibration_photo, variants
from sapiens_edge.manifest import sha256_file
from sapiens_edge.validation.validate import image_sources


def _signature(image: np.ndarray) -> np.ndarray:
    """A 32x32 grayscale thumbnail, zero-mean and unit-norm: crops, exposure and grayscale of one
    photo stay close to each other; different photos do not."""
    thumb = np.asarray(Image.fromarray(image).convert("L").resize((32, 32), Image.BILINEAR), dtype=np.float64)
    thumb -= thumb.mean()
    return thumb / (np.linalg.norm(thumb) or 1.0)


def _similar(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(_signature(a) * _signature(b)))


def test_builtin_calibration_is_deterministic_and_real():
    first, second = builtin_images(), builtin_images()
    assert len(first) == 8 and all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert all(img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 for img in first)
    assert len({img.tobytes() for img in first}) == 8  # eight distinct variants


def test_builtin_calibration_and_validation_images_are_disjoint():
    validation = [src for _, src in image_sources(None)]
    assert sha256_file(calibration_photo()) not in {sha256_file(p) for p in validation}
    calib = builtin_images()
    # against each validation photo and everything the variant recipe derives from it
    derived = [v for p in validation for v in variants(p)]
    for c in calib:
        assert not any(c.shape == d.shape and np.array_equal(c, d) for d in derived)
        worst = max(_similar(c, d) for d in derived)
        assert worst < 0.6, f"a calibration image looks derived from a validation photo (similarity {worst:.2f})"
    # the check can fail: the validation photo's own variants are recognised as one photo
    own = variants(validation[0])
    assert min(_similar(own[0], own[k]) for k in (4, 5, 6)) > 0.9
