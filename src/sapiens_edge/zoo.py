"""The model zoo: every Sapiens2 model sapiens-edge builds, as data. Torch-free.

Architecture numbers follow the spec (shared docs, sections 1 and 4); official checkpoint
locations follow spec table 1.2 (Hugging Face repos `facebook/sapiens2-<task>-<size>`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .errors import UnknownModelError

TASKS = ("pose", "seg", "normal", "pointmap")
SIZES = ("0.1b", "0.4b", "0.8b", "1b", "1b-4k", "5b")
HF_ORG = "facebook"


@dataclass(frozen=True)
class BackboneArch:
    size: str
    embed_dim: int
    depth: int
    num_heads: int
    tokenizer_layers: int = 0  # > 0 only for 1B-4K
    default_input_hw: tuple[int, int] = (1024, 768)
    num_storage_tokens: int = 8
    window_size: int = 4
    rope_base: float = 100.0
    full_attention_blocks: int = 8  # blocks at each end with full MHA (8 in every released size)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def ffn_hidden(self) -> int:
        return 4 * self.embed_dim

    def kv_heads(self, block: int) -> int:
        """Blocks 0-7 and the last 8 are full MHA; the middle ones are GQA with h/2 kv heads."""
        edge = self.full_attention_blocks
        full = block < edge or block >= self.depth - edge
        return self.num_heads if full else self.num_heads // 2


ARCHS: dict[str, BackboneArch] = {
    "0.1b": BackboneArch("0.1b", 768, 12, 12),
    "0.4b": BackboneArch("0.4b", 1024, 24, 16),
    "0.8b": BackboneArch("0.8b", 1280, 32, 16),
    "1b": BackboneArch("1b", 1536, 40, 24),
    "1b-4k": BackboneArch("1b-4k", 1536, 40, 24, tokenizer_layers=4, default_input_hw=(4096, 3072)),
    "5b": BackboneArch("5b", 2432, 56, 32),
}


@dataclass(frozen=True)
class HeadConfig:
    """Channel widths of a task head (spec section 4). Unused fields stay empty."""

    task: str
    deconv: tuple[int, ...] = ()  # pose / seg: ConvTranspose2d(k4, s2) units
    conv: tuple[int, ...] = ()  # pose: 1x1 units; normal/pointmap: 3x3 units; seg: 1x1 units
    upsample: tuple[int, ...] = ()  # normal / pointmap: conv + PixelShuffle(2) units
    scale_conv: tuple[int, ...] = ()  # pointmap scale branch: 1x1 stride-2 units
    scale_mlp: tuple[int, ...] = ()  # pointmap scale branch: Linear widths (first = flatten size)
    out_channels: int = 0


def _head(task: str, size: str) -> HeadConfig:
    # 0.1b has no released heads; its task models use the 0.4b widths (user fine-tunes).
    if task == "pose":
        if size == "1b":
            return HeadConfig("pose", deconv=(1536, 1024), conv=(768, 512, 256), out_channels=308)
        return HeadConfig("pose", deconv=(1024, 768), conv=(512, 512, 256), out_channels=308)
    if task == "seg":
        return HeadConfig("seg", deconv=(512, 256, 128, 64), conv=(64, 64), out_channels=29)
    if task == "normal":
        if size == "5b":
            return HeadConfig("normal", upsample=(1536, 768, 512, 256), conv=(128, 64, 32), out_channels=3)
        return HeadConfig("normal", upsample=(768, 512, 256, 128), conv=(64, 32, 16), out_channels=3)
    if task == "pointmap":
        up, conv = ((1536, 768, 768, 768), (128, 64, 32)) if size == "5b" else (
            (1536, 768, 512, 256), (64, 32, 16))
        return HeadConfig("pointmap", upsample=up, conv=conv, scale_conv=(1536, 512, 128),
                          scale_mlp=(6144, 512, 128, 1), out_channels=3)
    raise ValueError(task)


@dataclass(frozen=True)
class HubCheckpoint:
    repo_id: str
    filename: str

    @property
    def ref(self) -> str:
        return f"hf://{self.repo_id}/{self.filename}"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    size: str
    task: str  # "backbone" or one of TASKS
    arch: BackboneArch
    head: HeadConfig | None
    official: HubCheckpoint | None
    params: int  # trainable parameters (spec tables 1.2 / 4.8; 0.1b heads counted by our builder)
    notes: tuple[str, ...] = field(default=())

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.arch.default_input_hw

    @property
    def fixed_input_size(self) -> bool:
        """Pointmap's scale branch is tied to the 64x48 patch grid (spec 8, item 10)."""
        return self.task == "pointmap"


