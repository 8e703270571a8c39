"""`load_model`: zoo name + weights -> eval-mode fp32 CPU torch module, loaded strictly."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import identify, read_header
from .errors import CheckpointMismatchError, RandomWeightsWarning
from .hub import resolve_weights
from .models.build import build_model, random_init_
from .zoo import ModelInfo, get_model_info

_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def load_model(name: str, weights: str | Path | None = None, *, seed: int = 0) -> nn.Module:
    """Build zoo model `name` and load `weights` (local .safetensors or hf://...).

    `weights=None` gives a seeded random initialisation and warns (RandomWeightsWarning).
    """
    info = get_model_info(name)
    if weights is None:
        warnings.warn(
            f"{info.name}: no weights given, using a seeded random initialisation (seed={seed}); "
            f"outputs are meaningless. Pass weights=... "
            + (f"(official: {info.official.ref})" if info.official else "(your fine-tuned .safetensors)"),
            RandomWeightsWarning, stacklevel=2)
        model = build_model(info, "cpu")
        random_init_(model, seed)
    else:
        model = build_model(info, "meta")  # nothing allocated: params come from the file
        load_weights_(model, info, resolve_weights(weights, info))
    model.eval()
    model.requires_grad_(False)
    model.sapiens_info = info  # so later stages (export, validate) know what they hold
    return model


def load_weights_(model: nn.Module, info: ModelInfo, path: Path) -> None:
    """Strictly load a checkpoint into a (meta-device) model, tensor by tensor.

    Each tensor is read (memory-mapped by safetensors), converted to the parameter's dtype and
    assigned in place of the meta tensor, so peak memory stays near one copy of the weights.
    """
    from safetensors import safe_open

    header = read_header(path)
    found = identify(header)
    if found.model != info.name:
        raise CheckpointMismatchError(_mismatch_message(path, info, found))
    expected = model.state_dict(keep_vars=True)
    _check_shapes(path, info, expected, header.shapes)
    unsupported = sorted({d for d in header.dtypes.values() if d not in _DTYPES})
    if unsupported:
        raise CheckpointMismatchError(
            f"{path} stores tensors as {unsupported}; sapiens-edge loads fp32, bf16 or fp16 files.")
    loaded: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key, target in expected.items():
            dtype = torch.bfloat16 if key.endswith("rope_embed.periods") else torch.float32
            t = f.get_tensor(key)
            loaded[key] = t if t.dtype == dtype else t.to(dtype)
    model.load_state_dict(loaded, strict=True, assign=True)


def _check_shapes(path: Path, info: ModelInfo, expected: dict[str, torch.Tensor],
                  shapes: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [f"{k}: file {shapes[k]} vs model {tuple(v.shape)}" for k, v in expected.items()
             if k in shapes and tuple(v.shape) != tuple(shapes[k])]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[:3]})")
        raise CheckpointMismatchError(
            f"{path} does not match {info.name} exactly: " + "; ".join(parts) +
            ". sapiens-edge loads Sapiens2 checkpoints strictly; a fine-tune must keep the released "
            "architecture and key names.")


def _mismatch_message(path: Path, info: ModelInfo, found) -> str:
    if found.model is None:
        why = "; ".join(found.problems) or "unrecognised keys"
        return (f"{path} is not a checkpoint for {info.name}: {why}. Run `sapiens-edge inspect {path}` "
                f"to see what it holds.")
    return (f"{path} holds {found.model} ({found.params:,} parameters, {found.dtype}), not {info.name}. "
            f"Load it as {found.model!r}: load_model({found.model!r}, weights=...) or "
            f"`sapiens-edge predict {found.model} --weights {path} ...`.")

