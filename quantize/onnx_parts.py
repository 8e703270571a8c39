"""Cut an ONNX graph into consecutive parts, for calibrating a large model part by part.

ONNX Runtime's calibration session holds the whole model's fp32 weights (5.9 GB for a 1b) and every
activation it calibrates for an image at once (a histogram method takes them whole). Run part by part
instead, every image through part 1, then every image through part 2, and so on, and only one part's
weights and activations are held; what crosses from one part to the next (a transformer's residual
stream between two blocks: 19 MB per image for a 1b at 1024x768) is all that is kept of each image.
Ranges are per tensor, so calibrating the parts gives the same ranges as the whole graph.

A cut goes where little crosses it: among the nodes after which a part would hold between half and
1.5 times its share of the weights, the one after which the fewest bytes are still to be read later
(between two transformer blocks, only the residual stream), the closest to the share of equal ones. Constants
(initializers and what is computed from them alone) never cross: a part recomputes or re-reads them.
Each part is written next to the model, sharing its external data file, so no weight is copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sapiens_edge.runtime.backends.onnx_plan import save_external, weight_derived

# Weights per part: 1 GiB of fp32 weights keeps a 1b's calibration session (six parts) small beside the
# rest of the export; 0.1b (0.46 GB) stays whole.
PART_BYTES = 1 << 30
# A part may hold from 2 - WINDOW to WINDOW times its share of the weights, for a cheaper cut.
WINDOW = 1.5


@dataclass(frozen=True)
class Part:
    """Nodes `start`..`end` (exclusive) of the graph; `inputs`: tensors read from earlier parts (or the
    graph's inputs); `outputs`: tensors later parts read, and the graph outputs made here."""

    start: int
    end: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _tensor_bytes(info) -> float:
    """Bytes of a ValueInfoProto's tensor; inf when its shape or type is not fully known."""
    import onnx

    tensor = info.type.tensor_type
    if not tensor.HasField("shape") or not tensor.elem_type:
        return math.inf
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim]
    if any(d <= 0 for d in dims):
        return math.inf
    return float(np.prod(dims, dtype=np.float64)) * onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize


def _initializer_bytes(init) -> int:
    import onnx

    count = int(np.prod(list(init.dims), dtype=np.int64)) if init.dims else 1
    return count * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize


def _constants(graph) -> set[str]:
    """Initializers and the outputs of nodes that read only constants (and have no subgraph)."""
    return {init.name for init in graph.initializer} | set(weight_derived(graph))


def _whole(graph) -> list[Part]:
    return [Part(0, len(graph.node), tuple(i.name for i in graph.input), tuple(o.name for o in graph.output))]


def plan(model, max_part_bytes: int = PART_BYTES) -> list[Part]:
    """The parts of `model` (a ModelProto with inferred shapes; weights may stay external), each
    holding about `max_part_bytes` of weights (from half to 1.5 times an equal share) where the graph
    can be cut so. One part when the weights fit in one, or the graph has control flow."""
    graph = model.graph
    nodes = list(graph.node)
    sizes = {init.name: _initializer_bytes(init) for init in graph.initializer}
    total = sum(sizes.values())
    whole = _whole(graph)
    count = math.ceil(total / max_part_bytes) if max_part_bytes > 0 else 1
    if count <= 1 or len(nodes) < 2 or any(a.type in (a.GRAPH, a.GRAPHS) for n in nodes for a in n.attribute):
        return whole  # (a subgraph may read outer tensors that its node does not list as inputs)
    const = _constants(graph)
    infos = {vi.name: vi for vi in (*graph.value_info, *graph.input, *graph.output)}
    producer = {name: -1 for name in (i.name for i in graph.input)}
    last_reader: dict[str, int] = {}
    first_use: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            producer[name] = index
        for name in node.input:
            if name in sizes:
                first_use.setdefault(name, index)
            elif name and name not in const:
                last_reader[name] = index
    outputs = {o.name for o in graph.output}
    weight_at = [0] * len(nodes)
    for name, index in first_use.items():
        weight_at[index] += sizes[name]
    # Tensors alive after each node: produced at or before it, read after it. A sweep over the nodes.
    alive: set[str] = set()
    crossing: list[frozenset[str]] = []
    ends: dict[int, list[str]] = {}
    for name, index in last_reader.items():
        ends.setdefault(index, []).append(name)
    for index, node in enumerate(nodes):
        alive.update(n for n in node.output if n not in const and last_reader.get(n, -1) > index)
        alive.difference_update(ends.get(index, ()))
        crossing.append(frozenset(alive))
    # graph inputs read later are alive from the start
    for name in (i.name for i in graph.input):
        for index in range(max(0, producer[name] + 1), last_reader.get(name, -1)):
            crossing[index] = crossing[index] | {name}
    cost = [sum(_tensor_bytes(infos[n]) if n in infos else math.inf for n in c) if c else math.inf
            for c in crossing]
    target = total / count
    cuts: list[int] = []
    start, last = 0, len(nodes) - 1
    while len(cuts) < count - 1:
        # Among the nodes after which the part holds within WINDOW of its share of the weights, the
        # cut with the fewest bytes crossing it (between two transformer blocks: only the residual
        # stream); of equal ones, the closest to the share.
        held, best, best_key = 0, None, None
        for index in range(start, last):
            held += weight_at[index]
            if held < (2 - WINDOW) * target:
                continue
            if held > WINDOW * target and best is not None:
                break
            if math.isfinite(cost[index]) and all(producer.get(n, -1) >= start for n in crossing[index]):
                key = (cost[index], abs(held - target))
                if best_key is None or key < best_key:
                    best, best_key = index, key
        if best is None:
            break
        cuts.append(best)
        start = best + 1
    if not cuts:
        return whole
    parts, start, reads = [], 0, tuple(i.name for i in graph.input)
    for cut in [*cuts, len(nodes) - 1]:
        made = {n for node in nodes[start:cut + 1] for n in node.output}
        later = sorted(crossing[cut]) if cut < len(nodes) - 1 else []
        outs = tuple(later) + tuple(sorted(made & outputs - set(later)))
        parts.append(Part(start, cut + 1, reads, outs))
        start, reads = cut + 1, tuple(later)
    return parts


