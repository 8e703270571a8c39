"""Reading safetensors checkpoints safely (torch-free): file checks, header, identification.

We never unpickle: .pth/.pt/.bin pickles can run arbitrary code when loaded.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import (
    CorruptCheckpointError,
    NotSafetensorsError,
    PickleCheckpointError,
    WeightsNotFoundError,
)
from .zoo import ARCHS, TASKS, ModelInfo, model_for

_PICKLE_SUFFIXES = {".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle"}
_MAX_HEADER = 100 * 1024 * 1024
_HEAD_KEYS = {"conv_pose": "pose", "conv_seg": "seg", "conv_normal": "normal",
              "conv_pointmap": "pointmap", "conv_albedo": "albedo"}


@dataclass
class CheckpointHeader:
    path: Path
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    metadata: dict[str, str]
    file_size: int


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds, read from its keys and shapes alone."""

    path: Path
    model: str | None  # zoo name, None when unrecognised
    task: str | None  # backbone / pose / seg / normal / pointmap / albedo
    size: str | None
    layout: str  # "backbone (bare keys)" or "task (backbone. + decode_head.)"
    dtypes: dict[str, int]  # dtype -> tensor count
    params: int  # elements of all tensors except the RoPE periods buffer
    num_tensors: int
    file_size: int
    problems: list[str] = field(default_factory=list)

    @property
    def dtype(self) -> str:
        return "/".join(sorted(self.dtypes, key=lambda d: -self.dtypes[d]))

    def to_json(self) -> dict:
        return {"path": str(self.path), "model": self.model, "task": self.task, "size": self.size,
                "layout": self.layout, "dtypes": self.dtypes, "params": self.params,
                "num_tensors": self.num_tensors, "file_size": self.file_size, "problems": self.problems}


def check_file(path: str | Path) -> Path:
    """Existing safetensors file, or a typed error that says what to do."""
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsNotFoundError(
            f"Weights file not found: {p}. Pass a local .safetensors path or a Hugging Face "
            f"reference such as hf://facebook/sapiens2-seg-0.4b.")
    if p.is_dir():
        raise WeightsNotFoundError(_folder_message(p))
    with p.open("rb") as f:
        head = f.read(16)
    if _looks_like_pickle(p, head):
        raise PickleCheckpointError(
            f"{p} is a pickle-based PyTorch checkpoint; sapiens-edge never unpickles files (loading a "
            f"pickle can run arbitrary code). Use the official .safetensors release (e.g. "
            f"hf://facebook/sapiens2-pose-0.4b) or convert your own fine-tune once, in a trusted "
            f"environment, with safetensors.torch.save_file(model.state_dict(), 'model.safetensors').")
    if len(head) < 9 or head[8:9] != b"{" or struct.unpack("<Q", head[:8])[0] > _MAX_HEADER:
        raise NotSafetensorsError(
            f"{p} is not a safetensors file (no safetensors header). sapiens-edge loads the official "
            f"Sapiens2 .safetensors files; check that you passed the checkpoint and not another file.")
    return p


def _folder_message(p: Path) -> str:
    """What to pass instead of folder `p`: the checkpoint files in it, or why it holds none."""
    if (p / "manifest.json").is_file():
        return (f"{p} is an exported sapiens-edge artifact, not a checkpoint: pass the .safetensors file it was "
                f"exported from, or run the artifact with `sapiens-edge run {p} IMAGE`.")
    found = sorted(q.name for q in p.glob("*.safetensors"))
    if found:
        return f"{p} is a folder; pass one checkpoint file inside it, e.g. {p / found[0]} (found: {', '.join(found)})."
    return f"{p} is a folder with no .safetensors file in it; pass the checkpoint file itself."


def _looks_like_pickle(p: Path, head: bytes) -> bool:
    if head.startswith(b"PK\x03\x04"):  # torch.save zip container
        return True
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # raw pickle protocol 2-5
        return True
    return p.suffix.lower() in _PICKLE_SUFFIXES and head[8:9] != b"{"


def read_header(path: str | Path) -> CheckpointHeader:
    """Tensor names, shapes and dtypes without reading any tensor data."""
    from safetensors import SafetensorError, safe_open

    p = check_file(path)
    try:
        with safe_open(str(p), framework="numpy") as f:
            keys = list(f.keys())
            shapes, dtypes = {}, {}
            for k in keys:
                sl = f.get_slice(k)
                shapes[k] = tuple(sl.get_shape())
                dtypes[k] = str(sl.get_dtype())
            meta = f.metadata() or {}
    except (SafetensorError, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CorruptCheckpointError(
            f"{p} is a damaged or truncated safetensors file ({exc}). Download it again (an "
            f"interrupted download is the usual cause) and compare its size with the original.") from exc
    return CheckpointHeader(p, shapes, dtypes, dict(meta), p.stat().st_size)


def identify(header: CheckpointHeader) -> CheckpointInfo:
    """Name the zoo model a checkpoint belongs to, from its keys and shapes."""
    shapes = header.shapes
    dt = Counter(header.dtypes.values())
    params = sum(math.prod(s) for k, s in shapes.items() if not k.endswith("rope_embed.periods"))
    task_file = any(k.startswith("backbone.") for k in shapes)
    layout = "task (backbone. + decode_head.)" if task_file else "backbone (bare keys)"
    info = CheckpointInfo(header.path, None, None, None, layout, dict(dt), params, len(shapes),
                          header.file_size)
    prefix = "backbone." if task_file else ""
    cls = shapes.get(prefix + "cls_token")
    if cls is None:
        info.problems.append(f"no '{prefix}cls_token' key: not a Sapiens2 checkpoint")
        return info
    dim = cls[-1]
    depth = len({m.group(1) for k in shapes if (m := re.match(re.escape(prefix) + r"blocks\.(\d+)\.", k))})
    tokenizer = any(k.startswith(prefix + "tokenizer.") for k in shapes)
    size = next((s for s, a in ARCHS.items()
                 if a.embed_dim == dim and a.depth == depth and bool(a.tokenizer_layers) == tokenizer), None)
    if size is None:
        info.problems.append(f"backbone width {dim} / depth {depth} matches no Sapiens2 size")
        return info
    info.size = size
    if not task_file:
        info.task = "backbone"
    else:
        heads = {t for k in shapes for name, t in _HEAD_KEYS.items() if k.startswith(f"decode_head.{name}.")}
        if len(heads) != 1:
            info.problems.append(f"cannot tell the task from the decode_head keys (found {sorted(heads)})")
            return info
        info.task = heads.pop()
        if info.task not in TASKS:
            info.problems.append(f"{info.task} heads are not supported by sapiens-edge (no released checkpoint)")
            return info
    zoo_entry: ModelInfo | None = model_for(size, info.task)
    info.model = zoo_entry.name if zoo_entry else None
    if zoo_entry is None:
        info.problems.append(f"no zoo model for size {size} and task {info.task}")
    return info


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Header-only inspection: which model, which dtype, how many parameters."""
    return identify(read_header(path))
