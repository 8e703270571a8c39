"""The TensorRT backend's engine cache: where a built engine is kept and when it may be used again.

A serialized engine only runs on the GPU model and TensorRT version that built it, and only means the model
it was built from. So each engine is stored with a key naming all of those, as ``<dir>/<digest>.engine``
plus ``<digest>.json`` (the key, the engine's sha256 and how long the build took); ``<digest>`` is the
key's sha256, so engines for several GPUs or TensorRT versions can share one folder. An engine is used only
when its sidecar's key equals the key asked for and its bytes hash to the sidecar's sha256; anything else
(another GPU, another TensorRT, a changed model or recipe, a damaged or truncated file) is a miss, and the
backend builds a new engine over it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sapiens_edge.errors import EngineCacheError, option
from sapiens_edge.fileio import atomic_write_bytes, atomic_write_json
from sapiens_edge.manifest import sha256_file

ENGINE_DIR = "engines"  # beside the artifact's files, unless the caller names another folder
SIDECAR_FORMAT = 1


def engine_key(manifest: Any, *, gpu: str, compute_capability: str, tensorrt: str,
               workspace_mib: int | None) -> dict[str, Any]:
    """What an engine depends on. The model is named by the manifest's sha256 of its file and of the
    external data files beside it (``model.onnx.data``): new weights change the data, not the graph."""
    model = manifest.model_file
    data = {name: digest for name, digest in sorted(manifest.files.items())
            if name != model and name.startswith(model)}
    return {"gpu": gpu, "compute_capability": compute_capability, "tensorrt": tensorrt,
            "recipe": manifest.recipe, "model_sha256": manifest.files.get(model, ""),
            "data_sha256": data, "workspace_mib": workspace_mib, "format": SIDECAR_FORMAT}


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class EngineSlot:
    """The engine file and sidecar of one key in one folder."""

    folder: Path
    key: dict[str, Any]

    @property
    def engine(self) -> Path:
        return self.folder / f"{key_digest(self.key)}.engine"

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{key_digest(self.key)}.json"

    @contextlib.contextmanager
    def mapped(self) -> Iterator[memoryview | None]:
        """The cached engine, memory-mapped, when it is for exactly this key and intact; None otherwise. Mapped,
        not read: on a Jetson, CPU and GPU share the memory, and a multi-GB engine read into the process would
        sit there twice while TensorRT copies it to the GPU (mapped pages are the page cache's to drop)."""
        try:
            meta = json.loads(self.sidecar.read_text("utf-8"))
            intact = (isinstance(meta, dict) and meta.get("key") == self.key
                      and meta.get("engine_sha256") == sha256_file(self.engine))
        except (OSError, ValueError):
            intact = False
        with contextlib.ExitStack() as stack:
            view = None
            if intact:
                try:
                    f = stack.enter_context(open(self.engine, "rb"))
                    mapped = stack.enter_context(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
                    view = memoryview(mapped)
                    stack.callback(view.release)
                except (OSError, ValueError):  # gone since hashed, or empty (mmap refuses 0 bytes)
                    view = None
            yield view

    def build_seconds(self) -> float | None:
        try:
            return float(json.loads(self.sidecar.read_text("utf-8"))["build_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def check_writable(self) -> None:
        """Before a build (minutes on a board), not after it: the folder can take the engine."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise self._unwritable(PermissionError("no write permission"))

    def _unwritable(self, exc: OSError) -> EngineCacheError:
        return EngineCacheError(
            f"The TensorRT engine cache {self.folder} cannot be written ({exc}), and no engine for this GPU, "
            f"TensorRT version and model is cached there yet. Keep the engine elsewhere: "
            f"{option('--engine-cache DIR', 'engine_cache=DIR')} (a writable folder; engines of several "
            f"artifacts can share it), or make the artifact folder writable.")

    def store(self, blob: Any, build_seconds: float) -> None:
        """Engine first (any buffer: TensorRT's IHostMemory is written without a copy), sidecar last, each
        atomically: a crash in between leaves no sidecar vouching for the engine."""
        atomic_write_bytes(self.engine, blob)
        atomic_write_json(self.sidecar, {"key": self.key, "engine_sha256": hashlib.sha256(blob).hexdigest(),
                                         "build_seconds": round(build_seconds, 3)})
