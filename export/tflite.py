"""TFLite / LiteRT target: the captured program -> `model.tflite`, with Google's `litert-torch`.

* Layout: NHWC. The model takes the normalized image as (1, H, W, 3) and gives its image-shaped
  outputs channels-last ((1, H, W, 29) logits, (1, H/4, W/4, 308) heatmaps, ...); the permutes
  are part of the graph, where the converter's layout pass cancels them against its own NHWC
  convs. That is the layout of TFLite's image pipelines (Android bitmaps, Pi camera frames as HWC
  arrays), and it saves the final transpose of the largest tensor. The manifest records it per
  tensor (`layout`); the runtime's tflite backend converts from and to the NCHW of `Predictor.run`.
* Capture: the ExecuTorch rewrites (attention as matmul + softmax + matmul, norms in the forms
  XNNPACK lowers, the heads' ConvTranspose as conv + pixel shuffle: litert-torch lowers pixel
  shuffle as reshape/transpose, so PyTorch's channel-major order holds, spec 8.9), RoPE in fp32.
  litert-torch re-exports what it is given, so it gets the captured graph behind a named-input
  adapter (`image`); outputs are named as in every artifact.
* fp16: `quant_recipes.full_fp16_recipe()`: fp16 weights, expanded to fp32 by the runtime (half
  the file; the same fp32 compute on CPUs, fp16 on GPU delegates).
* int8-dynamic: the fp32 flatbuffer through ai-edge-quantizer (what litert-torch's quant recipes
  run): the transformer's linears (FULLY_CONNECTED with more weights than one embedding row) get int8 per-channel
  symmetric weights, their activations are quantized per inference by the dynamic-range kernels;
  convs (patch embedding, task heads) and RMSNorm's statistics linears stay fp32. (PT2E dynamic
  was tried first: the converter's dynamic mode quantizes every weight of the graph, the seg head's
  convs included, whatever the PT2E annotation says: 96.5 % pixel agreement on 0.1b seg.)
* int8: PT2E static, the same layers with calibrated int8 activations (the calibration sets of
  every int8 recipe), float input and outputs. The layers `quantize.policy` keeps in float stay
  float in both int8 recipes (patch embedding, classifiers, the seg head, the pose head's 1x1 convs).
* What XNNPACK does not take is recorded in the manifest (`export_options.delegation`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sapiens_edge.errors import require
from sapiens_edge.manifest import TensorSpec

from .capture import capture, output_specs, prepare_static_int8
from .recipes import ActivationKind, Recipe, WeightDtype
from .target_table import require_calibration, tool_versions
from .targets import INPUT_NAME, CalibrationData, Lowered, output_names

MODEL_FILE = "model.tflite"
# litert-torch logs every conversion stage at WARNING through the root logger and absl.
logging.getLogger("absl").setLevel(logging.ERROR)


class ChannelsLastIO(nn.Module):
    """`model` behind an NHWC input and named outputs, image-shaped ones channels-last."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.inner = model
        self.names = list(names)
        self.sapiens_info = model.sapiens_info

    @property
    def backbone(self) -> nn.Module:  # what capture's RoPE freezing looks for
        return self.inner.backbone

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.inner(image.permute(0, 3, 1, 2))
        outs = out if isinstance(out, tuple) else (out,)
        return {n: (o.permute(0, 2, 3, 1) if o.ndim == 4 else o) for n, o in zip(self.names, outs, strict=True)}


class _NamedInput(nn.Module):
    """Gives the captured graph module a keyword input, which litert-torch names the model's input
    after (a graph module from torch.export takes its input positionally)."""

    def __init__(self, graph_module: nn.Module):
        super().__init__()
        self.graph_module = graph_module

    def forward(self, image: torch.Tensor):
        return self.graph_module(image)


def channels_last(spec: TensorSpec) -> TensorSpec:
    """An output spec of the wrapped program (4-D ones are already channels-last) with its layout."""
    return TensorSpec(spec.name, spec.shape, spec.dtype, "NHWC" if len(spec.shape) == 4 else "")


