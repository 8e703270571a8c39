"""The precision each OpenVINO op ran in, summarized from made-up `op_profile()` entries (the real profile of
the tiny artifacts through `bench` is tested with the OpenVINO target, tests/export/test_openvino_target.py)."""

from __future__ import annotations

import pytest

from sapiens_edge.benchmarks.openvino_placement import precision_group, summarize_ops
from sapiens_edge.benchmarks.placement import placement_note


def _op(name, op_type, precision, us, kernel="jit"):
    return {"name": name, "type": op_type, "kernel": kernel, "precision": precision, "us": us}


OPS = [_op("attn", "Subgraph", "bf16", 400), _op("fc1", "FullyConnected", "u8", 250),
       _op("fc2", "FullyConnected", "I8", 150), _op("deconv", "Deconvolution", "bf16", 100),
       _op("norm", "RMS", "f32", 40), _op("add", "Subgraph", "f32", 20), _op("to_u8", "Reorder", "f32", 30),
       _op("perm", "Transpose", "bf16", 10)]


def test_ops_are_grouped_by_the_arithmetic_they_ran_in():
    s = summarize_ops(OPS, "f32 but ScaledDotProductAttention in bf16")
    groups = s["precisions"]
    assert list(groups) == ["bf16", "int8", "f32", "data movement"]  # most time first
    assert (groups["bf16"]["ops"], groups["bf16"]["time_us"]) == (2, 500)
    assert groups["int8"]["op_types"] == {"FullyConnected": 2}  # u8 and I8 kernels are both int8
    assert groups["f32"]["op_types"] == {"RMS": 1, "Subgraph": 1}  # by time: RMS 40 µs before Subgraph 20 µs
    # a bf16 Transpose moves data: it is not counted as bf16 arithmetic
    assert groups["data movement"]["op_types"] == {"Reorder": 1, "Transpose": 1}
    assert s["time_us"] == 1000 and sum(g["share"] for g in groups.values()) == pytest.approx(1.0)
    assert placement_note(s) == ("f32 but ScaledDotProductAttention in bf16 requested; bf16 50.0% (Subgraph x1, "
                                 "Deconvolution x1); int8 40.0% (FullyConnected x2); f32 6.0% (RMS x1, Subgraph x1); "
                                 "data movement 4.0% (Reorder x1, Transpose x1)")


def test_unknown_precisions_are_other_and_an_empty_profile_is_an_error():
    assert precision_group(_op("x", "Eltwise", "undefined", 1)) == "other"
    assert precision_group(_op("x", "Convolution", "f16", 1)) == "f16"
    with pytest.raises(ValueError, match="no timed ops"):
        summarize_ops([], "f32")
    with pytest.raises(ValueError, match="no timed ops"):
        summarize_ops([_op("x", "RMS", "f32", 0)], "f32")
