"""Torch twins of the Core ML recipes: their numerical effect, measured where Core ML cannot run.

A .mlpackage runs on Apple platforms only, so on Linux `validate` cannot run it. What can be
measured anywhere is what each recipe does to the numbers, on the PyTorch model:

* `fp16`: the model computing in fp16 (Core ML's compute precision), fp32 in and out.
* `int8` weights: coremltools.optimize.torch's `PostTrainingQuantizer`, int8 symmetric per output
  channel (the settings of the export's `linear_quantize_weights`, which rounds the fp16 weights:
  within one int8 step of the twin's), fp32 compute.
* palettized 4/6-bit: `PostTrainingPalettizer`, k-means LUT per group of 16 output channels, fp32
  compute: the very weights the export converts (it palettizes in torch, then converts).
* `w8a8`: the export's own PT2E program (same rewrites, GPTQ rounding, quantizer, policy and
  calibration), run in torch.

Compression and fp16 are measured separately (fp32 compute for the compressed twins), so each
number says what one step costs; the device adds fp16 on top.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from torch import nn

from sapiens_edge.errors import SapiensEdgeError

logging.getLogger("coremltools").setLevel(logging.ERROR)


def twin(model: nn.Module, recipe: Any, input_hw: tuple[int, int], calibration: Any = None) -> nn.Module:
    """A torch module computing what `recipe` (a coreml-* Recipe) does to `model` (see module doc)."""
    weights = recipe.options.get("weights")
    if recipe.options.get("activations") == "int8":
        return _w8a8(model, recipe, input_hw, calibration)
    if weights == "int8":
        from coremltools.optimize.torch.quantization import PostTrainingQuantizer, PostTrainingQuantizerConfig

        config = PostTrainingQuantizerConfig.from_dict({"global_config": {
            "weight_dtype": "int8", "granularity": "per_channel", "quantization_scheme": "symmetric"},
            "module_name_configs": float_modules(model)})
        return PostTrainingQuantizer(copy.deepcopy(model), config).compress()
    if weights and weights.startswith("palettized-"):
        return palettized(model, recipe)
    if recipe.precision == "fp16":
        from sapiens_edge.export.executorch import Float16Inside

        return Float16Inside(model)
    if recipe.precision == "fp32":
        return model
    raise SapiensEdgeError(f"No torch twin for recipe {recipe.name!r}.")


def float_modules(model: nn.Module) -> dict[str, None]:
    """Layers the int8 policy keeps in float (`quantize.policy`: patch embedding, the seg head, ...),
    as coremltools.optimize.torch `module_name_configs` that leave them uncompressed."""
    from sapiens_edge.quantize.policy import keep_float_keys

    keep = keep_float_keys(model.sapiens_info.task)
    return {name: None for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)) and any(k in f"{name}." for k in keep)}


def palettized(model: nn.Module, recipe: Any) -> nn.Module:
    """A copy of `model` with `recipe`'s palettization (coremltools.optimize.torch): the weights take
    their LUT values, and the LUTs ride along as `_COREML_` buffers that `ct.convert` turns into
    `constexpr_lut_to_dense` ops. The export converts this very module, so the twin is exact."""
    from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig

    nbits = int(recipe.options["weights"].removeprefix("palettized-").removesuffix("bit"))
    config = PostTrainingPalettizerConfig.from_dict({"global_config": {
        "n_bits": nbits, "granularity": "per_grouped_channel", "group_size": int(recipe.options["group_size"])},
        "module_name_configs": float_modules(model)})
    return PostTrainingPalettizer(copy.deepcopy(model), config).compress()


def _w8a8(model: nn.Module, recipe: Any, input_hw: tuple[int, int], calibration: Any) -> nn.Module:
    from sapiens_edge.export.capture import capture, prepare_static_int8
    from sapiens_edge.quantize import pt2e
    from sapiens_edge.quantize.policy import keep_float_keys

    if calibration is None:
        raise SapiensEdgeError(f"{recipe.name} needs calibration data.")
    module, _ = prepare_static_int8(model, recipe, calibration)  # rewrites, and GPTQ as the export does
    program = capture(module, input_hw, exact_rope=False)
    keep = keep_float_keys(model.sapiens_info.task, calibration.keep_float)
    quantized, _ = pt2e.quantize_static(program, calibration.batches, calibration.count,
                                        method=calibration.method or recipe.default_calibration_method,
                                        keep_float=keep)
    return quantized.module()
