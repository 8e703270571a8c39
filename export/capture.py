"""Capture a zoo model once with `torch.export` at a fixed input size; every target lowers the result.

Under capture the RoPE tables are frozen as per-size constants and the bf16 rotation is emulated
in fp32 (bit-exact, spec 2.4), so no target needs bf16 arithmetic. Optional rewrites swap modules
for numerically equivalent ones that a target runs (or quantizes) better; they never change the
model the caller holds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sapiens_edge.manifest import TensorSpec
from sapiens_edge.models.rope import rope_constants

from .recipes import Rounding
from .rewrites import REWRITES


def example_input(input_hw: tuple[int, int]) -> torch.Tensor:
    h, w = input_hw
    return torch.zeros(1, 3, h, w, dtype=torch.float32)


def prepare(model: nn.Module, rewrites: tuple[str, ...] = (), *, always_copy: bool = False,
            in_place: bool = False) -> nn.Module:
    """The module that gets captured: eval, fp32, with `rewrites` applied to a copy (the caller's
    model is left alone; without rewrites it is returned as is unless `always_copy`). `in_place`: rewrite
    `model` itself (a model `export()` loaded: a second copy of a 1b's fp32 weights is 5.9 GB)."""
    model = model.eval()
    if not rewrites and not always_copy:
        return model
    if not in_place:
        model = copy.deepcopy(model)
    for name in rewrites:
        REWRITES[name](model)
    return model


def prepare_static_int8(model: nn.Module, recipe: Any, calibration: Any,
                        progress: Callable[[str], None] = lambda _: None,
                        in_place: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """What a static int8 recipe captures: `prepare` (a copy with the recipe's rewrites), then, when the
    recipe's weights' rounding is GPTQ, the transformer blocks' linears rounded onto the int8 grid
    by GPTQ over the calibration set (`quantize.gptq`), except the layers the int8 policy keeps in
    float. The target's own quantizer then reproduces those weights exactly. Returns the module and
    what was done (for the manifest). `in_place`: as `prepare`'s."""
    module = prepare(model, recipe.rewrites, always_copy=True, in_place=in_place)
    module.sapiens_disposable = True  # our copy: a target may free its weights once captured
    if recipe.weights.rounding is not Rounding.GPTQ:
        return module, {"method": "nearest (the target's quantizer)"}
    from sapiens_edge.quantize.gptq import gptq_
    from sapiens_edge.quantize.policy import keep_float_keys

    keep = keep_float_keys(model.sapiens_info.task, calibration.keep_float)
    progress("GPTQ: rounding the transformer blocks' weights on the calibration images ...")
    info = gptq_(module, calibration.batches(), skip=lambda name: any(k in name for k in keep), progress=progress)
    return module, info


def capture(model: nn.Module, input_hw: tuple[int, int], *, rewrites: tuple[str, ...] = (),
            exact_rope: bool = True, progress: Callable[[str], None] = lambda _: None,
            example: torch.Tensor | None = None, rope_rounding: str = "cast") -> torch.export.ExportedProgram:
    """`torch.export` of `model` (after `rewrites`) for a (1, 3, H, W) float32 input (or `example`,
    for a wrapper that takes another layout).

    `exact_rope`: reproduce the bf16 RoPE rotation bit for bit with fp32 ops and rounding casts
    (fp32 recipes); False rotates in plain fp32 (reduced-precision recipes: the casts cost ~5 % of
    the run time and their effect is far below fp16/int8 error). `rope_rounding="arith"` does the
    exact rotation's bf16 rounding with fp32 arithmetic instead of casts (`rope.bf16_round_arith`)."""
    module = prepare(model, rewrites)
    progress(f"capturing with torch.export at {input_hw[0]}x{input_hw[1]}"
             + (f" (rewrites: {', '.join(rewrites)})" if rewrites else ""))
    with torch.no_grad(), rope_constants(module, input_hw, emulate_bf16=True, exact_bf16=exact_rope,
                                         rounding=rope_rounding):
        x = example_input(input_hw) if example is None else example
        return torch.export.export(module, (x,), strict=False)


def output_specs(program: torch.export.ExportedProgram, names: list[str]) -> list[TensorSpec]:
    """The graph outputs of a torch.export program, named `names` (`targets.output_names`), as manifest specs
    (shapes and dtypes from the traced metadata: float32, or integer class ids of a decoded seg model)."""
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    vals = [a.meta["val"] for a in out_node.args[0]]  # a dict output is flattened in key order
    return [TensorSpec(n, list(v.shape), str(v.dtype).removeprefix("torch."))
            for n, v in zip(names, vals, strict=True)]
