"""Running an ONNX graph in pieces, one ONNX Runtime session at a time (`runtime/backends/onnx_plan.py` plans,
`onnx_pieces.py` runs):
the pieces give the whole graph's outputs (bit for bit for fp32 and int8 graphs; fp16 graphs within the fp16
rounding of the tensors crossing a cut), cuts avoid the tensors ONNX Runtime fuses with their consumers,
each piece holds only its own weights, and a session that would not fit is refused before it starts, with
the number of pieces that would fit."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge import memory, runtime  # noqa: E402
from sapiens_edge.errors import InsufficientMemoryError, OptionError  # noqa: E402
from sapiens_edge.runtime.backends import onnx_plan  # noqa: E402
from sapiens_edge.runtime.backends.onnx_pieces import PiecewiseSession, piece_model  # noqa: E402
from sapiens_edge.runtime.backends.onnx_plan import GraphPlan, load_graph, plan, plan_count, whole_estimate  # noqa: E402

MIB = 2**20
INT8_HELD = int(onnx_plan.WEIGHT_FACTORS["int8"][0])  # graph optimisation off


def chain_model(blocks: int = 6, width: int = 256) -> onnx.ModelProto:
    """x -> blocks x (MatMul with an int8 weight dequantized, Relu, residual Add) -> y. The exporter's habit
    is kept: every weight's DequantizeLinear comes first in the file, before any compute node."""
    rng = np.random.default_rng(0)
    inits, dq, compute = [], [], []
    h = "x"
    for b in range(blocks):
        q = rng.integers(-127, 128, (width, width), dtype=np.int8)
        inits += [numpy_helper.from_array(q, f"w{b}_q"), numpy_helper.from_array(np.float32(0.01), f"w{b}_s")]
        dq.append(helper.make_node("DequantizeLinear", [f"w{b}_q", f"w{b}_s"], [f"w{b}"], name=f"dq{b}"))
        compute += [helper.make_node("MatMul", [h, f"w{b}"], [f"m{b}"], name=f"mm{b}"),
                    helper.make_node("Relu", [f"m{b}"], [f"r{b}"], name=f"relu{b}"),
                    helper.make_node("Add", [h, f"r{b}"], [f"h{b}"], name=f"add{b}")]
        h = f"h{b}"
    graph = helper.make_graph(
        [*dq, *compute], "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, width])],
        [helper.make_tensor_value_info(h, TensorProto.FLOAT, [8, width])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def saved(model: onnx.ModelProto, tmp_path):
    """The model saved with its weights as external data, as large artifacts are."""
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=0)
    return path


def options(level: str = "disable"):
    def make():
        o = ort.SessionOptions()
        o.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                      "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
        o.intra_op_num_threads = 1
        return o
    return make


def test_cuts_fall_between_blocks_and_each_piece_holds_its_own_weights(tmp_path):
    path = saved(chain_model(), tmp_path)
    graph = load_graph(path, optimised=False)
    pieces = plan_count(graph, 3)
    assert len(pieces) == 3
    for p in pieces:
        names = {n.name for n in graph.nodes[p.start:p.stop]}
        blocks = {int(n[-1]) for n in names}
        # whole blocks, and only the residual stream crosses (never a dequantized weight)
        assert names == {f"{k}{b}" for b in blocks for k in ("mm", "relu", "add")}
        assert all(t.startswith("h") or t == "x" for t in p.inputs), p.inputs
        model = onnx.load_from_string(p.model or piece_model(graph, p).SerializeToString())
        assert {t.name for t in model.graph.initializer} == {f"w{b}_{s}" for b in blocks for s in "qs"}
        assert {n.name for n in model.graph.node if n.op_type == "DequantizeLinear"} == {f"dq{b}" for b in blocks}
        assert p.weight_bytes == len(blocks) * (INT8_HELD * 256 * 256 + 4)
    assert pieces[0].inputs == ["x"] and pieces[-1].outputs == ["h5"]


@pytest.mark.parametrize("level", ["disable", "all"])
@pytest.mark.parametrize("count", [2, 3, 6])
def test_pieces_give_the_whole_graphs_outputs_bit_for_bit(tmp_path, level, count):
    path = saved(chain_model(), tmp_path)
    x = np.random.default_rng(1).standard_normal((8, 256)).astype(np.float32)
    whole = ort.InferenceSession(str(path), sess_options=options(level)(), providers=["CPUExecutionProvider"])
    want = whole.run(None, {"x": x})[0]
    graph = load_graph(path, optimised=level != "disable")
    pieces = plan_count(graph, count)
    assert len(pieces) == count
    got = PiecewiseSession(path, pieces, graph, options(level), ["CPUExecutionProvider"], ["h5"]).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], want)


def test_a_node_too_big_for_the_budget_is_insufficient_memory(tmp_path):
    graph = GraphPlan(chain_model(blocks=2))
    with pytest.raises(InsufficientMemoryError) as err:
        plan(graph, budget=onnx_plan.SESSION_OVERHEAD + 1000)
    assert err.value.phase == "planning pieces" and "no cut into pieces fits" in str(err.value)


