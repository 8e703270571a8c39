"""bf16 rounding that every OpenVINO plugin keeps, for f32 inference.

Our fp32 graphs round RoPE's inputs to bf16 and back (`Convert` f32 -> bf16 -> f32), as the reference model
computes RoPE in bf16 (models.rope). OpenVINO's x86 CPU plugin executes that round trip; its ARM CPU plugin, which
has no bf16 type, drops it and computes RoPE in f32. Measured under emulation (tests/pi, a Cortex-A76): the tiny
pose model's heatmaps then differed from x86's by 1.1e-3 relative L2, over the fp32 limit (1e-3).

`exact_bf16_round_trips` rewrites each such pair as f32 arithmetic that rounds the same way: Veltkamp's split
with the constant 2^16 + 1, t = x * c; hi = t - (t - x), keeps the top 8 significant bits of x, rounded to
nearest with ties to even, which is bf16's rounding (bit-exact against torch's on 10^7 values and on ties; the
same on x86 and ARM). Only for f32 inference: in bf16 or f16 arithmetic the split would overflow or vanish.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SPLIT = 65537.0  # 2^16 + 1: of f32's 24 significant bits, 24 - 16 = 8 remain (bf16's)


def _is_round_trip(convert: Any, ov: Any) -> bool:
    return (convert.get_type_name() == "Convert" and convert.get_output_element_type(0) == ov.Type.bf16
            and convert.input_value(0).get_element_type() == ov.Type.f32)


def exact_bf16_round_trips(model: Any) -> int:
    """Replace every Convert f32 -> bf16 -> f32 pair of `model` (in place) by Veltkamp's split; returns how many
    bf16 -> f32 Converts were replaced. A bf16 value used other than through a Convert back to f32 is left as is."""
    import openvino as ov
    from openvino import opset13 as ops

    replaced = 0
    for op in model.get_ordered_ops():
        if not _is_round_trip(op, ov):
            continue
        x = op.input_value(0)
        for target in list(op.output(0).get_target_inputs()):
            back = target.get_node()
            if back.get_type_name() != "Convert" or back.get_output_element_type(0) != ov.Type.f32:
                continue
            t = ops.multiply(x, ops.constant(np.float32(SPLIT)))
            rounded = ops.subtract(t, ops.subtract(t, x))
            rounded.set_friendly_name(back.get_friendly_name() + "/bf16_split")
            for consumer in list(back.output(0).get_target_inputs()):
                consumer.replace_source_output(rounded.output(0))
            replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced
