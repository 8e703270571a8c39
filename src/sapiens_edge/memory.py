"""Give freed memory back to the OS between the phases of a long export."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from pathlib import Path

from .errors import InsufficientMemoryError

GIB = 2**30
# Set to 1 to skip the checks (a machine whose swap or overcommit makes "available" too strict).
SKIP_ENV = "SAPIENS_EDGE_NO_MEMORY_CHECK"


def release_memory() -> None:
    """Collect garbage, then ask glibc to return its free heap pages (`malloc_trim`). Without the
    trim, the freed copies of a converter phase stay in the process's RSS under every later phase
    (2 GiB after the ONNX conversion of 0.1b). No-op where the C library has no malloc_trim."""
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Only the `malloc_trim`: cheap enough to call after each replaced layer. glibc raises its mmap
    threshold as large blocks are freed, so a model rewritten layer by layer keeps every freed weight in
    its heap (0.4b: +0.45 GiB) until trimmed."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is not None:
        trim(0)


def drop_weights(model) -> bool:
    """Free the weights of a model that `export()` loaded itself (`sapiens_disposable`), once the
    target has what it needs from it (the ONNX target: before calibration, where the 0.4b model's
    1.6 GB would sit under the calibration session's own copy). A caller's model is never touched.
    Returns whether anything was freed."""
    if not getattr(model, "sapiens_disposable", False):
        return False
    model.to_empty(device="meta")
    release_memory()
    return True


def available_bytes() -> int | None:
    """Memory this process can still take: the kernel's MemAvailable, capped by the cgroup's limit
    (a container's `--memory`) minus its use. None where neither can be read (not Linux)."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def process_rss() -> int:
    """This process's resident memory in bytes (0 where /proc is missing)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def require_memory(phase: str, peak: int, hint: str = "") -> None:
    """Raise InsufficientMemoryError before `phase` when its estimated `peak` (bytes, this process's
    resident memory at the phase's height, what it holds already included) needs more than is available:
    a message naming the phase and the memory instead of the OOM killer's bare "Killed"."""
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return
    available = available_bytes()
    more = peak - process_rss()
    if available is None or more <= available:
        return
    raise InsufficientMemoryError(
        f"{phase} needs about {peak / GIB:.1f} GiB of memory ({more / GIB:.1f} GiB more than this process holds) "
        f"and {available / GIB:.1f} GiB is available. Close other programs, {hint + ', ' if hint else ''}or use a "
        f"machine with more memory (set {SKIP_ENV}=1 to try anyway).", phase=phase, needed=more, available=available)
