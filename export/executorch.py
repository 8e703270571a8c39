"""ExecuTorch target: the captured program -> `model.pte`, delegated to XNNPACK (fp32, fp16, int8).

* The model is captured once (`capture`), with rewrites that keep every op inside the delegate:
  attention as matmul + softmax + matmul (XNNPACK has no fused SDPA; left to the portable kernels
  it is 1.8x slower), the heads' ConvTranspose as Conv + pixel shuffle, SwiGLU's fused projection
  as two linears. RoPE rotates in plain fp32: the bf16 rounding casts of the exact rotation would
  run outside the delegate, and their effect is below the recipes' fp32 tolerance.
* int8: PT2E static quantization with ExecuTorch's XNNPACK quantizer (`quantize/pt2e.py`),
  calibrated on the same sets as `onnx-int8`. `executorch-xnnpack-int8-dynamic` gives the
  transformer's linears XNNPACK's dynamic config instead (activations quantized per inference, fp32
  outputs): static linears also round their outputs to int8, which the float ops after them do not
  use; the dynamic ones run as fast and lose less (0.1b seg 98.8 against 99.3 % pixel agreement,
  docs/targets/executorch.md).
* fp16: the module runs in fp16 inside the program; the program keeps fp32 input and outputs.
* `to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])`, then `to_executorch()`.
  What stays outside the delegate is recorded in the manifest (`export_options.delegation`).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sapiens_edge.errors import require
from sapiens_edge.manifest import TensorSpec

from .capture import capture, output_specs, prepare, prepare_static_int8
from .recipes import Recipe, WeightDtype
from .target_table import delegate_of, deployment_target, require_calibration, tool_versions
from .targets import INPUT_NAME, CalibrationData, Lowered, output_names

MODEL_FILE = "model.pte"
# torchao (imported by ExecuTorch) warns that its optional CUDA kernels do not load on a CPU-only
# install; there is nothing to act on.
logging.getLogger("torchao").setLevel(logging.ERROR)
# Edge ops that may stay outside the delegate without costing much: memory planning glue.
GLUE_OPS = frozenset({"getitem", "alloc", "view_copy", "_to_copy", "dim_order_ops__to_dim_order_copy", "clone",
                      "expand_copy", "squeeze_copy",
                      "unsqueeze_copy", "permute_copy", "slice_copy"})
# Ops that must be delegated: a ViT whose attention or linears run in portable kernels is slow.
MUST_DELEGATE = ("mm", "bmm", "addmm", "linear", "_softmax", "convolution")


class Float16Inside(nn.Module):
    """A model computing in fp16 behind fp32 input and outputs (the app-facing contract is the
    same for every precision)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = copy.deepcopy(model).half()
        self.sapiens_info = model.sapiens_info
        self.sapiens_output_names = getattr(model, "sapiens_output_names", None)  # a decoded model's

    @property
    def backbone(self) -> nn.Module:  # what capture's RoPE freezing looks for
        return self.inner.backbone

    def forward(self, x: torch.Tensor):
        out = self.inner(x.half())
        # Integer outputs (a decoded seg model's class ids) stay as they are.
        return tuple(_float(o) for o in out) if isinstance(out, tuple) else _float(out)


