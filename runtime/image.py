"""Image loading (to uint8 RGB, like ``cv2.imread`` then BGR->RGB) and atomic PNG writing."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sapiens_edge.errors import ImageError
from sapiens_edge.fileio import atomic_save_image

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray

_HINT = "Pass a readable JPEG/PNG/BMP/TIFF/WebP image file."
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files under `folder` (recursively, by suffix), sorted; an ImageError if there are none."""
    path = Path(folder)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"No images in {path} (looked for {', '.join(IMAGE_SUFFIXES)}). Put photos there, or pass "
                         "image files.")
    return files


def expand_image_paths(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files as given, with each folder replaced by the image files in it (`image_files`)."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        out.extend(image_files(path) if path.is_dir() else [path])
    return out


def load_image(source: ImageSource) -> np.ndarray:
    """Decode ``source`` (path, encoded bytes, PIL image or array) to a uint8 (H, W, 3) RGB array.

    EXIF orientation is applied (OpenCV's imread does the same). Alpha is dropped without
    compositing, 16-bit data keeps its high byte and palette/grayscale images are expanded, all as
    ``cv2.imread(path, cv2.IMREAD_COLOR)`` would.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _to_rgb8(_oriented(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _to_rgb8(_open(io.BytesIO(bytes(source)), "the given image bytes"))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"Image file not found: '{path}'. Check the path (and the working directory).")
        if path.is_dir():
            raise ImageError(f"'{path}' is a directory, not an image file. {_HINT}")
        return _to_rgb8(_open(path, f"'{path}'"))
    raise ImageError(f"Cannot read an image from a {type(source).__name__}. "
                     "Pass a file path, encoded bytes, a PIL image or a uint8 array.")


def _open(fp: object, what: str) -> Image.Image:
    try:
        img = Image.open(fp)  # type: ignore[arg-type]
        img.load()  # decode now: truncated or corrupt data fails here, not later
    except UnidentifiedImageError as exc:
        raise ImageError(f"Cannot decode {what}: not a recognised image format. {_HINT}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"Refusing to decode {what}: {exc}. Downscale the image first.") from exc
    except PermissionError as exc:
        raise ImageError(f"Cannot read {what}: permission denied. Check the file permissions.") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"Cannot decode {what}: the data is truncated or corrupt ({exc}). "
                         f"Re-export or re-download the image. {_HINT}") from exc
    return _oriented(img)


def _oriented(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make a decodable image unusable
        return img  # (OpenCV ignores unreadable orientation tags the same way)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode.startswith("I;16") or mode == "I":
        # OpenCV keeps the high byte of 16-bit samples (v >> 8).
        a = np.asarray(img).astype(np.int64)
        return _gray3((np.clip(a, 0, 65535) >> 8).astype(np.uint8))
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        finite = a[np.isfinite(a)]
        # Float images have no fixed range: [0, 1] data is scaled to 0-255, otherwise used as is.
        if finite.size and finite.max() <= 1.0:
            a = a * 255.0
        return _gray3(np.clip(np.nan_to_num(np.rint(a)), 0, 255).astype(np.uint8))
    if mode in ("1", "L", "LA", "La"):
        return _gray3(np.asarray(img.convert("L"), dtype=np.uint8))
    if mode in ("P", "PA"):
        img = img.convert("RGBA")  # palette -> colours; transparency is ignored like OpenCV
    try:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()  # RGBA/CMYK/YCbCr/...
    except (ValueError, OSError) as exc:
        raise ImageError(f"Unsupported image mode '{mode}'. Convert the image to 8-bit RGB.") from exc


def _gray3(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _from_array(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        raise ImageError(f"Image arrays must be uint8, got {a.dtype}. Convert with np.clip(...).astype(np.uint8).")
    if a.ndim == 2:
        return _gray3(a)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return np.ascontiguousarray(a[:, :, :3])
    raise ImageError(f"Image arrays must be (H, W) or (H, W, 3) RGB, got shape {a.shape}.")


def save_png_atomic(path: str | os.PathLike, image: np.ndarray | Image.Image) -> Path:
    """Write ``image`` as PNG to ``path`` via a temporary file + ``os.replace`` (never half-written).

    Arrays: uint8 (H, W) / (H, W, 3) / (H, W, 4), bool masks (saved as 0/255) or uint16 (H, W).
    """
    pil = image if isinstance(image, Image.Image) else _array_to_pil(np.asarray(image))
    return atomic_save_image(path, pil, format="PNG")


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(a)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"cannot save an array of dtype {a.dtype} and shape {a.shape} as PNG")
    return Image.fromarray(np.ascontiguousarray(a))
