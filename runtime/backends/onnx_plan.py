"""Planning the pieces of an ONNX graph (`onnx_pieces` runs them): which tensors cross each possible cut, what
each node holds while it runs, and greedy cuts under a memory budget. Reads the graph only, never the weights'
values; shape inference runs on a copy without the large weights. Torch-free; imports onnx when called."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge.errors import ArtifactError, InsufficientMemoryError, require

# Bytes per element of ONNX tensor types (TensorProto.DataType values).
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_FP16, _BF16 = 10, 16
_FUSED_WITH_CONSUMER = {"QuantizeLinear", "DequantizeLinear", "Cast"}
# How much session memory each stored weight byte takes on ONNX Runtime's CPU provider, by the weight's type,
# with graph optimisation off / on. Half-precision weights: ONNX Runtime has no fp16 kernels for most ops there
# and inserts Casts; on, it folds them into fp32 copies (2.2x the file, measured on the 0.8b seg); off, it runs
# them, and the fp32 outputs of weight-only nodes, which run first, live until their consumers do (the 5b seg
# in one session: 23.0 GiB for 10.2 GB of fp16 weights). int8 weights behind DequantizeLinear: on, fused into
# integer kernels; off, dequantized to fp32 the same way.
WEIGHT_FACTORS = {"half": (3.0, 2.2), "int8": (5.0, 1.5), "other": (1.0, 1.0)}
# Activations: computed in fp32 on the CPU (a half-precision tensor counts twice its bytes), times 2 for the
# Cast copies and the arena's slack. Conservative for pieces, which run without the arena (measured in
# docs/design/export-memory.md#validating-the-5b-in-pieces).
ACTIVATION_FACTOR = 2.0
SESSION_OVERHEAD = 300 * 2**20


@dataclass
class Piece:
    """Nodes [start, stop) of the graph's compute nodes, what enters and leaves them, and their estimate."""

    start: int
    stop: int
    inputs: list[str]
    outputs: list[str]
    weight_bytes: int = 0
    activation_bytes: int = 0
    estimate: int = 0
    model: bytes = field(default=b"", repr=False)


class GraphPlan:
    """What piece planning needs from one graph: its compute nodes in order, when each tensor is made and
    last used, every value's size, and the weight bytes each node reads (each weight counted once per piece)."""

    def __init__(self, model: Any, optimised: bool = False) -> None:
        import onnx

        graph = model.graph
        for node in graph.node:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                raise ArtifactError(f"node {node.name or node.op_type} holds a subgraph ({node.op_type}): graphs "
                                    f"with control flow are not split into pieces. Run it whole (no --pieces).")
        self.model = model
        self.init_bytes = {t.name: _tensor_bytes(t) for t in graph.initializer}
        # Nodes computed from weights and constants only (Constant, a weight's DequantizeLinear or Cast, ...)
        # are not cut points: exporters put them first, so they would cross every cut. Each piece computes
        # the ones it reads itself (they are cheap, and ONNX Runtime folds or fuses them anyway).
        self.derived = weight_derived(graph)  # output -> (position in the file, node)
        derived_nodes = {id(node) for _, node in self.derived.values()}
        self.nodes = [node for node in graph.node if id(node) not in derived_nodes]
        kind = {_FP16: "half", _BF16: "half", 2: "int8", 3: "int8"}  # uint8 / int8
        column = 1 if optimised else 0
        self.weight_factor = {t.name: WEIGHT_FACTORS[kind.get(t.data_type, "other")][column] for t in graph.initializer}
        self.types = _value_types(model)
        self.value_bytes = _value_bytes(self.types)
        self.graph_inputs = [i.name for i in graph.input if i.name not in self.init_bytes]
        self.graph_outputs = [o.name for o in graph.output]
        n = len(self.nodes)
        self.made: dict[str, int] = {name: -1 for name in self.graph_inputs}
        self.last_use: dict[str, int] = {}
        for k, node in enumerate(self.nodes):
            for t in node.input:
                if t in self.made:
                    self.last_use[t] = k
            for t in node.output:
                if t:
                    self.made[t] = k
                    self.last_use.setdefault(t, k)
        for t in self.graph_outputs:
            self.last_use[t] = n  # kept to the end, whichever piece makes it
        # crossing[i]: activation bytes made before compute node i and used at or after it
        delta = np.zeros(n + 2, dtype=np.int64)
        for t, k in self.made.items():
            delta[k + 1] += self._act(t)
            delta[min(self.last_use[t], n) + 1] -= self._act(t)
        self.crossing = np.cumsum(delta)[:n + 1]
        # blocked[i]: a tensor crossing there is made by a Q/DQ or a Cast. ONNX Runtime fuses those with their
        # consumers (QDQ into integer kernels; the Cast pairs it inserts around fp16 ops on the CPU are elided),
        # which a cut would prevent: the pieces would compute differently from the whole graph.
        # half[i]: a half-precision tensor crosses there. One session on the CPU keeps such a tensor in fp32
        # between two ops it has no fp16 kernels for (it elides the Cast pair it inserts); a cut rounds it to
        # the fp16 the graph declares. So cuts at fp32 tensors are preferred.
        fused, half = np.zeros(n + 2, dtype=np.int64), np.zeros(n + 2, dtype=np.int64)
        for t, k in self.made.items():
            end = min(self.last_use[t], n) + 1
            if k >= 0 and self.nodes[k].op_type in _FUSED_WITH_CONSUMER:
                fused[k + 1] += 1
                fused[end] -= 1
            if self.value_bytes.get(t, (0, False))[1]:
                half[k + 1] += 1
                half[end] -= 1
        self.blocked = np.cumsum(fused)[:n + 1] > 0
        self.half = np.cumsum(half)[:n + 1] > 0
        # per node: the activation bytes live while it runs, and the weights it reads as a session holds them
        self.acts = [int(self.crossing[k]) + sum(self._act(t) for t in self.nodes[k].output if t) for k in range(n)]
        self.weights = [{t: int(self.init_bytes[t] * self.weight_factor[t])
                         for t in self.reads(node.input) if t in self.init_bytes} for node in self.nodes]

    def reads(self, names) -> set[str]:
        """`names` and, through the weight-derived nodes that make any of them, the weights they come from."""
        out, todo = set(), [t for t in names if t]
        while todo:
            t = todo.pop()
            if t in out:
                continue
            out.add(t)
            if t in self.derived:
                todo.extend(i for i in self.derived[t][1].input if i)
        return out

    def __len__(self) -> int:
        return len(self.nodes)

    def live(self, i: int) -> list[str]:
        """The activations crossing a cut before compute node i (made before it, used at or after it)."""
        return [t for t, k in self.made.items() if k < i <= self.last_use[t]]

    def _act(self, t: str) -> int:
        b = self.value_bytes.get(t)
        if b is None:
            return 0
        return b[0] * (2 if b[1] else 1)  # half precision is computed in fp32 on the CPU


