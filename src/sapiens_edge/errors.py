"""Typed errors for what the user can fix. Torch-free: the runtime raises these too.

Every message says what went wrong *and* what to do about it; the CLI prints the message without a
traceback and exits 2. Our own bugs (an internal invariant that breaks) are NOT these: they are plain
exceptions (RuntimeError, AssertionError, ...) and keep their traceback, in the CLI too.

Branch on the types, never on the message text: e.g. `bench` keeps a row "unavailable" on
PlatformUnavailableError / MissingDependencyError and "failed" on any other SapiensEdgeError.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
from collections.abc import Iterator

# Set by the CLI while it runs a command, so messages name flags (--force) instead of keywords (force=True).
_CLI = contextvars.ContextVar("sapiens_edge_cli", default=False)


def option(flag: str, keyword: str) -> str:
    """How a message names an option: ``flag`` for command-line users (``--force``), ``keyword``
    for Python callers (``force=True``). One message, spelled for whoever reads it."""
    return flag if _CLI.get() else keyword


@contextlib.contextmanager
def cli_messages() -> Iterator[None]:
    """Within this block, ``option()`` gives the command-line spelling."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


class SapiensEdgeError(Exception):
    """Base class of every error caused by user input (files, names, images, options)."""


class UnknownModelError(SapiensEdgeError, KeyError):
    """A model name that is not in the zoo."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsError(SapiensEdgeError):
    """Base class for problems with a checkpoint file."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """The weights path or hub reference does not exist (or is not cached when offline)."""


class NotSafetensorsError(WeightsError):
    """The file is not a safetensors file (wrong format)."""


class PickleCheckpointError(NotSafetensorsError):
    """A pickle-based PyTorch checkpoint (.pth/.pt/.bin); we never unpickle."""


class CorruptCheckpointError(WeightsError):
    """A safetensors file that is truncated or damaged."""


class CheckpointMismatchError(WeightsError):
    """A valid checkpoint that belongs to another model (size or task)."""


class InputSizeError(SapiensEdgeError, ValueError):
    """An input size the model cannot run at (e.g. pointmap at anything but 1024x768)."""


class ImageError(SapiensEdgeError):
    """An image file that cannot be read or decoded."""


class OutputExistsError(SapiensEdgeError, FileExistsError):
    """An output would overwrite existing files; pass --force / force=True to replace them."""


class ArtifactError(SapiensEdgeError):
    """An exported artifact folder that cannot be used (missing/tampered files, bad manifest)."""


class ManifestVersionError(ArtifactError):
    """A manifest written by a newer sapiens-edge (schema version we do not know)."""


class RecipeError(SapiensEdgeError, KeyError):
    """Unknown recipe, or a recipe that does not support this model / size / machine."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CalibrationError(SapiensEdgeError):
    """Calibration images missing, empty or unreadable."""


class InputShapeError(SapiensEdgeError, ValueError):
    """An array of the wrong shape or dtype was given to an artifact."""


class MissingDependencyError(SapiensEdgeError, ImportError):
    """An optional dependency (extra) is not installed."""


class OptionError(SapiensEdgeError, ValueError):
    """An option value a command or backend does not accept (unknown option, bad count, unknown row)."""


class PlatformUnavailableError(SapiensEdgeError):
    """The artifact or backend cannot run on this machine: Core ML (or the Core ML delegate) off Apple
    platforms, an ONNX Runtime execution provider this installation or machine lacks. Nothing is
    wrong with the artifact; run it where it runs."""


class ProviderUnavailableError(PlatformUnavailableError, MissingDependencyError):
    """An ONNX Runtime execution provider that this onnxruntime build does not include."""


class InsufficientMemoryError(PlatformUnavailableError, MemoryError):
    """A phase needs more memory than this machine has available now (checked before it starts, so
    the user gets this message instead of the kernel's OOM killer). Attributes: `phase`, `needed`
    and `available` (bytes)."""

    def __init__(self, message: str, *, phase: str = "", needed: int = 0, available: int = 0):
        super().__init__(message)
        self.phase, self.needed, self.available = phase, needed, available


class DiskFullError(SapiensEdgeError, OSError):
    """The disk filled up (or the user's quota ran out) while writing: what was being written was removed,
    nothing half-written is left. Free space there or write to another disk. Attributes: `path` (the
    folder being written) and `free` (bytes free there now; None where unknown)."""

    def __init__(self, message: str, *, path: str = "", free: int | None = None):
        super().__init__(message)
        self.errno = errno.ENOSPC  # still an OSError callers can test the usual way
        self.path, self.free = path, free


class EngineCacheError(SapiensEdgeError):
    """The TensorRT backend must build an engine but cannot write its cache folder (a read-only artifact
    folder): name a writable one."""


class RandomWeightsWarning(UserWarning):
    """A model was built with random weights: its outputs mean nothing."""


class UncheckedManifestWarning(UserWarning):
    """An artifact's manifest predates manifest digests: its own content could not be checked."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise a MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'sapiens-edge[{extra}]'"
        ) from exc
