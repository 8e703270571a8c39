"""Which execution provider ran each node of an ONNX artifact, read from ONNX Runtime's profiler.

With the CUDA or TensorRT provider, ONNX Runtime places every node the accelerator has no kernel
for on the CPU provider, silently: a model can then spend most of its time on the CPU while the
row says "cuda". `bench` measures this for every ONNX Runtime row on an accelerator (one extra
profiled session, two runs, after the timed rounds) and reports how many nodes ran elsewhere, their
op types, and their share of the node time the profiler recorded. That time is host time: for a
CUDA node it is the launch, not the kernel, so the share of CPU nodes reads high; the node counts
and op types are exact.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# ONNX Runtime's copies between host and device: they run on the accelerator's provider and are
# reported on their own, as they are the price of handing numpy arrays to a GPU.
COPY_OPS = ("MemcpyFromHost", "MemcpyToHost")


def summarize_trace(events: Iterable[dict[str, Any]], requested: str) -> dict[str, Any]:
    """Node events of the last `model_run` in an ONNX Runtime profile trace -> per provider: nodes,
    recorded node time (µs, host side), its share, and op types (with counts) off `requested`."""
    events = list(events)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = max((e["ts"] for e in runs), default=0)
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("ts", 0) >= start
             and str(e.get("name", "")).endswith("_kernel_time")]
    if not nodes:
        raise ValueError("the profile trace has no node events (was profiling enabled and the model run?)")
    providers: dict[str, dict[str, Any]] = {}
    for e in nodes:
        args = e.get("args") or {}
        p = providers.setdefault(args.get("provider", "unknown"), {"nodes": 0, "time_us": 0, "ops": Counter()})
        p["nodes"] += 1
        p["time_us"] += int(e.get("dur", 0))
        p["ops"][args.get("op_name", "?")] += 1
    total = sum(p["time_us"] for p in providers.values()) or 1
    for p in providers.values():
        p["share"] = p["time_us"] / total
        p["ops"] = dict(p["ops"].most_common())
    off = {name: p for name, p in providers.items() if name != requested}
    copies = {op: n for p in providers.values() for op, n in p["ops"].items() if op in COPY_OPS}
    return {"requested": requested, "providers": providers,
            "off_requested_share": sum(p["share"] for p in off.values()),
            "off_requested_ops": dict(sum((Counter(p["ops"]) for p in off.values()), Counter()).most_common()),
            "host_device_copies": copies}


def measure_placement(artifact: str | Path, x: np.ndarray, **options: Any) -> dict[str, Any]:
    """Open `artifact` in ONNX Runtime with profiling and `options` (provider, threads,
    provider_options), run `x` twice and summarize where the second run's nodes ran."""
    from sapiens_edge import runtime

    with tempfile.TemporaryDirectory(prefix="sapiens-placement-") as tmp:
        predictor = runtime.load(artifact, "onnxruntime", verify=False, profile=tmp, **options)
        try:
            requested = predictor.describe()["requested_provider"]
            predictor.run(x)  # the first run pays for engine builds and autotuning
            predictor.run(x)
            trace = predictor.session.end_profiling()
        finally:
            predictor.close()
        events = json.loads(Path(trace).read_text("utf-8"))
    return summarize_trace(events, requested)


def placement_note(placement: dict[str, Any]) -> str:
    """One line for tables: how many nodes ran off the requested provider, on what, and their share of
    the recorded node time (an OpenVINO row's: the share of each precision, openvino_placement)."""
    if placement.get("backend") == "openvino":
        from .openvino_placement import openvino_placement_note

        return openvino_placement_note(placement)
    short = placement["requested"].replace("ExecutionProvider", "")
    total = sum(p["nodes"] for p in placement["providers"].values())
    if not placement.get("off_requested_ops"):
        return f"all {total} nodes on {short}"
    off = sum(placement["off_requested_ops"].values())
    ops = ", ".join(f"{op} x{n}" for op, n in list(placement["off_requested_ops"].items())[:6])
    others = ", ".join(p.replace("ExecutionProvider", "") for p in placement["providers"]
                       if p != placement["requested"])
    return (f"{off} of {total} nodes off {short} (on {others}: {ops}); "
            f"{placement.get('off_requested_share', 0.0):.1%} of the profiled node time")