def _float(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() else t


DELEGATES = {"xnnpack": "XnnpackBackend", "coreml": "CoreMLBackend"}


def _partitioner(delegate: str, recipe: Recipe):
    """The delegate's partitioner (the delegates are declared in export.target_table)."""
    if delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return XnnpackPartitioner()
    ct = require("coremltools", "executorch", "the Core ML delegate")
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    target = getattr(ct.target, deployment_target(recipe))
    specs = CoreMLBackend.generate_compile_specs(compute_precision=ct.precision.FLOAT16,
                                                 minimum_deployment_target=target)
    return CoreMLPartitioner(compile_specs=specs)


def delegation_report(edge_program, backend: str = "XnnpackBackend") -> dict[str, Any]:
    """Delegated vs non-delegated node counts and the non-delegated op types (ExecuTorch's
    `get_delegation_info`)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.exported_program().graph_module)
    outside: Counter[str] = Counter()
    for row in info.get_operator_delegation_dataframe().itertuples():
        if row.op_type != "Total" and row.occurrences_in_non_delegated_graphs:
            outside[_short(row.op_type)] += int(row.occurrences_in_non_delegated_graphs)
    return {"delegate": backend, "subgraphs": int(info.num_delegated_subgraphs),
            "delegated_nodes": int(info.num_delegated_nodes), "non_delegated_nodes": int(info.num_non_delegated_nodes),
            "non_delegated_ops": dict(sorted(outside.items())),
            "non_delegated_compute": sorted(op for op in outside if op not in GLUE_OPS)}


def _short(op_type: str) -> str:
    """'aten_view_copy_default' -> 'view_copy'."""
    name = op_type.removeprefix("aten_").removeprefix("aten.")
    for suffix in ("_default", "_Tensor", "_Scalar", "_int", "_dim", "_tensor", "_scalar"):
        name = name.removesuffix(suffix)
    return name


def lower(model: Any, recipe: Recipe, input_hw: tuple[int, int], workdir: Path,
          calibration: CalibrationData | None, progress: Callable[[str], None]) -> Lowered:
    """Write `model.pte` for `recipe` into `workdir`."""
    require("executorch", "executorch", "ExecuTorch export")
    from executorch.exir import to_edge_transform_and_lower

    task = model.sapiens_info.task
    rewrites = recipe.rewrites
    delegate = delegate_of(recipe)
    dtype = recipe.weights.dtype
    options: dict[str, Any] = {"delegate": delegate, "rewrites": list(rewrites), "rope": "fp32"}
    if dtype is WeightDtype.INT8:  # static, or dynamic in some layers (both calibrated: export.target_table)
        calibration = require_calibration(recipe, calibration)
    if dtype is WeightDtype.FP16 and delegate == "xnnpack":
        # Rewrite in fp32 first (the rewrites build their helper layers in fp32), then halve.
        half = Float16Inside(prepare(model, rewrites))
        program = capture(half, input_hw, exact_rope=False, progress=progress)
        options["fp16"] = {"compute": "float16", "io": "float32"}
    elif dtype is WeightDtype.FP16:  # Core ML converts the fp32 graph to fp16 itself
        program = capture(model, input_hw, rewrites=rewrites, exact_rope=False, progress=progress)
        options["fp16"] = {"compute": "float16 (Core ML compute precision)", "io": "float32"}
    elif dtype is WeightDtype.INT8:
        module, options["weight_rounding"] = prepare_static_int8(model, recipe, calibration, progress)
        program = capture(module, input_hw, exact_rope=False, progress=progress)
        del module
    else:
        program = capture(model, input_hw, rewrites=rewrites, exact_rope=False, progress=progress)
    if dtype is WeightDtype.INT8:
        from sapiens_edge.quantize import pt2e

        method = calibration.method or recipe.default_calibration_method
        from sapiens_edge.quantize.policy import keep_float_keys

        keep = keep_float_keys(task, calibration.keep_float)
        dynamic = recipe.activations.dynamic_layers
        program, options["quantization"] = pt2e.quantize_static(
            program, calibration.batches, calibration.count, method=method, keep_float=keep,
            user_keep_float=calibration.keep_float, progress=progress,
            quantizer=functools.partial(pt2e.xnnpack_quantizer, dynamic=dynamic))
        if dynamic:
            options["quantization"]["dynamic_layers"] = list(dynamic)
            options["quantization"]["activations"] = ("int8, quantized per inference (XNNPACK qd8, fp32 outputs) "
                                                      "in dynamic_layers; int8 asymmetric, calibrated, elsewhere")
    progress(f"lowering to ExecuTorch with the {DELEGATES[delegate]} delegate ...")
    edge = to_edge_transform_and_lower(program, partitioner=[_partitioner(delegate, recipe)])
    options["delegation"] = report = delegation_report(edge, DELEGATES[delegate])
    progress(f"delegated {report['delegated_nodes']} nodes in {report['subgraphs']} {delegate} subgraphs; outside: "
             + (", ".join(f"{op} x{n}" for op, n in report["non_delegated_ops"].items()) or "nothing"))
    et_program = edge.to_executorch()
    with open(workdir / MODEL_FILE, "wb") as f:
        et_program.write_to_file(f)
    del et_program, edge
    outputs = output_specs(program, output_names(model, task))
    h, w = input_hw
    versions = {"torch": torch.__version__, **tool_versions("executorch", *(("torchao",) if dtype is WeightDtype.INT8
                                                                          else ()))}
    return Lowered(MODEL_FILE, [TensorSpec(INPUT_NAME, [1, 3, h, w], "float32")], outputs, versions, options)


def app_runtime(workdir: Path, lowered: Lowered) -> dict[str, Any]:
    """The ExecuTorch runtime release the .pte needs (`export.runtime_pins`)."""
    from .runtime_pins import executorch_pins

    return executorch_pins(lowered.tool_versions["executorch"])
