"""The gate runs what fits: an ONNX artifact whose one ONNX Runtime session would not fit in the memory
available runs in pieces, one session at a time (`runtime/backends/onnx_pieces.py`), and the report says so.
The pieces compute the whole graph's outputs (see there), so the gate's verdict is the artifact's."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sapiens_edge.errors import SapiensEdgeError
from sapiens_edge.manifest import read_manifest
from sapiens_edge.runtime import backends as runtime_backends


def fit_pieces(artifact_dir: str | Path, backend: str | None, options: dict[str, Any], notes: list[str],
               say: Callable[[str], None], reserve: int = 0) -> dict[str, Any]:
    """`options` with `pieces` set when the artifact runs on ONNX Runtime's CPU provider, none was asked for, and
    one session would not fit in the memory available less `reserve` (a live reference's weights); unchanged
    otherwise. InsufficientMemoryError when not even pieces fit."""
    from sapiens_edge.memory import SKIP_ENV, available_bytes

    if options.get("pieces") or options.get("provider") not in (None, "cpu", "CPUExecutionProvider"):
        return options
    try:
        manifest = read_manifest(artifact_dir, verify=False)
        name = backend or runtime_backends.default_backend(manifest)
    except SapiensEdgeError:  # runtime.load reports an unreadable artifact properly
        return options
    model_path = Path(artifact_dir) / str(manifest.model_file)
    available = available_bytes()
    available = None if available is None else available - reserve
    if name != "onnxruntime" or not model_path.is_file() or available is None \
            or os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return options
    from sapiens_edge.runtime.backends.onnx_plan import load_graph, pieces_to_fit, whole_estimate, worth_planning

    if not worth_planning(model_path, available):
        return options

    graph = load_graph(model_path, optimised=options.get("graph_optimization", "all") != "disable")
    n = pieces_to_fit(graph, available)
    if n == 1:
        return options
    need = whole_estimate(graph)
    notes.append(f"In pieces: one ONNX Runtime session of this artifact needs about {need / 2**30:.1f} GiB and "
                 f"{available / 2**30:.1f} GiB was available, so it ran as {n} consecutive sessions, one at a time "
                 f"(cut where the fewest activations cross; each piece's nodes and weights as in the file).")
    say(f"running the artifact in {n} pieces, one ONNX Runtime session at a time (one session needs about "
        f"{need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available)")
    return {**options, "pieces": n}
