"""Reduced-precision storage: seeded random models built straight into fp16/bf16 (no fp32 copy), and the
fp32-compute wrapper that makes a bf16-stored reference compute exactly what the fp32 model computes."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

from sapiens_edge.loading import load_model  # noqa: E402
from sapiens_edge.models.build import build_random  # noqa: E402
from sapiens_edge.models.upcast import compute_in_fp32_  # noqa: E402
from tests.helpers import tiny_info  # noqa: E402

TASKS = ("backbone", "pose", "seg", "normal", "pointmap")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("task", TASKS)
def test_random_model_in_reduced_storage_equals_the_fp32_model_cast(task, dtype):
    info = tiny_info(task)
    fp32 = build_random(info, seed=3).state_dict()
    reduced = build_random(info, seed=3, dtype=dtype).state_dict()
    assert reduced.keys() == fp32.keys()
    for key, value in reduced.items():
        want = torch.bfloat16 if key.endswith("rope_embed.periods") else dtype  # the periods stay bf16
        assert value.dtype == want, key
        assert torch.equal(value, fp32[key].to(want)), key  # every parameter initialised, same draws


@pytest.mark.parametrize("task", ["pose", "pointmap"])
def test_bf16_storage_computes_exactly_the_fp32_model(task):
    """fp32 compute on bf16-stored weights = the fp32 model loaded from the same bf16 values, bit for bit:
    why the gate may hold a large model's reference in half the memory."""
    info = tiny_info(task)
    stored = compute_in_fp32_(build_random(info, seed=1, dtype=torch.bfloat16)).eval()
    fp32 = build_random(info, seed=1, dtype=torch.bfloat16).float().eval()  # the periods stay bf16
    assert all(p.dtype == torch.bfloat16 for p in stored.parameters())
    x = torch.randn(1, 3, *info.input_hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = stored(x), fp32(x)
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert all(p.dtype == torch.bfloat16 for p in stored.parameters())  # restored after the forward


@pytest.fixture(scope="module")
def model_01b():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model("sapiens2-0.1b-seg", None, seed=2)


def test_load_model_reads_a_checkpoint_into_the_storage_dtype(model_01b, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model_01b.state_dict().items()}, str(path))
    half = load_model("sapiens2-0.1b-seg", path, dtype=torch.float16)
    for (key, value), (_, ref) in zip(half.state_dict().items(), model_01b.state_dict().items(), strict=True):
        want = torch.bfloat16 if key.endswith("rope_embed.periods") else torch.float16
        assert value.dtype == want and torch.equal(value, ref.to(want)), key


def test_the_gate_reference_of_a_bf16_checkpoint_stays_bf16_and_computes_fp32(model_01b, tmp_path):
    from safetensors.torch import save_file

    from sapiens_edge.loading import load_reference

    path = tmp_path / "bf16.safetensors"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model_01b.state_dict().items()}, str(path))
    reference = load_reference("sapiens2-0.1b-seg", path)
    fp32 = load_model("sapiens2-0.1b-seg", path)  # the bf16 values, upcast on loading
    assert {p.dtype for p in reference.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}
    x = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(reference(x), fp32(x))
    # An fp32 checkpoint gives the plain fp32 model.
    path32 = tmp_path / "fp32.safetensors"
    save_file({k: v.contiguous() for k, v in model_01b.state_dict().items()}, str(path32))
    assert {p.dtype for p in load_reference("sapiens2-0.1b-seg", path32).parameters()} == {torch.float32}