def _no_bf16(module: nn.Module) -> None:
    """The RoPE `periods` buffers are bf16 and unused once capture froze the tables; the converter
    refuses any bf16 tensor ("unsupported ScalarType BFloat16"), so cast them."""
    for name, buf in list(module.named_buffers()):
        if buf.dtype == torch.bfloat16:
            owner, _, leaf = name.rpartition(".")
            (module.get_submodule(owner) if owner else module).register_buffer(leaf, buf.float())


def litert_quantizer():
    """A PT2E quantizer factory (see `quantize.pt2e.quantize_static`) on litert-torch's quantizer:
    linears and convs only (its global setting would also quantize every add, mul and cat: the
    residual stream and RoPE), minus the layers kept in float."""

    def make(keep_float: tuple[str, ...], method: str, matched: set[str]):
        import dataclasses

        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.pt2e_quantizer_utils import OP_TO_ANNOTATOR, propagate_annotation

        from sapiens_edge.quantize.pt2e import layer_filter

        config = get_symmetric_quantization_config(is_per_channel=True)
        if method == "minmax":
            from torchao.quantization.pt2e import MinMaxObserver

            act = dataclasses.replace(config.input_activation,
                                      observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
            config = dataclasses.replace(config, input_activation=act, output_activation=act)
        keep = layer_filter(keep_float, matched)

        class LayerQuantizer(PT2EQuantizer):
            def annotate(self, model):
                for op in ("linear", "conv"):
                    OP_TO_ANNOTATOR[op](model, self.global_config, keep)
                propagate_annotation(model)
                return model

        return LayerQuantizer().set_global(config)

    return make


def _static_quant_config():
    """What tells the converter to lower the Q/DQ pairs to static int8 kernels."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    config = get_symmetric_quantization_config(is_per_channel=True)
    return QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(config))


def quantize_dynamic_range(path: Path, embed_dim: int) -> dict[str, Any]:
    """Rewrite the fp32 flatbuffer at `path` with int8 per-channel weights on its linears
    (dynamic-range kernels); returns the settings and what was quantized. Linears with at most
    `embed_dim` weights are RMSNorm's mean-of-squares rows (`delegate_norms`): statistics, kept float."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    weights = qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True,
                                               granularity=qtyping.QuantGranularity.CHANNELWISE)
    config = qtyping.OpQuantizationConfig(weight_tensor_config=weights, explicit_dequantize=False,
                                          compute_precision=qtyping.ComputePrecision.INTEGER,
                                          min_weight_elements=embed_dim + 1)
    manager = recipe_manager.RecipeManager()
    manager.add_quantization_config(".*", qtyping.TFLOperationName.FULLY_CONNECTED, op_config=config)
    quant = quantizer.Quantizer(str(path))
    quant.load_quantization_recipe(manager.get_quantization_recipe())
    quant.quantize().export_model(str(path), overwrite=True)
    return {"quantizer": "ai-edge-quantizer (dynamic range)", "weights": "int8 per-channel symmetric",
            "activations": "int8, quantized per inference (dynamic-range kernels)",
            "op_types": ["FULLY_CONNECTED"], "min_weight_elements": embed_dim + 1,
            "kept_float": ["CONV_2D (patch embedding, task heads)", "RMSNorm statistics"]}


