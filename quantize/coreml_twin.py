"""Torch twins of the Core ML recipes: their numerical effect, measured where Core ML cannot run.

A .mlpackage runs on Apple platforms only, so on Linux `validate` cannot run it. What can be
measured anywhere is what each recipe does to the numbers, on the PyTorch model:

* `fp16`: the model computing in fp16 (Core ML's compute precision), fp32 in and out.
* `int8` weights: coremltools.optimize.torch's `PostTrainingQuantizer`, int8 symmetric per output
  channel (the settings of the export's `linear_quantize_weights`, which rounds the fp16 weights:
  within one int8 step of the twin's), fp32 compute.
* palettized 4/6-bit: `PostTrainingPalettizer`, k-means LUT per group of 16 output channels, the
  transformer blocks' entries then chosen by GPTQ on the calibration set (`lut_gptq_`), fp32
  compute: the very weights the export converts (it palettizes in torch, then converts).
* `w8a8`: the export's own PT2E program (same rewrites, GPTQ rounding, quantizer, policy and
  calibration), run in torch.

Compression and fp16 are measured separately (fp32 compute for the compressed twins), so each
number says what one step costs; the device adds fp16 on top.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

from torch import nn

logging.getLogger("coremltools").setLevel(logging.ERROR)


def twin(model: nn.Module, recipe: Any, input_hw: tuple[int, int], calibration: Any = None) -> nn.Module:
    """A torch module computing what `recipe` (a coreml-* Recipe) does to `model` (see module doc)."""
    from sapiens_edge.export.recipes import ActivationKind, WeightDtype

    dtype = recipe.weights.dtype
    if recipe.activations.kind is ActivationKind.STATIC_INT8:
        return _w8a8(model, recipe, input_hw, calibration)
    if dtype is WeightDtype.INT8:
        from coremltools.optimize.torch.quantization import PostTrainingQuantizer, PostTrainingQuantizerConfig

        config = PostTrainingQuantizerConfig.from_dict({"global_config": {
            "weight_dtype": "int8", "granularity": "per_channel", "quantization_scheme": "symmetric"},
            "module_name_configs": float_modules(model)})
        return PostTrainingQuantizer(copy.deepcopy(model), config).compress()
    if dtype is WeightDtype.PALETTIZED:
        return palettize(model, recipe, calibration)[0]
    if dtype is WeightDtype.FP16:
        from sapiens_edge.export.executorch import Float16Inside

        return Float16Inside(model)
    return model  # fp32


def float_modules(model: nn.Module, extra: tuple[str, ...] = ()) -> dict[str, None]:
    """Layers the int8 policy keeps in float (`quantize.policy`: patch embedding, the seg head, ...,
    and the user's `extra` name patterns), as coremltools.optimize.torch `module_name_configs` that
    leave them uncompressed."""
    from sapiens_edge.quantize.policy import keep_float_keys

    keep = keep_float_keys(model.sapiens_info.task, extra)
    return {name: None for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)) and any(k in f"{name}." for k in keep)}


def palettize(model: nn.Module, recipe: Any, calibration: Any = None,
              progress: Callable[[str], None] = lambda _: None) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of `model` with `recipe`'s palettization (coremltools.optimize.torch), and what was done:
    the weights take their LUT values, and the LUTs ride along as `_COREML_` buffers that `ct.convert`
    turns into `constexpr_lut_to_dense` ops. The export converts this very module, so the twin is
    exact. With the recipe's weights' rounding GPTQ, the transformer blocks' weights then choose
    their LUT entries by GPTQ on `calibration` (`lut_gptq_`) instead of each taking its nearest."""
    from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig

    from sapiens_edge.export.recipes import Rounding
    from sapiens_edge.export.target_table import require_calibration

    gptq = recipe.weights.rounding is Rounding.GPTQ
    if gptq:
        calibration = require_calibration(recipe, calibration, " (GPTQ chooses the LUT entries)")
    nbits, group = recipe.weights.bits, recipe.weights.group_size
    keep = tuple(calibration.keep_float) if calibration is not None else ()
    config = PostTrainingPalettizerConfig.from_dict({"global_config": {
        "n_bits": nbits, "granularity": "per_grouped_channel", "group_size": group},
        "module_name_configs": float_modules(model, keep)})
    progress(f"palettizing weights ({nbits}-bit k-means LUT per group of {group} output channels) ...")
    compressed = PostTrainingPalettizer(copy.deepcopy(model), config).compress()
    info: dict[str, Any] = {"weights": f"palettized {nbits}-bit k-means, one LUT per {group} output channels "
                            "(coremltools.optimize.torch, converted to constexpr_lut_to_dense)"}
    if gptq:
        progress("GPTQ: choosing the transformer blocks' LUT entries on the calibration images ...")
        info["weight_rounding"] = lut_gptq_(compressed, model, calibration.batches(), progress)
    else:
        info["weight_rounding"] = {"method": "nearest LUT entry (k-means assignment)"}
    return compressed, info


LUT_BUFFER = "_COREML_/weight/lut"


def lut_gptq_(compressed: nn.Module, original: nn.Module, batches: Any,
              progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Re-choose, in place, the LUT entries of `compressed`'s palettized transformer-block linears by
    GPTQ (`quantize.gptq`): k-means fitted the LUTs to the weights; nearest-entry assignment then
    ignores how the errors of one input column add up in the layer's output, which GPTQ compensates
    on the later columns. The LUTs themselves are kept, so the weights stay exactly LUT values and
    convert to the same `constexpr_lut_to_dense` ops."""
    import torch

    from sapiens_edge.quantize.gptq import gptq_, gptq_round_lut

    weights = dict(original.named_parameters())
    luts: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, module in compressed.named_modules():
            lut = dict(module.named_buffers(recurse=False)).get(LUT_BUFFER)
            if lut is None or ".blocks." not in f".{name}." or not isinstance(module, nn.Linear) or lut.dim() != 4:
                continue
            rows = module.weight.shape[0] // lut.shape[0]  # (groups, 1, K, 1): one LUT per `rows` output channels
            luts[f"{name}.weight"] = lut[:, 0, :, 0].repeat_interleave(rows, 0)
            module.weight.copy_(weights[f"{name}.weight"])  # GPTQ starts from the float weights
    return gptq_(compressed, batches, skip=lambda n: n not in luts, progress=progress,
                 rounder=lambda names, stacked, h: gptq_round_lut(stacked, h, torch.cat([luts[n] for n in names])),
                 grid="each row's k-means LUT (coremltools palettization)")


def _w8a8(model: nn.Module, recipe: Any, input_hw: tuple[int, int], calibration: Any) -> nn.Module:
    from sapiens_edge.export.capture import capture, prepare_static_int8
    from sapiens_edge.export.target_table import require_calibration
    from sapiens_edge.quantize import pt2e
    from sapiens_edge.quantize.policy import keep_float_keys

    calibration = require_calibration(recipe, calibration)
    module, _ = prepare_static_int8(model, recipe, calibration)  # rewrites, and GPTQ as the export does
    program = capture(module, input_hw, exact_rope=False)
    keep = keep_float_keys(model.sapiens_info.task, calibration.keep_float)
    quantized, _ = pt2e.quantize_static(program, calibration.batches, calibration.count,
                                        method=calibration.method or recipe.default_calibration_method,
                                        keep_float=keep)
    return quantized.module()
