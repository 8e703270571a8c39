"""Key sets, shapes and parameter counts of every zoo model, built on the meta device."""

from __future__ import annotations

import pytest
import torch

import sapiens_edge
from sapiens_edge.errors import SapiensEdgeError, UnknownModelError
from sapiens_edge.models import build_model
from sapiens_edge.zoo import MODELS, get_model_info

# Spec section 9 item 1 and table 4.8 (state_dict keys incl. the RoPE periods buffer).
KEY_COUNTS = {
    "sapiens2-0.1b": 210, "sapiens2-0.4b": 414, "sapiens2-0.8b": 550, "sapiens2-1b": 686,
    "sapiens2-1b-4k": 744, "sapiens2-5b": 958,
    **{f"sapiens2-{s}-pose": n for s, n in [("0.4b", 424), ("0.8b", 560), ("1b", 696), ("5b", 968)]},
    **{f"sapiens2-{s}-seg": n for s, n in [("0.4b", 424), ("0.8b", 560), ("1b", 696), ("5b", 968)]},
    **{f"sapiens2-{s}-normal": n for s, n in [("0.4b", 432), ("0.8b", 568), ("1b", 704), ("5b", 976)]},
    **{f"sapiens2-{s}-pointmap": n for s, n in [("0.4b", 444), ("0.8b", 580), ("1b", 716), ("5b", 988)]},
}
# Spec tables 1.2 / 4.8, typed here independently of the zoo table.
SPEC_PARAMS = {
    "sapiens2-0.1b": 113_993_472, "sapiens2-0.4b": 395_450_368, "sapiens2-1b-4k": 1_606_588_928,
    "sapiens2-5b": 5_066_902_976, "sapiens2-0.4b-pose": 425_677_364, "sapiens2-1b-pose": 1_519_780_148,
    "sapiens2-0.8b-seg": 827_531_997, "sapiens2-5b-normal": 5_316_358_275,
    "sapiens2-0.4b-pointmap": 528_675_364, "sapiens2-5b-pointmap": 5_348_345_860,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_keys_and_params_on_meta(name):
    info = MODELS[name]
    model = build_model(info, "meta")
    sd = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == info.params
    if name in SPEC_PARAMS:
        assert info.params == SPEC_PARAMS[name]
    if name in KEY_COUNTS:
        assert len(sd) == KEY_COUNTS[name]
    prefix = "" if info.task == "backbone" else "backbone."
    c, d = info.arch.embed_dim, info.arch.head_dim
    assert sd[prefix + "rope_embed.periods"].dtype == torch.bfloat16
    assert sd[prefix + "rope_embed.periods"].shape == (d // 4,)
    assert sd[prefix + "patch_embed.projection.weight"].shape == (c, 3, 16, 16)
    assert sd[prefix + "storage_tokens"].shape == (1, 8, c)
    assert sd[prefix + "ln1.weight"].shape == (c,)
    assert sd[prefix + "blocks.0.ffn.w12.weight"].shape == (8 * c, c)
    assert sd[prefix + "blocks.0.attn.gamma.weight"].shape == (c,)
    assert not any("gamma2" in k or "running_mean" in k for k in sd)
    if info.arch.depth > 16:
        assert sd[prefix + "blocks.8.attn.wk.weight"].shape == (c // 2, c)  # GQA
        assert sd[prefix + f"blocks.{info.arch.depth - 8}.attn.wk.weight"].shape == (c, c)
    if info.task != "backbone":
        assert all(k.startswith(("backbone.", "decode_head.")) for k in sd)
    if info.task == "pointmap":
        assert sd["decode_head.scale_final_layer.1.weight"].shape == (512, 6144)
        assert sd["decode_head.scale_final_layer.5.weight"].shape == (1, 128)


@pytest.mark.parametrize("name,shape", [
    ("sapiens2-0.4b", (1, 1024, 64, 48)),
    ("sapiens2-1b-pose", (1, 308, 256, 192)),
    ("sapiens2-0.4b-seg", (1, 29, 1024, 768)),
    ("sapiens2-5b-normal", (1, 3, 1024, 768)),
])
def test_output_shapes_at_1024x768_on_meta(name, shape):
    model = build_model(get_model_info(name), "meta").eval()
    out = model(torch.empty(1, 3, 1024, 768, device="meta"))
    assert tuple(out.shape) == shape


def test_pointmap_outputs_and_refuses_other_sizes():
    model = build_model(get_model_info("sapiens2-0.4b-pointmap"), "meta").eval()
    pm, scale = model(torch.empty(2, 3, 1024, 768, device="meta"))
    assert tuple(pm.shape) == (2, 3, 1024, 768) and tuple(scale.shape) == (2, 1)
    with pytest.raises(SapiensEdgeError, match="1024x768 only"):
        model(torch.empty(1, 3, 512, 384, device="meta"))


def test_1b_4k_shapes_on_meta():
    model = build_model(get_model_info("sapiens2-1b-4k"), "meta").eval()
    assert tuple(model(torch.empty(1, 3, 4096, 3072, device="meta")).shape) == (1, 1536, 64, 48)
    with pytest.raises(SapiensEdgeError, match="divisible by 64"):
        model(torch.empty(1, 3, 4096 + 16, 3072, device="meta"))


def test_list_models_and_official_checkpoints():
    names = [m.name for m in sapiens_edge.list_models()]
    assert len(names) == 26 and "sapiens2-1b-4k" in names and "sapiens2-0.1b-seg" in names
    assert get_model_info("sapiens2-0.1b-seg").official is None
    assert "0.4b is the smallest official task model" in get_model_info("sapiens2-0.1b-pose").notes[0]
    ck = get_model_info("sapiens2-0.4b-seg").official
    assert (ck.repo_id, ck.filename) == ("facebook/sapiens2-seg-0.4b", "sapiens2_0.4b_seg.safetensors")
    assert get_model_info("sapiens2-1b-4k").official.filename == "sapiens2_1b_4k_pretrain.safetensors"
    official_tasks = sapiens_edge.list_models(task="seg", official_only=True)
    assert [m.size for m in official_tasks] == ["0.4b", "0.8b", "1b", "5b"]


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"Did you mean 'sapiens2-0\.4b-seg'"):
        get_model_info("sapiens2-0.4b-sge")
    assert get_model_info("0.4b-seg").name == "sapiens2-0.4b-seg"