def test_the_estimate_counts_weights_once_as_the_session_holds_them():
    graph = GraphPlan(chain_model(blocks=3))
    weights = 3 * (INT8_HELD * 256 * 256 + 4)  # off: the int8 weights and their dequantized fp32 copies
    acts = max(graph.acts)
    assert whole_estimate(graph) == int(weights + onnx_plan.ACTIVATION_FACTOR * acts + onnx_plan.SESSION_OVERHEAD)
    # while add0 runs: x (read again by nothing later), m0's Relu output r0, h0 made; x and r0 are its inputs
    assert acts >= 3 * 8 * 256 * 4


# --------------------------------------------------------------------------- exported artifacts

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("torch")
    from sapiens_edge.export import core
    from tests.export.shared import tiny_model

    arts = {}
    for task, recipe in (("seg", "onnx-int8"), ("pointmap", "tensorrt-fp16"), ("seg", "onnx-fp32")):
        model = tiny_model(task)
        out = tmp_path_factory.mktemp(f"{task}-{recipe}") / "a"
        arts[task, recipe] = model, core.export(model, recipe, out, input_size=model.sapiens_info.input_hw,
                                                progress=lambda _: None).path
    return arts


@pytest.mark.parametrize("task,recipe", [("seg", "onnx-int8"), ("seg", "onnx-fp32"), ("pointmap", "tensorrt-fp16")])
def test_an_artifact_in_pieces_matches_it_whole(exported, task, recipe):
    from tests.export.shared import photo_input

    _, art = exported[task, recipe]
    for level in ("disable", "all"):
        whole = runtime.load(art, graph_optimization=level)
        x = photo_input(task, tuple(whole.manifest.input_hw))
        want = whole.run(x)
        pieced = runtime.load(art, graph_optimization=level, pieces=3)
        assert "in 3 pieces" in pieced.describe()["summary"] and pieced.describe()["pieces"] == 3
        for w, g in zip(want, pieced.run(x), strict=True):
            if recipe == "tensorrt-fp16":  # crossing tensors rounded to the fp16 the graph declares
                np.testing.assert_allclose(g, w, rtol=0, atol=2e-3 * float(np.abs(w).max()))
            else:
                np.testing.assert_array_equal(g, w)


def test_a_session_that_does_not_fit_is_refused_with_the_pieces_that_would(exported, monkeypatch):
    _, art = exported["seg", "onnx-fp32"]
    graph = load_graph(art / "model.onnx", optimised=True)
    need = whole_estimate(graph)
    monkeypatch.setattr(memory, "available_bytes", lambda: need - 1)
    with pytest.raises(InsufficientMemoryError) as err:
        runtime.load(art)
    assert err.value.phase == "opening the ONNX Runtime session" and "--pieces 2" in str(err.value)
    pieced = runtime.load(art, pieces=2)
    assert len(pieced.run(np.zeros((1, 3, *pieced.manifest.input_hw), np.float32))) == 1
    monkeypatch.setenv(memory.SKIP_ENV, "1")
    runtime.load(art)  # the escape hatch the message names


def test_pieces_need_the_cpu_provider(exported):
    _, art = exported["seg", "onnx-fp32"]
    with pytest.raises(OptionError, match="CPU provider"):
        runtime.load(art, pieces=2, profile="trace")


def test_validate_runs_in_pieces_when_one_session_does_not_fit_and_says_so(exported, monkeypatch):
    validate_module = importlib.import_module("sapiens_edge.validation.validate")
    model, art = exported["seg", "onnx-fp32"]
    monkeypatch.setattr(validate_module, "load_model", lambda name, weights=None, seed=0: model)
    whole = validate_module.validate(art, progress=lambda _: None)
    need = whole_estimate(load_graph(art / "model.onnx", optimised=True))
    monkeypatch.setattr(memory, "available_bytes", lambda: need - 1)
    lines: list[str] = []
    pieced = validate_module.validate(art, progress=lines.append)
    assert pieced.passed and whole.passed
    assert pieced.backend_info["pieces"] == 2 and whole.backend_info["pieces"] is None
    assert any(n.startswith("In pieces") for n in pieced.notes) and any("2 pieces" in line for line in lines)
    assert [(c.metric, c.value) for c in pieced.checks] == [(c.metric, c.value) for c in whole.checks]


def test_beside_a_live_reference_the_artifact_has_what_the_reference_leaves(exported, monkeypatch):
    from sapiens_edge.validation.fit import fit_pieces

    _, art = exported["seg", "onnx-fp32"]
    need = whole_estimate(load_graph(art / "model.onnx", optimised=True))
    monkeypatch.setattr(memory, "available_bytes", lambda: need + 100 * MIB)
    notes: list[str] = []
    assert fit_pieces(art, None, {}, notes, lambda _: None) == {} and not notes
    assert fit_pieces(art, None, {}, notes, lambda _: None, reserve=100 * MIB + 1)["pieces"] >= 2
    assert notes and notes[0].startswith("In pieces")
    # asked for, or on another provider: left as given
    assert fit_pieces(art, None, {"pieces": 3}, [], lambda _: None, reserve=200 * MIB) == {"pieces": 3}
    assert fit_pieces(art, None, {"provider": "cuda"}, [], lambda _: None, reserve=200 * MIB) == {"provider": "cuda"}
