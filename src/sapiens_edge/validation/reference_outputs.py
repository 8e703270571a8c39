"""The gate's PyTorch reference as a function of the input: run alongside the artifact (the default), or
run first on every input, kept on disk and freed before the artifact opens ("reference first"), so the
peak is the larger of the two instead of their sum: how a 5b (10 GB of bf16 reference weights, 10 GB of
fp16 artifact weights) is gated on a 24 GiB machine."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from sapiens_edge.manifest import read_manifest

ModelFn = Callable[[np.ndarray], list[np.ndarray]]


def _key(x: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


class LiveReference:
    """Runs the reference model on each call; `run(x)` -> (outputs, seconds)."""

    def __init__(self, model_fn: ModelFn):
        self.model_fn = model_fn

    def run(self, x: np.ndarray) -> tuple[list[np.ndarray], float]:
        t0 = time.perf_counter()
        out = list(self.model_fn(x))
        return out, time.perf_counter() - t0


class StoredReference:
    """The reference's outputs for `inputs`, computed once by `model_fn` and written to `folder` (.npy);
    `run(x)` reads them back by the input's content. The caller frees the model afterwards."""

    def __init__(self, model_fn: ModelFn, inputs: Iterable[np.ndarray], folder: Path,
                 progress: Callable[[str], None] = lambda _: None):
        self.folder = Path(folder)
        self._stored: dict[str, tuple[list[Path], float]] = {}
        for k, x in enumerate(inputs, 1):
            key = _key(x)
            if key in self._stored:
                continue
            t0 = time.perf_counter()
            outs = list(model_fn(x))
            seconds = time.perf_counter() - t0
            paths = []
            for j, out in enumerate(outs):
                path = self.folder / f"{key}-{j}.npy"
                np.save(path, np.asarray(out))
                paths.append(path)
            self._stored[key] = (paths, seconds)
            progress(f"reference output {k} computed ({seconds:.1f} s)")

    def run(self, x: np.ndarray) -> tuple[list[np.ndarray], float]:
        key = _key(x)
        if key not in self._stored:
            raise RuntimeError("The gate asked for a reference output it did not compute first (a bug).")
        paths, seconds = self._stored[key]
        return [np.load(p) for p in paths], seconds


def too_big_together(artifact_dir: str | Path, weights: str | Path | None) -> bool:
    """Whether the reference and the artifact would not fit in the memory available together: the
    reference's weights (fp32, or as stored in a bf16/fp16 checkpoint) plus the artifact's files 2.5x
    (ONNX Runtime's optimised session of an fp16 model holds 2.2x its file on x86: fp32 copies)."""
    from sapiens_edge.memory import available_bytes

    available = available_bytes()
    reference = reference_bytes(artifact_dir, weights)
    if available is None or reference is None:
        return False
    manifest = read_manifest(artifact_dir, verify=False)
    files = sum((Path(artifact_dir) / f).stat().st_size for f in manifest.files if f.startswith("model."))
    return reference + 2.5 * files > available


def reference_bytes(artifact_dir: str | Path, weights: str | Path | None) -> int | None:
    """The memory the reference's weights take (fp32, or as stored in a bf16/fp16 checkpoint, +10 %); None when
    the artifact's model is unknown (runtime.load reports an unreadable artifact properly)."""
    from sapiens_edge.checkpoint import read_header
    from sapiens_edge.errors import SapiensEdgeError, UnknownModelError
    from sapiens_edge.zoo import get_model_info

    try:
        params = get_model_info(read_manifest(artifact_dir, verify=False).model).params
    except (SapiensEdgeError, UnknownModelError):
        return None
    itemsize = 4
    path = Path(str(weights)) if weights is not None else None
    if (path is not None and path.is_file() and path.suffix == ".safetensors"
            and {d for k, d in read_header(path).dtypes.items() if not k.endswith("periods")} <= {"BF16", "F16"}):
        itemsize = 2
    return int(params * itemsize * 1.1)
