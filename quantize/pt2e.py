"""PT2E static int8 quantization of a captured program (torchao's prepare/convert) for ExecuTorch.

The XNNPACK quantizer annotates the graph: weights int8 per-channel symmetric, activations int8
asymmetric with calibrated ranges. Calibration streams: each image runs through the observed
model and only the observers' state (a running min/max, or a 2048-bin histogram) stays in memory.

Activation observers (`--calibration-method`): `histogram` is the XNNPACK quantizer's own choice
(torchao's HistogramObserver: the range that minimises the L2 quantization error, so outliers are
clipped); `minmax` keeps the full observed range (faster calibration, coarser steps).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sapiens_edge.errors import CalibrationError, RecipeError, SapiensEdgeError

METHODS = ("histogram", "minmax")


def _module_hits(node, keys: tuple[str, ...]) -> set[str]:
    """The `keys` contained in the path of a module that `node` runs inside."""
    paths = [path for path, _ in (node.meta.get("nn_module_stack") or {}).values()]
    return {key for key in keys if any(key in path for path in paths)}


def layer_filter(keep_float: tuple[str, ...], matched: set[str] | None = None) -> Callable[[Any], bool]:
    """A node filter: False for nodes inside a module whose path contains a `keep_float` key
    (those hits are added to `matched`)."""

    def quantize_node(node) -> bool:
        hits = _module_hits(node, keep_float)
        if matched is not None:
            matched.update(hits)
        return not hits

    return quantize_node


def xnnpack_quantizer(keep_float: tuple[str, ...] = (), method: str = "histogram", matched: set[str] | None = None,
                      dynamic: tuple[str, ...] = ()):
    """Linears and convs only, int8 per-channel symmetric weights and calibrated int8 activations;
    layers whose module path contains a `keep_float` key stay float. (The quantizer's global
    setting would also quantize every add, mul and cat: the residual stream and RoPE in int8.)
    Linears whose path contains a `dynamic` key get XNNPACK's dynamic config instead: int8 weights,
    activations quantized per inference, fp32 outputs (no calibrated range, no output rounding)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    if method == "minmax":
        act = config.input_activation
        act = dataclasses.replace(act, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)

    keep = layer_filter(keep_float, matched)
    # By operator, not by module type: the module-type filter also tests a conv's weight node, which
    # carries no module stack in a torch.export graph, so convs were silently left in float.
    static = XNNPACKQuantizer()
    for op in (torch.ops.aten.linear.default, torch.ops.aten.conv2d.default):
        static.set_operator_type(op, config)
    if not dynamic:
        return static.set_filter_function(keep)
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer

    static.set_filter_function(lambda n: keep(n) and not _module_hits(n, dynamic))
    dyn = XNNPACKQuantizer().set_operator_type(
        torch.ops.aten.linear.default, get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    dyn.set_filter_function(lambda n: keep(n) and bool(_module_hits(n, dynamic)))
    return ComposableQuantizer([dyn, static])


# A quantizer factory: (keep_float, method, matched) -> a torchao PT2E Quantizer for linears and convs.
QuantizerFactory = Callable[[tuple[str, ...], str, set[str]], Any]


def quantize_static(program, batches: Callable[[], Iterator[np.ndarray]], count: int, *, method: str = "histogram",
                    keep_float: tuple[str, ...] = (), user_keep_float: tuple[str, ...] = (),
                    progress: Callable[[str], None] = lambda _: None,
                    quantizer: QuantizerFactory = xnnpack_quantizer,
                    quantizer_name: str = "executorch XNNPACKQuantizer (torchao PT2E)",
                    fold_quantize: bool = True) -> tuple[Any, dict[str, Any]]:
    """(quantized torch.export program, settings) for `program`, calibrated on `batches`.
    `keep_float`: module-path substrings left in float (policy + user); each of `user_keep_float`
    must match some layer. `quantizer`: ExecuTorch's XNNPACK quantizer by default (the TFLite
    target passes litert-torch's, and keeps weights as float + quantize for its converter:
    `fold_quantize=False`)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if method not in METHODS:
        raise SapiensEdgeError(f"Unknown calibration method {method!r} for PT2E; choose one of {', '.join(METHODS)}.")
    example = program.example_inputs[0]
    matched: set[str] = set()
    prepared = prepare_pt2e(program.module(), quantizer(keep_float, method, matched))
    missing = [k for k in user_keep_float if k not in matched]
    if missing:  # a typo, or a name the export rewrites changed, would otherwise quantize everything
        raise RecipeError(f"--keep-float {', '.join(map(repr, missing))} matches no linear/conv of the captured "
                          f"graph (module paths after the export rewrites: e.g. SwiGLU's ffn.w12 is split into "
                          f"ffn.w_gate and ffn.w_value).")
    layers = quantized_layers(prepared)
    progress("int8 layers: " + ", ".join(f"{op} {q}/{n}" for op, (q, n) in layers.items()))
    t0, seen = time.perf_counter(), 0
    with torch.no_grad():
        for x in batches():
            prepared(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            seen += 1
            elapsed = time.perf_counter() - t0
            progress(f"calibrating (PT2E observers) {seen}/{count} images, {elapsed:.0f} s elapsed, "
                     f"~{elapsed / seen * (count - seen):.0f} s left")
    if seen == 0:
        raise CalibrationError("The calibration set produced no inputs.")
    converted = convert_pt2e(prepared, fold_quantize=fold_quantize)
    quantized = torch.export.export(converted, example, strict=False)
    return quantized, {"quantizer": quantizer_name, "weights": "int8 per-channel "
                       "symmetric", "activations": "int8 asymmetric, calibrated (static)", "calibration_method": method,
                       "op_types": ["linear", "conv2d"], "kept_float": list(keep_float),
                       "int8_layers": {op: {"int8": q, "total": n} for op, (q, n) in layers.items()}}


def quantized_layers(prepared) -> dict[str, tuple[int, int]]:
    """{op: (layers whose weight is observed, i.e. will be int8; all layers)} of a prepared model."""
    counts: dict[str, list[int]] = {"linear": [0, 0], "conv2d": [0, 0]}
    for node in prepared.graph.nodes:
        op = getattr(node.target, "__name__", "").split(".")[0]
        if node.op == "call_function" and op in counts:
            counts[op][1] += 1
            counts[op][0] += getattr(node.args[1], "op", None) == "call_module"  # an observer
    return {op: (q, n) for op, (q, n) in counts.items()}