# Parameter counts: spec tables 1.2 and 4.8 (verified upstream counts); the 0.1b task rows
# are our own builder's counts (no upstream model exists), pinned by tests.
_PARAMS = {
    "0.1b": 113_993_472, "0.4b": 395_450_368, "0.8b": 814_283_520, "1b": 1_455_474_176,
    "1b-4k": 1_606_588_928, "5b": 5_066_902_976,
    "0.4b-pose": 425_677_364, "0.8b-pose": 848_704_820, "1b-pose": 1_519_780_148,
    "5b-pose": 5_120_198_644,
    "0.4b-seg": 406_601_693, "0.8b-seg": 827_531_997, "1b-seg": 1_470_819_805, "5b-seg": 5_089_588_637,
    "0.4b-normal": 453_357_731, "0.8b-normal": 884_577_443, "1b-normal": 1_539_334_307,
    "5b-normal": 5_316_358_275,
    "0.4b-pointmap": 528_675_364, "0.8b-pointmap": 967_366_180, "1b-pointmap": 1_629_594_148,
    "5b-pointmap": 5_348_345_860,
    "0.1b-pose": 140_026_164, "0.1b-seg": 123_047_645, "0.1b-normal": 160_693_923,
    "0.1b-pointmap": 228_540_452,
}


def _build_zoo() -> dict[str, ModelInfo]:
    zoo: dict[str, ModelInfo] = {}
    for size, arch in ARCHS.items():
        ckpt_size = size.replace("-", "_")
        zoo[f"sapiens2-{size}"] = ModelInfo(
            name=f"sapiens2-{size}", size=size, task="backbone", arch=arch, head=None,
            official=HubCheckpoint(f"{HF_ORG}/sapiens2-pretrain-{size}",
                                   f"sapiens2_{ckpt_size}_pretrain.safetensors"),
            params=_PARAMS[size],
            notes=("pretrained backbone: returns the (B, C, H/16, W/16) feature map",),
        )
    for size in ("0.1b", "0.4b", "0.8b", "1b", "5b"):
        for task in TASKS:
            official = None if size == "0.1b" else HubCheckpoint(
                f"{HF_ORG}/sapiens2-{task}-{size}", f"sapiens2_{size}_{task}.safetensors")
            notes = ("no official checkpoint: Meta released no 0.1b task heads; use your own "
                     "fine-tuned weights (random init otherwise). 0.4b is the smallest official "
                     "task model.",) if official is None else ()
            zoo[f"sapiens2-{size}-{task}"] = ModelInfo(
                name=f"sapiens2-{size}-{task}", size=size, task=task, arch=ARCHS[size],
                head=_head(task, size), official=official, params=_PARAMS[f"{size}-{task}"],
                notes=notes,
            )
    return zoo


MODELS: dict[str, ModelInfo] = _build_zoo()


def list_models(task: str | None = None, official_only: bool = False) -> list[ModelInfo]:
    """All zoo entries (optionally one task, or only those with an official checkpoint)."""
    out = list(MODELS.values())
    if task is not None:
        out = [m for m in out if m.task == task]
    if official_only:
        out = [m for m in out if m.official is not None]
    return out


def get_model_info(name: str) -> ModelInfo:
    """Look a model up by name; unknown names raise UnknownModelError with close matches."""
    key = name.strip().lower()
    if key in MODELS:
        return MODELS[key]
    if f"sapiens2-{key}" in MODELS:  # allow "0.4b-seg"
        return MODELS[f"sapiens2-{key}"]
    close = difflib.get_close_matches(key, MODELS, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model {name!r}.{hint} Run `sapiens-edge models` to list all "
        f"{len(MODELS)} models (names look like 'sapiens2-0.4b-seg')."
    )


def model_for(size: str, task: str) -> ModelInfo | None:
    name = f"sapiens2-{size}" if task == "backbone" else f"sapiens2-{size}-{task}"
    return MODELS.get(name)
