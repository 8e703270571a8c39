"""Scratch folders beside an output, and what a killed run left of them.

A long job (an export, its calibration) builds in a temporary folder next to its output and renames it
into place, so an interrupted run leaves nothing half-written: Ctrl-C, SIGTERM and SIGHUP unwind through
the `finally`s that remove it (see `signals`). SIGKILL, a power cut or the OOM killer cannot be caught;
so every scratch folder carries its owner's process id in its name, and the next run into the same
folder removes those whose process is gone and reports those whose process still runs (another export
into the same place: never touched). Torch-free.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .fileio import current_umask

# `.NAME.tmp-PID-XXXX` / `.NAME.old-PID-XXXX` (artifact folders), `sapiens-KIND-PID-XXXX` (work files).
_PATTERN = re.compile(r"^(?:\..+\.(?:tmp|old)|sapiens-[a-z]+)-(?P<pid>\d+)-[^/]+$")


def make_scratch_dir(parent: str | Path, prefix: str) -> Path:
    """A new empty folder `parent/PREFIX-PID-XXXX` (the prefix ends without a dash), with the
    permissions of any new folder (0777 less the umask), not mkdtemp's private 0700: an artifact
    folder built here is renamed into place as it is."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=parent))
    path.chmod(0o777 & ~current_umask())
    return path


@contextmanager
def scratch_dir(parent: str | Path, prefix: str) -> Iterator[Path]:
    """A scratch folder that is removed on the way out, whatever the way out."""
    path = make_scratch_dir(parent, prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owner_pid(path: Path) -> int | None:
    match = _PATTERN.match(path.name)
    return int(match["pid"]) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale(parent: str | Path, say: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Remove the scratch folders in `parent` whose process is gone; report (via `say`) those whose
    process still runs. Returns the folders removed."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    for path in sorted(parent.iterdir()):
        pid = owner_pid(path)
        if pid is None or not path.is_dir() or pid == os.getpid():
            continue
        if _alive(pid):
            say(f"note: {path} belongs to a running process ({pid}); leaving it alone")
            continue
        shutil.rmtree(path, ignore_errors=True)
        say(f"removed {path}, left by an interrupted run (process {pid} is gone)")
        removed.append(path)
    return removed
