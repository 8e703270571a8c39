"""The attention kernel benchmark on a tiny shape: every kernel runs and agrees with the reference."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from sapiens_edge.benchmarks.studies.attention_kernels import measure


def test_every_kernel_is_timed_and_agrees():
    rows = measure(heads=2, tokens=20, head_dim=8, threads=1, runs=2)
    assert [r["kernel"] for r in rows][:3] == ["onnxruntime Attention (opset 23)",
                                               "onnxruntime MultiHeadAttention (contrib)",
                                               "onnxruntime MatMul+Softmax+MatMul"]
    assert all(r["ms"] > 0 and r["vs_opset23"] > 0 for r in rows)
    assert rows[0]["vs_opset23"] == 1.0
    assert all(r["max_abs_diff"] < 1e-4 for r in rows if "max_abs_diff" in r)  # fp32 kernels agree
