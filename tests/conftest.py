"""Session fixtures. Torch is imported inside them so that tests/runtime runs without torch."""

from __future__ import annotations

import pytest

# per-target skip counts; --require-targets (make test) fails on import or missing-tool skips
pytest_plugins = ["tests.skip_check"]


@pytest.fixture(scope="session")
def seg01(tmp_path_factory):
    """A randomised full-size 0.1b seg model and its checkpoint files (fp32, bf16, bare backbone)."""
    import torch
    from safetensors.torch import save_file

    import sapiens_edge
    from sapiens_edge.errors import RandomWeightsWarning
    from tests.helpers import randomize_

    with pytest.warns(RandomWeightsWarning):
        model = sapiens_edge.load_model("sapiens2-0.1b-seg", seed=1)
    randomize_(model, seed=1)
    d = tmp_path_factory.mktemp("ckpt")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    files = {"fp32": d / "seg_fp32.safetensors", "bf16": d / "seg_bf16.safetensors",
             "backbone": d / "bb_bf16.safetensors"}
    save_file(sd, str(files["fp32"]))
    half = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    save_file(half, str(files["bf16"]))
    save_file({k[9:]: v for k, v in half.items() if k.startswith("backbone.")}, str(files["backbone"]))
    return model, files


@pytest.fixture(autouse=True, scope="module")
def _long_lived_objects_out_of_gc_reach():
    """What is alive when a test module starts (the imported libraries, session fixtures) is moved out of
    the garbage collector's reach for the module. The exports collect garbage between their phases
    (memory.release_memory), and each full collection would otherwise rescan the ~465k objects of torch,
    ONNX and the converters (0.23 s a call here: 28 % of the ONNX target tests' time). Nothing alive at
    the start is garbage yet (collected first), and the module's own objects are collected as before."""
    import gc

    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
