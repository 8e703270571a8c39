"""Checkpoint loading through the user-facing path: load_model / inspect on files tests write."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import sapiens_edge
from sapiens_edge.errors import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    NotSafetensorsError,
    PickleCheckpointError,
    RandomWeightsWarning,
    SapiensEdgeError,
    WeightsNotFoundError,
)
from sapiens_edge.hub import resolve_weights


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, cast=None) -> None:
    sb = b.state_dict()
    for k, v in a.state_dict().items():
        want = v.to(cast).to(v.dtype) if cast is not None and v.dtype == torch.float32 else v
        assert sb[k].dtype == v.dtype, k
        assert torch.equal(sb[k], want), k


@pytest.mark.slow
def test_fp32_round_trip_is_exact(seg01):
    model, files = seg01
    loaded = sapiens_edge.load_model("sapiens2-0.1b-seg", files["fp32"])
    assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    _same_weights(model, loaded)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


@pytest.mark.slow
def test_bf16_file_loads_into_fp32_params(seg01):
    model, files = seg01
    loaded = sapiens_edge.load_model("sapiens2-0.1b-seg", str(files["bf16"]))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert loaded.backbone.rope_embed.periods.dtype == torch.bfloat16
    _same_weights(model, loaded, cast=torch.bfloat16)


@pytest.mark.slow
def test_fp16_and_bare_backbone_file(seg01, tmp_path):
    model, files = seg01
    bb = sapiens_edge.load_model("sapiens2-0.1b", files["backbone"])
    assert torch.equal(bb.patch_embed.projection.weight,
                       model.backbone.patch_embed.projection.weight.to(torch.bfloat16).float())
    path = tmp_path / "fp16.safetensors"
    save_file({k: v.half() if v.dtype == torch.float32 else v for k, v in bb.state_dict().items()}, str(path))
    assert sapiens_edge.load_model("sapiens2-0.1b", path).ln1.weight.dtype == torch.float32


@pytest.mark.slow
def test_wrong_task_and_size_name_the_right_model(seg01):
    _, files = seg01
    with pytest.raises(CheckpointMismatchError, match=r"holds sapiens2-0\.1b-seg .* not sapiens2-0\.1b-pose"):
        sapiens_edge.load_model("sapiens2-0.1b-pose", files["bf16"])
    with pytest.raises(CheckpointMismatchError, match=r"holds sapiens2-0\.1b \(.*not sapiens2-0\.4b\b"):
        sapiens_edge.load_model("sapiens2-0.4b", files["backbone"])


@pytest.mark.slow
def test_missing_key_is_reported(seg01, tmp_path):
    _, files = seg01
    from safetensors import safe_open

    with safe_open(str(files["backbone"]), "pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys() if k != "blocks.3.ffn.w3.bias"}  # noqa: SIM118
    path = tmp_path / "partial.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"1 missing .*blocks\.3\.ffn\.w3\.bias"):
        sapiens_edge.load_model("sapiens2-0.1b", path)


@pytest.mark.slow
def test_inspect_names_model_dtype_and_params(seg01):
    _, files = seg01
    info = sapiens_edge.inspect_checkpoint(files["bf16"])
    assert (info.model, info.task, info.size, info.dtype) == ("sapiens2-0.1b-seg", "seg", "0.1b", "BF16")
    assert info.params == 123_047_645 and info.num_tensors == 220
    bb = sapiens_edge.inspect_checkpoint(files["backbone"])
    assert bb.model == "sapiens2-0.1b" and bb.params == 113_993_472 and "bare" in bb.layout


def test_random_init_warns_and_is_seeded():
    with pytest.warns(RandomWeightsWarning, match="random initialisation"):
        a = sapiens_edge.load_model("sapiens2-0.1b", seed=7)
    with pytest.warns(RandomWeightsWarning):
        b = sapiens_edge.load_model("sapiens2-0.1b", seed=7)
    assert torch.equal(a.blocks[5].attn.wq.weight, b.blocks[5].attn.wq.weight)
    assert a.blocks[0].attn.wq.weight.std() > 0.01


# --- bad input -------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        sapiens_edge.load_model("sapiens2-0.1b", tmp_path / "nope.safetensors")


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(NotSafetensorsError, match="not a safetensors file"):
        sapiens_edge.load_model("sapiens2-0.1b", path)


def test_truncated_file(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"cls_token": torch.zeros(1, 1, 768), "x": torch.zeros(1000)}, str(good))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError, match="damaged or truncated"):
        sapiens_edge.inspect_checkpoint(bad)
    with pytest.raises(CorruptCheckpointError):
        sapiens_edge.load_model("sapiens2-0.1b", bad)


class _Boom:
    def __reduce__(self):
        return (os.mkdir, (os.environ["SAPIENS_EDGE_TEST_MARKER"],))


@pytest.mark.parametrize("suffix,zip_format", [(".pth", True), (".bin", False), (".safetensors", False)])
def test_pickle_checkpoints_are_refused_without_unpickling(tmp_path, monkeypatch, suffix, zip_format):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("SAPIENS_EDGE_TEST_MARKER", str(marker))
    path = tmp_path / f"model{suffix}"
    if zip_format:
        torch.save({"evil": _Boom()}, path)
    else:
        path.write_bytes(pickle.dumps({"evil": _Boom()}, protocol=4))
    with pytest.raises(PickleCheckpointError, match="never unpickles"):
        sapiens_edge.load_model("sapiens2-0.1b", path)
    assert not marker.exists()


def test_unrecognised_safetensors(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(CheckpointMismatchError, match="not a Sapiens2 checkpoint"):
        sapiens_edge.load_model("sapiens2-0.1b", path)


# --- checkpoints that do not fit the model (headers of full-size files, data left sparse) -----

_ITEMSIZE = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I8": 1}


def _sparse_checkpoint(path, tensors: dict[str, tuple[str, tuple[int, ...]]]):
    """A valid safetensors file with these (dtype, shape) tensors, all zeros, written as a sparse file:
    a full-size 0.1b header costs no disk, and these checks must refuse before reading any data."""
    import json
    import math
    import struct

    header, offset = {}, 0
    for key, (dtype, shape) in tensors.items():
        size = math.prod(shape) * _ITEMSIZE[dtype]
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)
    return path


@pytest.fixture(scope="module")
def backbone_tensors() -> dict[str, tuple[str, tuple[int, ...]]]:
    """sapiens2-0.1b's state_dict as (dtype, shape), from a meta-device model (nothing allocated)."""
    from sapiens_edge.models.build import build_model
    from sapiens_edge.zoo import get_model_info

    sd = build_model(get_model_info("sapiens2-0.1b"), "meta").state_dict()
    return {k: ("BF16" if v.dtype == torch.bfloat16 else "F32", tuple(v.shape)) for k, v in sd.items()}