def plan(graph: GraphPlan, budget: int) -> list[Piece]:
    """Cut the graph greedily into pieces whose estimated session memory stays under `budget` bytes, each cut
    where the fewest activation bytes cross among the later half of the piece it ends."""
    acts, weights = graph.acts, graph.weights
    n = len(graph)
    pieces: list[Piece] = []
    start = 0
    while start < n:
        held: set[str] = set()
        held_bytes = peak = 0
        stop = start
        while stop < n:
            new = {t: b for t, b in weights[stop].items() if t not in held}
            est = _estimate(held_bytes + sum(new.values()), max(peak, acts[stop]))
            if est > budget and stop > start:
                break
            if est > budget:  # one node alone does not fit
                raise InsufficientMemoryError(
                    f"node {graph.nodes[stop].name or graph.nodes[stop].op_type} alone needs about "
                    f"{est / 2**30:.1f} GiB in ONNX Runtime and the budget is {budget / 2**30:.1f} GiB: no cut "
                    f"into pieces fits. Use a machine with more memory.", phase="planning pieces",
                    needed=est, available=budget)
            held.update(new)
            held_bytes += sum(new.values())
            peak, stop = max(peak, acts[stop]), stop + 1
        if stop < n:
            lo = start + max(1, (stop - start) // 2)
            window = ([i for i in range(lo, stop + 1) if not graph.blocked[i]]
                      or [i for i in range(start + 1, stop + 1) if not graph.blocked[i]] or range(lo, stop + 1))
            stop = min(window, key=lambda i: (bool(graph.half[i]), int(graph.crossing[i]), -i))
            held_bytes = sum({t: b for k in range(start, stop) for t, b in weights[k].items()}.values())
            peak = max(acts[start:stop])
        pieces.append(Piece(start, stop, [], [], held_bytes, peak, _estimate(held_bytes, peak)))
        start = stop
    for p in pieces:
        used = {t for node in graph.nodes[p.start:p.stop] for t in node.input}
        p.inputs = [t for t in graph.live(p.start) if t in used]
        p.outputs = [t for t in graph.live(p.stop) if p.start <= graph.made[t] < p.stop]
    return pieces


def plan_count(graph: GraphPlan, count: int) -> list[Piece]:
    """The plan with at most `count` pieces and the smallest largest piece (a bisection on the budget)."""
    acts, weights = graph.acts, graph.weights
    total = _estimate(sum(b for w in weights for b in w.values()), max(acts, default=0))
    lo, hi = max(_estimate(sum(w.values()), a) for w, a in zip(weights, acts, strict=True)), total
    best = plan(graph, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = plan(graph, mid)
        if len(trial) <= count:
            best, hi = trial, mid
        else:
            lo = mid
    return best


def whole_estimate(graph: GraphPlan) -> int:
    """The estimated session memory of the whole graph in one session."""
    held: dict[str, int] = {}
    for w in graph.weights:
        held.update(w)
    return _estimate(sum(held.values()), max(graph.acts, default=0))


def worth_planning(model_path: Path, available: int) -> bool:
    """Whether the memory available could be short for this model: planning reads the graph (a small model's
    weights are inside it), so a model whose files are small next to the memory available is not planned.
    The margin covers the activations, which the files do not show (0.4b pointmap at 1024x768: 1 GB of
    fp16 weights, 5.8 GiB in one session)."""
    files = sum(f.stat().st_size for f in model_path.parent.glob(model_path.name + "*") if f.is_file())
    return 4 * files + 8 * 2**30 > available


def pieces_to_fit(graph: GraphPlan, budget: int) -> int:
    """1 when the whole graph's session fits `budget` bytes, else how many pieces it takes (at most as many as
    the greedy plan: `plan_count` then balances them); InsufficientMemoryError when no cut fits."""
    if whole_estimate(graph) <= budget:
        return 1
    return len(plan(graph, budget))


def _estimate(weight_bytes: int, activation_bytes: int) -> int:
    return int(weight_bytes + ACTIVATION_FACTOR * activation_bytes + SESSION_OVERHEAD)


def weight_derived(graph: Any) -> dict[str, tuple[int, Any]]:
    """The outputs of the nodes computed from weights and constants alone (Constant, a weight's DequantizeLinear
    or Cast, and what follows from those), each with its node and the node's position in the file. Nodes
    holding a subgraph are never counted (a subgraph may read outer tensors its node does not list)."""
    weights = {t.name for t in graph.initializer}
    derived: dict[str, tuple[int, Any]] = {}
    for pos, node in enumerate(graph.node):
        if any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute):
            continue
        if all(not t or t in weights or t in derived for t in node.input):
            derived.update({t: (pos, node) for t in node.output if t})
    return derived


def save_external(model: Any, path: Path) -> Path:
    """Save `model` at `path` with every weight over 1 KiB in one external data file beside it (PATH.data).
    onnx moves each tensor's bytes to the file and clears them in `model`, so no second copy is made."""
    import onnx

    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)
    return path


