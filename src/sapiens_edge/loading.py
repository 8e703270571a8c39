"""`load_model`: zoo name + weights -> eval-mode CPU torch module (fp32 unless asked), loaded strictly."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import identify, read_header
from .errors import CheckpointMismatchError, CorruptCheckpointError, RandomWeightsWarning, option
from .hub import resolve_weights
from .models.build import build_model, build_random
from .zoo import ModelInfo, get_model_info

_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def load_model(name: str, weights: str | Path | None = None, *, seed: int = 0,
               dtype: torch.dtype = torch.float32) -> nn.Module:
    """Build zoo model `name` and load `weights` (local .safetensors or hf://...).

    `weights=None` gives a seeded random initialisation and warns (RandomWeightsWarning).
    `dtype`: how the parameters are stored (fp16/bf16 halve a large model's memory; each tensor is
    converted as it is read, so no fp32 copy exists). The RoPE periods stay bf16.
    """
    info = get_model_info(name)
    path = None
    if weights is None:
        warnings.warn(
            f"{info.name}: no weights given, using a seeded random initialisation (seed={seed}); "
            f"outputs are meaningless. Pass {option('--weights FILE', 'weights=...')} "
            + (f"(official: {info.official.ref})" if info.official else "(your fine-tuned .safetensors)"),
            RandomWeightsWarning, stacklevel=2)
        model = build_random(info, seed, dtype)
    else:
        model = build_model(info, "meta")  # nothing allocated: params come from the file
        path = resolve_weights(weights, info)
        load_weights_(model, info, path, dtype)
    model.eval()
    model.requires_grad_(False)
    # Provenance for later stages (predict JSON, export manifests, validation reports).
    model.sapiens_info = info
    model.sapiens_weights = None if weights is None else str(weights)
    model.sapiens_weights_path = None if path is None else str(path)
    model.sapiens_seed = seed if weights is None else None
    return model


def load_reference(name: str, weights: str | Path | None = None, *, seed: int = 0) -> nn.Module:
    """The validation gate's fp32 reference. A checkpoint whose tensors are all stored in bf16 (or all
    in fp16) keeps that storage and computes in fp32 (`models.upcast.compute_in_fp32_`): bit for bit the
    numbers of its fp32 copy, in half the memory (a 5b reference: 10 GB instead of 20)."""
    from .memory import process_rss, require_memory
    from .models.upcast import compute_in_fp32_

    info = get_model_info(name)
    dtype = torch.float32
    if weights is not None:
        path = resolve_weights(weights, info)
        if path.is_file():
            header = read_header(path)
            stored = {header.dtypes[k] for k in header.dtypes if not k.endswith("rope_embed.periods")}
            if stored in ({"BF16"}, {"F16"}):
                dtype = _DTYPES[stored.pop()]
    require_memory(f"loading the PyTorch reference of {info.name}",
                   process_rss() + int(info.params * dtype.itemsize * 1.1), "validate on a machine with more memory")
    model = load_model(name, weights, seed=seed, dtype=dtype)
    return model if dtype == torch.float32 else compute_in_fp32_(model)


def load_weights_(model: nn.Module, info: ModelInfo, path: Path, dtype: torch.dtype = torch.float32) -> None:
    """Strictly load a checkpoint into a (meta-device) model, tensor by tensor.

    Each tensor is read (memory-mapped by safetensors), converted to the parameter's dtype and
    assigned in place of the meta tensor, so peak memory stays near one copy of the weights.
    """
    header = read_header(path)
    found = identify(header)
    if found.model != info.name:
        raise CheckpointMismatchError(_mismatch_message(path, info, found))
    expected = model.state_dict(keep_vars=True)
    _check_shapes(path, info, expected, header.shapes)
    unsupported = sorted(k for k, d in header.dtypes.items() if d not in _DTYPES)
    if unsupported:
        examples = ", ".join(f"{k} ({header.dtypes[k]}, {list(header.shapes[k])})" for k in unsupported[:3])
        raise CheckpointMismatchError(
            f"{path} stores {len(unsupported)} tensor(s) in a dtype sapiens-edge does not load (e.g. {examples}); "
            f"it loads F32, BF16 or F16 tensors. Load the released float checkpoint (quantization happens at "
            f"export, with an int8 recipe), or convert the file once: safetensors.torch.save_file("
            f"{{k: v.float() for k, v in state_dict.items()}}, 'model.safetensors').")
    loaded = _read_tensors(path, expected, dtype)
    model.load_state_dict(loaded, strict=True, assign=True)


def _read_tensors(path: Path, expected: dict[str, torch.Tensor],
                  dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Read each tensor straight from the file into its final `dtype` (periods: bf16) tensor.

    Plain reads instead of a memory map: mapped file pages would count in the process's memory
    next to the fp32 copies (≈1.5-2x the weights); this way peak memory is one fp32 copy of the
    weights plus one stored tensor in flight. safetensors already validated the header.
    """
    import json
    import struct

    out: dict[str, torch.Tensor] = {}
    with open(path, "rb", buffering=0) as f:
        (n,) = struct.unpack("<Q", f.read(8))
        entries = json.loads(f.read(n))
        base = 8 + n
        for key in expected:
            entry = entries[key]
            stored = _DTYPES[entry["dtype"]]
            want = torch.bfloat16 if key.endswith("rope_embed.periods") else dtype
            start, end = entry["data_offsets"]
            buf = torch.empty(entry["shape"], dtype=stored)
            f.seek(base + start)
            view = memoryview(buf.view(-1).view(torch.uint8).numpy()) if buf.numel() else memoryview(b"")
            if f.readinto(view) != end - start:
                raise CorruptCheckpointError(f"{path}: tensor {key} is cut short; download the file again.")
            out[key] = buf if stored == want else buf.to(want)
    return out


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
            f". sapiens-edge loads Sapiens2 checkpoints strictly: a fine-tune must keep the released "
            f"architecture and key names, so save exactly the model's state_dict (`sapiens-edge inspect {path}` "
            f"shows what the file holds).")


def _mismatch_message(path: Path, info: ModelInfo, found) -> str:
    if found.model is None:
        why = "; ".join(found.problems) or "unrecognised keys"
        return (f"{path} is not a checkpoint for {info.name}: {why}. Run `sapiens-edge inspect {path}` "
                f"to see what it holds.")
    return (f"{path} holds {found.model} ({found.params:,} parameters, {found.dtype}), not {info.name}. "
            f"Load it as {found.model!r}: " + option(f"`sapiens-edge predict {found.model} --weights {path} ...`",
                                                     f"load_model({found.model!r}, weights=...)") + ".")

