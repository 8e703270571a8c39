"""Reduced precision (bf16 / f16) for chosen op types of a model compiled in f32 (`openvino-int8-hybrid`).

OpenVINO's inference precision hint applies to a whole model: f32 everywhere, or bf16/f16 for every float op
but those pinned `precise` (export.openvino), and its CPU plugin fuses element-wise ops into reduced-precision
subgraphs where a pin is not honoured. What costs accuracy in reduced precision is not where the time is: on the
0.4b seg stand-in, attention and the head's transposed convolutions in bf16 cost 0.06 points of pixel agreement
and take a quarter off the f32 time, while everything else in bf16 costs a point more (docs/targets/openvino.md).
So the recipe records op *types* (`export_options.reduced_ops`) and the backend, compiling in f32, converts those
ops' float inputs to the device's reduced type and their outputs back: the plugin then runs exactly those ops in
bf16/f16 (read back from the compiled model's `runtimePrecision`). Which reduced type is the device's
(openvino_backend.resolve_precision); a device with neither runs them in f32, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

TYPES = ("bf16", "f16")  # the reduced precisions openvino_backend.resolve_precision picks


def reduce_ops(model: Any, op_types: Iterable[str], precision: str) -> int:
    """Compute the ops of `model` whose type is in `op_types` in `precision` ("bf16" or "f16"), in place: each f32
    input through a Convert to it, each output through a Convert back to f32. Returns how many ops."""
    import openvino as ov
    from openvino import opset13 as ops

    if precision not in TYPES:  # the backend resolves the precision first: another one here is our bug
        raise RuntimeError(f"reduce_ops: precision {precision!r} is not one of {', '.join(TYPES)}")
    wanted, reduced_type, count = set(op_types), {"bf16": ov.Type.bf16, "f16": ov.Type.f16}[precision], 0
    for op in model.get_ordered_ops():
        if op.get_type_name() not in wanted:
            continue
        for i in range(op.get_input_size()):
            value = op.input_value(i)
            if value.get_element_type() == ov.Type.f32:  # integer inputs (a deconv's output shape) stay
                op.input(i).replace_source_output(ops.convert(value, reduced_type).output(0))
        op.validate_and_infer_types()
        for output in op.outputs():
            consumers = list(output.get_target_inputs())
            back = ops.convert(output, ov.Type.f32)
            for consumer in consumers:
                consumer.replace_source_output(back.output(0))
        count += 1
    model.validate_nodes_and_infer_types()
    return count
