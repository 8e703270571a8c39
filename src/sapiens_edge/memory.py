"""Give freed memory back to the OS between the phases of a long export."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_memory() -> None:
    """Collect garbage, then ask glibc to return its free heap pages (`malloc_trim`). Without the
    trim, the freed copies of a converter phase stay in the process's RSS under every later phase
    (2 GiB after the ONNX conversion of 0.1b). No-op where the C library has no malloc_trim."""
    gc.collect()
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