def write_part(model, part: Part, path: Path) -> Path:
    """Write `part` of `model` (inferred shapes, weights external or inline) as its own model at
    `path`, which must sit beside the model's external data file: the part's initializers keep
    pointing into that file. Constants the part reads but earlier nodes made are recomputed in it."""
    import onnx
    from onnx import helper

    graph = model.graph
    nodes = list(graph.node)
    const = _constants(graph)
    producers = {out: node for node in nodes for out in node.output}
    body = nodes[part.start:part.end]
    needed: list = []
    have = {o for node in body for o in node.output} | set(part.inputs)
    pending = [i for node in body for i in node.input if i and i not in have]
    seen: set[str] = set()
    while pending:  # constant subgraphs made before the part
        name = pending.pop()
        if name in seen or name in have or name not in producers or name not in const:
            continue
        seen.add(name)
        node = producers[name]
        needed.append(node)
        pending.extend(i for i in node.input if i)
    order = {id(node): k for k, node in enumerate(nodes)}
    members = sorted({id(n): n for n in (*needed, *body)}.values(), key=lambda n: order[id(n)])
    read = {i for node in members for i in node.input}
    infos = {vi.name: vi for vi in (*graph.value_info, *graph.input, *graph.output)}
    inits = [init for init in graph.initializer if init.name in read]
    made = {o for node in members for o in node.output}
    sub = helper.make_graph(members, f"{graph.name}_part{part.start}",
                            [infos[n] for n in part.inputs], [infos[n] for n in part.outputs], inits,
                            value_info=[vi for vi in graph.value_info if vi.name in made])
    proto = helper.make_model(sub, opset_imports=list(model.opset_import), producer_name=model.producer_name)
    proto.ir_version = model.ir_version
    proto.functions.extend(model.functions)
    onnx.save(proto, str(path))
    return path


class PartedModel:
    """A model file and its parts (`plan`), written one at a time (`write`). A model whose weights
    are all inline in its .onnx is first re-saved with external data in `workdir`, so that the parts
    can share one data file instead of each copying its weights."""

    def __init__(self, model_path: Path, workdir: Path, max_part_bytes: int = PART_BYTES) -> None:
        import onnx

        proto = onnx.load(str(model_path), load_external_data=False)  # inline weights come with it
        total = sum(_initializer_bytes(init) for init in proto.graph.initializer)
        self.model_path, self.graph = model_path, None
        if max_part_bytes <= 0 or total <= max_part_bytes:
            self.parts = _whole(proto.graph)
            return
        self.folder = model_path.parent
        if not any(init.data_location == init.EXTERNAL for init in proto.graph.initializer):
            self.folder = workdir
            save_external(proto, workdir / "parted.onnx")
        self.graph = onnx.shape_inference.infer_shapes(proto)
        del proto
        self.parts = plan(self.graph, max_part_bytes)

    def write(self, index: int) -> Path:
        """Part `index` as a model file beside the weights' data file (delete it when done)."""
        path = self.folder / f"{self.model_path.stem}.part{index}.onnx"
        return write_part(self.graph, self.parts[index], path)
