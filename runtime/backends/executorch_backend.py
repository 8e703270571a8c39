"""ExecuTorch backend: runs `executorch` artifacts (.pte) through ExecuTorch's Python runtime.

The runtime memory-maps the program file (its default data loader), so the weights of an XNNPACK
program are paged in from the file rather than copied. ExecuTorch's Python runtime exchanges
`torch.Tensor` values, so this backend needs torch (the `executorch` extra brings it); no
torch-free Python runtime for .pte files is published for our ExecuTorch version
(see docs/targets/executorch.md#runtime).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import ArtifactError, OptionError, PlatformUnavailableError, require

NAME = "executorch"
OPTIONS = ("threads",)


def open(manifest: Any, artifact_dir: Path, *, threads: int | None = None, **options: Any) -> ExecuTorchSession:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise OptionError(f"The executorch backend has no option(s) {', '.join(unknown)}; it takes: "
                               f"{', '.join(OPTIONS)}.")
    return ExecuTorchSession(manifest, Path(artifact_dir), threads=threads)


class ExecuTorchSession:
    def __init__(self, manifest: Any, artifact_dir: Path, *, threads: int | None = None) -> None:
        require("executorch", "executorch", "Running ExecuTorch (.pte) artifacts")
        torch = require("torch", "executorch", "ExecuTorch's Python runtime (it exchanges torch tensors)")
        from executorch.runtime import Runtime

        self._torch = torch
        self.manifest = manifest
        delegate = manifest.export_options.get("delegation", {}).get("delegate")
        if delegate == "CoreMLBackend" and sys.platform != "darwin":
            raise PlatformUnavailableError(
                f"{manifest.recipe} programs use the Core ML delegate, which runs on Apple devices only (macOS 14+ / "
                f"iOS 17+, ExecuTorch with Core ML). Run this artifact there, or export an executorch-xnnpack-* recipe "
                f"for this machine.")
        self.path = artifact_dir / manifest.model_file
        if not self.path.is_file():
            raise ArtifactError(f"{self.path} is missing; re-export the artifact.")
        self.threads = _set_threads(threads)
        try:
            self.program = Runtime.get().load_program(self.path)
            self.method = self.program.load_method("forward")
        except Exception as exc:  # the runtime raises RuntimeError/ValueError for damaged programs
            raise ArtifactError(f"ExecuTorch could not load {self.path}: {exc}. The file is damaged or was written "
                                f"by an incompatible ExecuTorch; re-export it.") from exc

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        tensors = [torch.from_numpy(np.ascontiguousarray(inputs[spec.name])) for spec in self.manifest.inputs]
        outputs = self.method.execute(tensors)
        return [o.detach().numpy().copy() for o in outputs]

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        from executorch.extension.pybindings import portable_lib

        delegation = self.manifest.export_options.get("delegation", {})
        threads = self.threads or portable_lib._threadpool_get_thread_count()
        return {"backend": NAME, "version": version("executorch"), "threads": threads,
                "delegate": delegation.get("delegate"),
                "summary": f"ExecuTorch {version('executorch')} ({delegation.get('delegate', 'no delegate')}, "
                           f"{threads} threads)"}

    def close(self) -> None:
        self.method = None
        self.program = None


def _set_threads(threads: int | None) -> int | None:
    """Size ExecuTorch's shared threadpool (XNNPACK's workers); None keeps its default."""
    if threads is None:
        return None
    from executorch.extension.pybindings import portable_lib

    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    if reset is None:
        raise OptionError("This ExecuTorch build cannot set its thread count; leave --threads out.")
    reset(int(threads))
    return int(threads)
