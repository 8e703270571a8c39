"""The gate's test images: the bundled photo, a folder, one file or a list of files/arrays, each checked to
decode before any model loads. Torch-free."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sapiens_edge import metadata, runtime
from sapiens_edge.errors import ImageError, option


def image_sources(images: str | Path | Sequence[Any] | None) -> list[tuple[str, Any]]:
    """(name, source) pairs: the bundled photo, a folder's images (sorted), one file, or a list of
    files/arrays. Every file is checked to decode before any model work starts."""
    if images is None:
        photo = metadata.bundled_photo()
        return [(str(photo), photo)]
    if isinstance(images, str | Path):
        path = Path(images)
        if path.is_dir():
            try:
                files = runtime.image_files(path)
            except ImageError as exc:
                raise ImageError(f"{exc} Or {option('leave --images out', 'pass images=None')} to use the bundled "
                                 f"photo.") from None
        elif path.exists():
            files = [path]
        else:
            raise ImageError(f"Validation images not found: {path}. Pass a folder of photos or an image file.")
        pairs: list[tuple[str, Any]] = [(str(p), p) for p in files]
    else:
        pairs = [(str(s), Path(s)) if isinstance(s, str | Path) else (f"image[{k}]", s)
                 for k, s in enumerate(images)]
        if not pairs:
            raise ImageError("No validation images given (an empty list).")
    from PIL import Image

    for name, src in pairs:
        if isinstance(src, Path):
            try:
                with Image.open(src) as im:
                    im.verify()
            except Exception as exc:  # PIL raises many types for broken files
                raise ImageError(f"Validation image {name} cannot be read ({exc}); remove or fix it.") from exc
    return pairs
