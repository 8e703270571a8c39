"""Run an ONNX graph as consecutive pieces, one ONNX Runtime session open at a time.

A 5b model's fp16 weights (10 GB) and its dense head's activations at 1024x768 (several GB more in the
fp32 that ONNX Runtime's CPU provider computes in) do not fit a 24 GiB machine in one session. Cut into
pieces at points where little crosses (a transformer's residual stream between blocks), each piece
holds only its own weights: the first pieces hold the backbone's blocks and small activations, the last
holds the head's few weights and its large activations. The nodes, weights and kernels are those of the
whole graph, run in the same order; only the tensors crossing a cut are handed from one session to the
next. Cuts avoid the tensors ONNX Runtime fuses with their consumers (Q/DQ, Cast), so the outputs are the
whole session's bit for bit for fp32 and int8 graphs at any optimisation level (tested). In an fp16 graph a
crossing tensor is rounded to the fp16 the graph declares, where one CPU session may keep it in fp32 between
two ops it has no fp16 kernel for; cuts at fp32 tensors are preferred for that reason.

Pieces are planned from the graph alone (no weights read): `plan(graph, budget)` cuts greedily so that each
piece's estimated session memory stays under `budget`; `plan_count(graph, n)` finds the smallest budget that
gives `n` pieces. The piece models are serialised in memory, their initializers pointing into the
artifact's external data file (ONNX Runtime is told its folder), so the artifact is read in place; a model
with its weights inside the .onnx (under 2 GB) is first copied to a scratch folder with external data, or
every piece would carry all the weights. Piece sessions run without ONNX Runtime's memory arena, so a
closed piece's memory goes back to the OS before the next opens.
"""

from __future__ import annotations

import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .onnx_plan import GraphPlan, Piece


def piece_model(graph: GraphPlan, piece: Piece) -> Any:
    """The ONNX model of one piece: its nodes, the Constants and weights they read, its crossing tensors
    as inputs and outputs (typed from the graph's shape inference)."""
    import onnx

    model = graph.model
    nodes = graph.nodes[piece.start:piece.stop]
    used = graph.reads(t for node in nodes for t in node.input)
    derived = {id(n): (pos, n) for t, (pos, n) in graph.derived.items() if t in used}
    constants = [n for _, n in sorted(derived.values(), key=lambda pn: pn[0])]
    inits = [t for t in model.graph.initializer if t.name in used]
    types = graph.types
    sub = onnx.helper.make_graph(
        [*constants, *nodes], f"{model.graph.name}_piece{piece.start}",
        [types[t] for t in piece.inputs], [types[t] for t in piece.outputs], initializer=inits)
    out = onnx.helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    out.functions.extend(model.functions)
    return out


class PiecewiseSession:
    """Runs the pieces in order, one ONNX Runtime session at a time, handing the crossing tensors on."""

    def __init__(self, model_path: Path, pieces: list[Piece], graph: GraphPlan, make_options, providers,
                 output_names: list[str], scratch: Path | None = None) -> None:
        self.model_path = Path(model_path)
        # a scratch copy of an inline-weights model (`onnx_plan.save_external`), removed on close or when collected
        self._cleanup = weakref.finalize(self, shutil.rmtree, scratch, True) if scratch else None
        self.pieces = pieces
        self._last_use = dict(graph.last_use)
        self._graph = graph
        for p in pieces:
            p.model = piece_model(graph, p).SerializeToString()
        self._make_options = make_options
        self._providers = providers
        self._output_names = output_names
        self._providers_used: list[str] = []

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        import onnxruntime as ort

        from sapiens_edge.memory import release_memory

        values = dict(feed)
        for p in self.pieces:
            opts = self._make_options()
            opts.log_severity_level = 3  # a piece's unused-initializer notices are not the user's concern
            # Without ONNX Runtime's arena a closed piece's memory goes back to the OS (with it, glibc kept 2 GiB of
            # the first 0.4b pointmap piece under the next: 5.7 GiB peak in 2 pieces; without, 2.7 GiB).
            opts.enable_cpu_mem_arena = False
            opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                          str(self.model_path.parent))
            sess = ort.InferenceSession(p.model, sess_options=opts, providers=self._providers)
            self._providers_used = list(sess.get_providers())
            outs = sess.run(p.outputs, {t: values[t] for t in p.inputs})
            values.update(zip(p.outputs, outs, strict=True))
            values = {t: v for t, v in values.items() if self._last_use.get(t, -1) >= p.stop}
            del sess, outs
            release_memory()  # the piece's weights go back before the next one maps its own
        return [values[t] for t in (output_names or self._output_names)]

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()

    def get_inputs(self) -> list[_Arg]:
        return [_arg(self._graph.types[t]) for t in self._graph.graph_inputs]

    def get_outputs(self) -> list[_Arg]:
        return [_arg(self._graph.types[t]) for t in self._graph.graph_outputs]

    def get_providers(self) -> list[str]:
        return self._providers_used or [p if isinstance(p, str) else p[0] for p in self._providers]

    def end_profiling(self) -> str:
        return ""


@dataclass(frozen=True)
class _Arg:
    """What ONNX Runtime's NodeArg tells: a graph input's or output's name and type ("tensor(float)")."""

    name: str
    type: str


_ORT_TYPE_NAMES = {1: "float", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "double",
                   16: "bfloat16"}


def _arg(value_info: Any) -> _Arg:
    return _Arg(value_info.name, f"tensor({_ORT_TYPE_NAMES.get(value_info.type.tensor_type.elem_type, '?')})")