def _load_refused(path) -> str:
    with pytest.raises(CheckpointMismatchError) as err:
        sapiens_edge.load_model("sapiens2-0.1b", path)
    return str(err.value)


def test_wrong_shape_names_tensor_and_both_shapes(backbone_tensors, tmp_path):
    tensors = dict(backbone_tensors)
    dtype, shape = tensors["blocks.3.ffn.w3.bias"]
    tensors["blocks.3.ffn.w3.bias"] = (dtype, (shape[0] + 1,))
    msg = _load_refused(_sparse_checkpoint(tmp_path / "wide.safetensors", tensors))
    assert f"blocks.3.ffn.w3.bias: file ({shape[0] + 1},) vs model ({shape[0]},)" in msg
    assert "1 with other shapes" in msg and "sapiens-edge inspect" in msg


def test_extra_keys_are_named(backbone_tensors, tmp_path):
    tensors = {**backbone_tensors, "ema.blocks.0.weight": ("F32", (4,)), "optimizer_step": ("F32", (1,))}
    msg = _load_refused(_sparse_checkpoint(tmp_path / "extra.safetensors", tensors))
    assert "2 unexpected" in msg and "ema.blocks.0.weight" in msg and "optimizer_step" in msg
    assert "save exactly the model's state_dict" in msg


@pytest.mark.parametrize("dtype", ["F64", "I8"])
def test_unsupported_dtype_names_the_tensors_and_the_fix(backbone_tensors, tmp_path, dtype):
    tensors = dict(backbone_tensors)
    shape = tensors["blocks.0.attn.wq.weight"][1]
    tensors["blocks.0.attn.wq.weight"] = (dtype, shape)
    msg = _load_refused(_sparse_checkpoint(tmp_path / f"{dtype}.safetensors", tensors))
    assert "1 tensor(s)" in msg and f"blocks.0.attn.wq.weight ({dtype}, {list(shape)})" in msg
    assert "F32, BF16 or F16" in msg and "v.float()" in msg


def test_folder_as_weights_names_the_files_inside(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    for name in ("b.safetensors", "a.safetensors"):
        save_file({"x": torch.zeros(1)}, str(folder / name))
    with pytest.raises(WeightsNotFoundError) as err:
        sapiens_edge.load_model("sapiens2-0.1b", folder)
    assert f"{folder} is a folder" in str(err.value) and "found: a.safetensors, b.safetensors" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"no \.safetensors file in it; pass the checkpoint file itself"):
        sapiens_edge.inspect_checkpoint(empty)
    (empty / "manifest.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="exported sapiens-edge artifact, not a checkpoint"):
        sapiens_edge.load_model("sapiens2-0.1b", empty)


def test_errors_share_one_base_class():
    for exc in (CheckpointMismatchError, CorruptCheckpointError, PickleCheckpointError, WeightsNotFoundError):
        assert issubclass(exc, SapiensEdgeError)


# --- Hugging Face references (offline, pre-filled cache) --------------------------------------

def _fill_cache(cache, repo: str, filename: str, src) -> None:
    rev = "0123456789abcdef0123456789abcdef01234567"
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(rev)
    snap = base / "snapshots" / rev
    snap.mkdir(parents=True)
    os.link(src, snap / filename)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.mark.slow
def test_hf_reference_from_offline_cache(seg01, offline_hub):
    model, files = seg01
    _fill_cache(offline_hub, "facebook/sapiens2-pretrain-0.1b", "sapiens2_0.1b_pretrain.safetensors",
                files["backbone"])
    path = resolve_weights("hf://facebook/sapiens2-pretrain-0.1b")
    assert path.name == "sapiens2_0.1b_pretrain.safetensors" and path.exists()
    loaded = sapiens_edge.load_model("sapiens2-0.1b", "hf://facebook/sapiens2-pretrain-0.1b")
    assert torch.equal(loaded.ln1.weight, model.backbone.ln1.weight.to(torch.bfloat16).float())
    explicit = resolve_weights("hf://facebook/sapiens2-pretrain-0.1b/sapiens2_0.1b_pretrain.safetensors@main")
    assert explicit == path


def test_hf_reference_not_cached_offline(offline_hub):
    with pytest.raises(WeightsNotFoundError, match="not in the local Hugging Face cache"):
        resolve_weights("hf://facebook/sapiens2-seg-0.4b")
    with pytest.raises(WeightsNotFoundError, match="file name is unknown"):
        resolve_weights("hf://someone/else")