def load_graph(model_path: Path, optimised: bool) -> GraphPlan:
    """The plan of the ONNX model at `model_path` (its graph; external weights not read)."""
    onnx = require("onnx", "onnx-runtime", "Planning the memory of an ONNX model (its session, or its pieces)")
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"could not read {model_path} to plan pieces: {exc}. Re-export the artifact.") from exc
    return GraphPlan(model, optimised=optimised)


def has_inline_weights(graph: GraphPlan) -> bool:
    """Whether large weights sit inside the .onnx file (models under 2 GB), not in external data files."""
    return any(not t.external_data and _tensor_bytes(t) > 65536 for t in graph.model.graph.initializer)


def _tensor_bytes(t: Any) -> int:
    for kv in t.external_data:
        if kv.key == "length":
            return int(kv.value)
    return int(math.prod(t.dims)) * _ITEMSIZE.get(t.data_type, 4)


def _value_types(model: Any) -> dict[str, Any]:
    """Every value's type and shape from ONNX's shape inference, run on a copy without the large weights (declared
    as typed inputs instead: shape inference needs only small constants' values, such as Reshape targets)."""
    import onnx

    stripped = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import,
                               functions=model.functions)
    g = stripped.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    declared = {i.name for i in g.input}
    for t in model.graph.initializer:
        if _tensor_bytes(t) <= 65536 and not t.external_data:
            g.initializer.append(t)
        elif t.name not in declared:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    inferred = onnx.shape_inference.infer_shapes(stripped, strict_mode=False)
    g = inferred.graph
    return {v.name: v for v in (*g.input, *g.output, *g.value_info)}


def _value_bytes(types: dict[str, Any]) -> dict[str, tuple[int, bool]]:
    """Each value's (bytes, half precision) where shape inference knows its static shape."""
    out = {}
    for name, v in types.items():
        tt = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tt.shape.dim]
        if tt.HasField("shape") and all(d > 0 for d in dims):
            out[name] = (int(math.prod(dims)) * _ITEMSIZE.get(tt.elem_type, 4), tt.elem_type in (_FP16, _BF16))
    return out