def lower(model: Any, recipe: Recipe, input_hw: tuple[int, int], workdir: Path,
          calibration: CalibrationData | None, progress: Callable[[str], None]) -> Lowered:
    """Write `model.tflite` for `recipe` into `workdir`."""
    litert_torch = require("litert_torch", "tflite", "TFLite export (litert-torch)")
    from sapiens_edge.quantize.policy import keep_float_keys

    task = model.sapiens_info.task
    names = output_names(model, task)
    rewrites = recipe.rewrites
    h, w = input_hw
    example = torch.zeros(1, h, w, 3)
    dtype, activations = recipe.weights.dtype, recipe.activations.kind
    exact = dtype is WeightDtype.FP32  # bf16-exact RoPE, rounded with arithmetic XNNPACK runs
    options: dict[str, Any] = {}
    if activations is ActivationKind.STATIC_INT8:  # rewritten (and GPTQ-rounded) copy
        calibration = require_calibration(recipe, calibration)
        module, options["weight_rounding"] = prepare_static_int8(model, recipe, calibration, progress)
        program = capture(ChannelsLastIO(module, names), input_hw, exact_rope=exact, rope_rounding="arith",
                          progress=progress, example=example)
        del module
    else:
        program = capture(ChannelsLastIO(model.eval(), names), input_hw, rewrites=rewrites, exact_rope=exact,
                          rope_rounding="arith", progress=progress, example=example)
    outputs = [channels_last(s) for s in output_specs(program, names)]
    options.update({"rewrites": list(rewrites), "layout": "NHWC input and image outputs",
                    "rope": "bf16-exact (fp32 ops, rounding by Veltkamp split)" if exact else "fp32"})
    user_keep = calibration.keep_float if calibration is not None else ()
    keep = keep_float_keys(task, user_keep)
    quant_config = None
    if activations is ActivationKind.STATIC_INT8:
        from sapiens_edge.quantize import pt2e

        method = calibration.method or recipe.default_calibration_method
        batches = lambda: (np.ascontiguousarray(b.transpose(0, 2, 3, 1)) for b in calibration.batches())  # noqa: E731
        program, options["quantization"] = pt2e.quantize_static(
            program, batches, calibration.count, method=method, keep_float=keep, user_keep_float=user_keep,
            progress=progress, quantizer=litert_quantizer(), fold_quantize=False,
            quantizer_name="litert-torch PT2EQuantizer (torchao PT2E)")
        graph_module = program.module()
        quant_config = _static_quant_config()
    elif activations is ActivationKind.DYNAMIC_INT8:
        graph_module = program.module()  # converted in fp32, then quantized as a flatbuffer
    elif dtype is WeightDtype.FP16:
        from litert_torch.generative.quantize import quant_recipes

        graph_module = program.module()
        quant_config = quant_recipes.full_fp16_recipe()
        options["fp16"] = {"weights": "float16", "compute": "float32 on CPU (weights expanded at load)",
                           "io": "float32"}
    else:  # fp32
        graph_module = program.module()
    del program
    _no_bf16(graph_module)
    progress(f"converting to TFLite with litert-torch ({recipe.precision}) ...")
    t0 = time.perf_counter()
    named = _NamedInput(graph_module)
    named.training = False  # what litert-torch checks; .eval() would recurse into the graph module, which refuses
    path = workdir / MODEL_FILE
    with _quiet(litert_torch):
        edge = litert_torch.convert(named, (), sample_kwargs={"image": example}, quant_config=quant_config)
        edge.export(str(path))
    del edge, graph_module
    if activations is ActivationKind.DYNAMIC_INT8:
        progress("quantizing the linears' weights (ai-edge-quantizer, dynamic range) ...")
        with _quiet(litert_torch):
            options["quantization"] = quantize_dynamic_range(path, model.sapiens_info.arch.embed_dim)
    options["conversion_seconds"] = round(time.perf_counter() - t0, 1)
    from sapiens_edge.runtime.backends.tflite_backend import delegation_report, weight_types

    if "quantization" in options:  # what the file holds: {op: {"int8": n, "total": n}}
        options["quantization"]["weights_in_file"] = weight_types(path)

    options["delegation"] = report = delegation_report(path)
    progress(f"XNNPACK takes {report['delegated_ops']} of {report['ops']} ops in {report['partitions']} partition(s); "
             f"outside: " + (", ".join(f"{op} x{n}" for op, n in report["outside"].items()) or "nothing"))
    versions = {"torch": torch.__version__, **tool_versions("litert-torch", "ai-edge-litert")}
    return Lowered(MODEL_FILE, [TensorSpec(INPUT_NAME, [1, h, w, 3], "float32", "NHWC")], outputs, versions, options)


@contextlib.contextmanager
def _quiet(litert_torch) -> Iterator[None]:
    """Our progress line instead of litert-torch's stage log (rich) and the weight quantizer's
    printed size report and progress bars."""
    config = litert_torch.config
    shown = config.show_progress
    config.show_progress = False
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        config.show_progress = shown


def app_runtime(workdir: Path, lowered: Lowered) -> dict[str, Any]:
    """The TF Lite runtime version the flatbuffer needs (`export.runtime_pins`)."""
    from .runtime_pins import tflite_pins

    return tflite_pins(workdir / lowered.model_file, lowered.tool_versions.get("ai-edge-litert"))
