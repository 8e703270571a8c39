"""Calibration part by part (quantize.onnx_parts): where the graph is cut, and ranges identical to
calibrating the whole graph."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge.quantize import onnx_parts, onnx_ptq  # noqa: E402

BLOCKS, TOKENS, DIM, HIDDEN = 4, 8, 16, 32
BLOCK_BYTES = (DIM * HIDDEN * 2 + DIM) * 4  # two weights and a norm scale, fp32


def _residual_blocks(path, *, external: bool) -> None:
    """x -> 4 x (x + MatMul(Relu(MatMul(x * s, w1)), w2) reshaped by a shared Constant shape) -> y:
    a transformer's shape (a residual stream, a constant made once and read by every block)."""
    rng = np.random.default_rng(0)
    inits, nodes = [], [helper.make_node("Constant", [], ["shape"], name="shape_const",
                                         value=numpy_helper.from_array(np.array([1, TOKENS, DIM], np.int64)))]
    x = "x"
    for b in range(BLOCKS):
        inits += [numpy_helper.from_array((rng.standard_normal((DIM, HIDDEN)) / 4).astype(np.float32), f"w1_{b}"),
                  numpy_helper.from_array((rng.standard_normal((HIDDEN, DIM)) / 4).astype(np.float32), f"w2_{b}"),
                  numpy_helper.from_array((1 + rng.standard_normal(DIM) / 10).astype(np.float32), f"s_{b}")]
        nodes += [helper.make_node("Mul", [x, f"s_{b}"], [f"n{b}"], name=f"norm{b}"),
                  helper.make_node("MatMul", [f"n{b}", f"w1_{b}"], [f"h{b}"], name=f"fc1_{b}"),
                  helper.make_node("Relu", [f"h{b}"], [f"r{b}"], name=f"act{b}"),
                  helper.make_node("MatMul", [f"r{b}", f"w2_{b}"], [f"m{b}"], name=f"fc2_{b}"),
                  helper.make_node("Reshape", [f"m{b}", "shape"], [f"v{b}"], name=f"view{b}"),
                  helper.make_node("Add", [x, f"v{b}"], [f"x{b + 1}"], name=f"add{b}")]
        x = f"x{b + 1}"
    nodes.append(helper.make_node("Relu", [x], ["y"], name="out"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, DIM])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))


def test_the_graph_is_cut_between_blocks_with_balanced_weights(tmp_path):
    _residual_blocks(tmp_path / "m.onnx", external=True)
    model = onnx_parts.PartedModel(tmp_path / "m.onnx", tmp_path, max_part_bytes=BLOCK_BYTES)
    assert len(model.parts) == BLOCKS
    # Only the residual stream crosses each cut (the shared shape is a constant: each part remakes it).
    assert [p.inputs for p in model.parts] == [("x",), ("x1",), ("x2",), ("x3",)]
    assert [p.outputs for p in model.parts] == [("x1",), ("x2",), ("x3",), ("y",)]
    for k in range(BLOCKS):
        path = model.write(k)
        onnx.checker.check_model(str(path))
        part = onnx.load(str(path), load_external_data=False)
        names = {n.name for n in part.graph.node}
        assert {f"fc1_{k}", f"fc2_{k}", "shape_const"} <= names
        assert not any(f"fc1_{j}" in names for j in range(BLOCKS) if j != k)
        # its weights still point into the model's one data file: nothing copied
        locations = {e.value for t in part.graph.initializer for e in t.external_data if e.key == "location"}
        assert locations == {"m.onnx.data"}
    two = onnx_parts.PartedModel(tmp_path / "m.onnx", tmp_path, max_part_bytes=2 * BLOCK_BYTES)
    assert [p.inputs for p in two.parts] == [("x",), ("x2",)]
    assert onnx_parts.PartedModel(tmp_path / "m.onnx", tmp_path, max_part_bytes=10 * BLOCK_BYTES).parts[0].inputs \
        == ("x",)


def _ranges(path, workdir, method, max_part_bytes, skip=frozenset()):
    workdir.mkdir()
    rng = np.random.default_rng(1)
    images = [rng.standard_normal((1, TOKENS, DIM)).astype(np.float32) * 2 for _ in range(3)]
    lines = []
    ranges = onnx_ptq.calibrate(path, "x", lambda: iter(images), 3, method=method, op_types=("MatMul",),
                                workdir=workdir, skip_nodes=skip, max_part_bytes=max_part_bytes,
                                progress=lines.append)
    return {name: tuple(np.asarray(v, np.float64) for v in value.range_value) for name, value in ranges.items()}, lines


@pytest.mark.parametrize("method", ["minmax", "percentile"])
@pytest.mark.parametrize("external", [True, False])
def test_parts_give_the_ranges_of_the_whole_graph(tmp_path, method, external):
    """Every image through one part, then the next: the same tensors get the same ranges. What crosses
    a cut is handed on in fp32 (the histogram methods' fp16 narrowing would change the next part)."""
    _residual_blocks(tmp_path / "m.onnx", external=external)
    whole, _ = _ranges(tmp_path / "m.onnx", tmp_path / "whole", method, 10 * BLOCK_BYTES)
    parted, lines = _ranges(tmp_path / "m.onnx", tmp_path / "parted", method, BLOCK_BYTES)
    assert set(whole) == set(parted) == {f"n{b}" for b in range(BLOCKS)} | {f"r{b}" for b in range(BLOCKS)}
    for name, (lo, hi) in whole.items():
        # histograms of fp16-narrowed activations: the same values in, the same bins out
        np.testing.assert_allclose(parted[name][0], lo, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(parted[name][1], hi, rtol=1e-6, err_msg=name)
    assert any(line.startswith(f"part {BLOCKS}/{BLOCKS}: calibrating") for line in lines)
    # the parts and their augmented copies are gone; the model is as it was
    leftovers = sorted(p.name for p in (tmp_path / "parted").iterdir()) + sorted(
        p.name for p in tmp_path.iterdir() if ".part" in p.name)
    assert not [n for n in leftovers if ".part" in n or n.startswith("augmented")], leftovers


def test_layers_left_float_stay_uncalibrated_in_parts(tmp_path):
    _residual_blocks(tmp_path / "m.onnx", external=True)
    parted, _ = _ranges(tmp_path / "m.onnx", tmp_path / "w", "minmax", BLOCK_BYTES, skip=frozenset({"fc2_1"}))
    assert "r1" not in parted and "r0" in parted and "n1" in parted


def test_graphs_with_control_flow_stay_whole(tmp_path):
    """A subgraph (If/Loop) may read tensors its node does not list as inputs: no cut is safe to plan."""
    _residual_blocks(tmp_path / "m.onnx", external=True)
    model = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    branch = helper.make_graph([helper.make_node("Identity", ["x1"], ["b"])], "branch", [],
                               [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, TOKENS, DIM])])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    model.graph.node.append(helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch))
    assert len(onnx_parts.plan(onnx.shape_inference.infer_shapes(model), BLOCK_BYTES)) == 1
