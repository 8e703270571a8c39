"""Which precision each op of an OpenVINO artifact ran in, and the share of the time each precision took.

ONNX Runtime's question is which provider ran a node; OpenVINO's is which precision: the `mixed`, `hybrid` and
`fp16` recipes compute parts of the model in bf16/f16 (chosen per device at load), the int8 ones in int8 where
the plugin found a quantized kernel, and a plugin may keep a layer in f32 that the recipe meant otherwise. `bench`
measures it for every OpenVINO row (one more compiled model with OpenVINO's per-op counters, two runs, after the
timed rounds) from the compiled model's runtime graph: each op's kernel, its runtime precision and its time.
The times are the plugin's own per-op counters, so they sum to about the run's latency on a CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# The plugin's runtime precisions -> the arithmetic they stand for (an int8 kernel reports u8 or i8 by its
# activations' sign).
PRECISIONS = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f16": "f16", "f32": "f32"}
# Ops that move or reshape data rather than compute: reported apart, as they are the price of the layouts and
# precisions the plugin picked, not arithmetic in a precision.
DATA_MOVEMENT = ("Reorder", "Transpose", "Concatenation", "Split", "Reshape", "Gather", "Broadcast",
                 "StridedSlice")


def precision_group(op: dict[str, Any]) -> str:
    """The group an op of `op_profile()` counts in: int8 / bf16 / f16 / f32 arithmetic, data movement, or other."""
    if op["type"] in DATA_MOVEMENT:
        return "data movement"
    return PRECISIONS.get(op["precision"].lower(), "other")


def summarize_ops(ops: Iterable[dict[str, Any]], requested: str) -> dict[str, Any]:
    """`op_profile()` entries -> per precision group: ops, time (µs), its share, and op types (with counts,
    most time first); `requested` is the inference precision the session was compiled with."""
    ops = list(ops)
    total = sum(op["us"] for op in ops)
    if not ops or total <= 0:
        raise ValueError("the OpenVINO profile has no timed ops (was the model compiled with profile=True and run?)")
    groups: dict[str, dict[str, Any]] = {}
    for op in ops:
        g = groups.setdefault(precision_group(op), {"ops": 0, "time_us": 0, "types": Counter(), "type_us": Counter()})
        g["ops"] += 1
        g["time_us"] += op["us"]
        g["types"][op["type"]] += 1
        g["type_us"][op["type"]] += op["us"]
    for g in groups.values():
        g["share"] = g["time_us"] / total
        g["op_types"] = {t: g["types"][t] for t, _ in g.pop("type_us").most_common()}
        del g["types"]
    ordered = dict(sorted(groups.items(), key=lambda kv: -kv[1]["time_us"]))
    return {"backend": "openvino", "requested": requested, "time_us": total, "precisions": ordered}


def requested_precision(info: dict[str, Any]) -> str:
    """What the session was compiled for, from its `describe()`: "f32", "bf16", ..., or for openvino-int8-hybrid
    "f32 but ScaledDotProductAttention/ConvolutionBackpropData in bf16"."""
    requested, reduced = info["inference_precision"], info.get("reduced_ops")
    if reduced and reduced["ops"]:
        requested += f" but {'/'.join(reduced['op_types'])} in {reduced['precision']}"
    return requested


def measure_openvino_placement(artifact: str | Path, x: np.ndarray, **options: Any) -> dict[str, Any]:
    """Open `artifact` with OpenVINO's per-op counters and `options` (device, threads, inference_precision), run
    `x` twice and summarize the second run by precision."""
    from sapiens_edge import runtime

    predictor = runtime.load(artifact, "openvino", verify=False, profile=True, **options)
    try:
        predictor.run(x)  # the first run pays for lazy kernel set-up
        predictor.run(x)
        return summarize_ops(predictor.session.op_profile(), requested_precision(predictor.describe()))
    finally:
        predictor.close()


def openvino_placement_note(placement: dict[str, Any]) -> str:
    """One line for tables: each precision group's share of the per-op time and its costliest op types."""
    parts = []
    for name, g in placement["precisions"].items():
        types = ", ".join(f"{t} x{n}" for t, n in list(g["op_types"].items())[:3])
        parts.append(f"{name} {g['share']:.1%} ({types})")
    return f"{placement['requested']} requested; " + "; ".join(parts)
