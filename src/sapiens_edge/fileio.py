"""Atomic file writes (temporary file in the same folder, then os.replace). Torch-free."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DiskFullError, OutputExistsError, option


def current_umask() -> int:
    """The process's umask. Linux shows it in /proc; elsewhere it can only be read by setting it
    (and setting it back at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename. The file gets
    the permissions of any new file (0666 less the umask), not mkstemp's private 0600: results and
    artifacts are shared with other users and containers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with disk_full_as_error(path.parent):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o666 & ~current_umask())
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


# ENOSPC / EDQUOT, and the text of a converter that wraps the OSError in its own type without chaining it
# (safetensors' SafetensorError: "... No space left on device (os error 28)"); a chained one is found by its cause.
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "os error 28")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from or during, is the disk filling up."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in _DISK_FULL_ERRNOS:
            return True
        if any(t in str(cur).lower() for t in _DISK_FULL_TEXT):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def free_bytes(path: str | Path) -> int | None:
    """Bytes free on the disk holding `path` (its nearest existing parent); None where it cannot be read."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def disk_full_error(path: str | Path, hint: str = "", *, cleaned: bool = True) -> DiskFullError:
    """The typed error for a write into `path` that filled its disk; `cleaned`: the writer removed its
    partial files first (so the free space is measured without them)."""
    free = free_bytes(path)
    now = f"{free / 2**30:.2f} GiB free there now" if free is not None else "free space unknown"
    if cleaned:
        now += ", with the partial files removed; nothing half-written is left"
    return DiskFullError(f"the disk filled up while writing to {path} ({now}). Free space there"
                         f"{', or ' + hint if hint else ''}, and run again.", path=str(path), free=free)


@contextlib.contextmanager
def disk_full_as_error(path: str | Path, hint: str = "") -> Iterator[None]:
    """Within this block, an exception that is the disk filling up becomes a `DiskFullError` about `path`
    (the cause kept). Clean up inside the block, so the message's free space counts what was removed."""
    try:
        yield
    except Exception as exc:  # an inner DiskFullError too: the outer block knows the folder the user named
        if is_disk_full(exc):
            raise disk_full_error(path, hint) from exc
        raise


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars -> Python numbers, tuples -> lists, non-finite floats -> the
    strings "inf" / "-inf" / "nan" (JSON has no such numbers; a metric that is infinite, like the SNR
    of an exact match, keeps its meaning instead of turning into null). Other objects -> str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    try:
        v = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    if math.isfinite(v):
        return int(v) if isinstance(obj, np.integer) else v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_save_image(path: str | Path, image, format: str | None = None) -> Path:
    """Save a PIL image atomically; the format defaults to the one the suffix names (PNG if none)."""
    from PIL import Image

    fmt = format or Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return atomic_write_bytes(path, buf.getvalue())


def refuse_overwrite(paths: Iterable[Path], force: bool, *, where: tuple[str, str] = ("--output", "output"),
                     ) -> None:
    """Raise before any work starts if outputs exist and force is off. `where` names the option that
    chose the paths, as (flag, keyword)."""
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise OutputExistsError(
            f"{len(existing)} output file(s) already exist ({shown}). Choose another {option(*where)} "
            f"or pass {option('--force', 'force=True')} to replace them.")


def clear_outputs(paths: Iterable[Path]) -> list[Path]:
    """Remove the files a previous run wrote (only these paths; a folder's other files stay), so a
    forced run leaves none of them stale (a plot this run does not draw). Returns those removed."""
    removed = []
    for p in paths:
        if p.is_file() or p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed
