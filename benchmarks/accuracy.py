"""The accuracy column of a bench: `validate --report` documents matched to the rows they describe.

A row takes the report of its own artifact (by resolved path, else by recipe). On ONNX Runtime the
report must come from the same execution provider: an fp16 graph computes differently on CUDA,
TensorRT and the CPU, so a CPU validation says nothing of the CUDA row's accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Each task's headline accuracy metric for the accuracy-latency plot: (metric, higher is better).
ACCURACY_METRIC = {"seg": ("pixel_agreement", True), "pose": ("keypoint_err_px", False),
                   "normal": ("angle_mean_deg", False), "pointmap": ("depth_rel_err", False)}


def load_validation_reports(paths: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Validation JSON reports (`validate --report` files), indexed by `validation_index`."""
    from sapiens_edge.errors import SapiensEdgeError

    docs = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SapiensEdgeError(f"Cannot read validation report {p}: {exc}. Pass the .json that "
                                   f"`sapiens-edge validate --report` wrote.") from exc
        if "recipe" not in doc or "task_metrics" not in doc:
            raise SapiensEdgeError(f"{p} is not a sapiens-edge validation report (no recipe / task_metrics).")
        docs.append(doc)
    return validation_index(docs)


def validation_index(docs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Validation reports keyed by recipe, by their artifact's resolved path, and by path@provider
    (one artifact validated on several ONNX Runtime providers keeps a report per provider)."""
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        out[doc["recipe"]] = doc
        if doc.get("artifact"):
            path = str(Path(doc["artifact"]).resolve())
            out[path] = doc
            provider = (doc.get("backend_info") or {}).get("requested_provider")
            if provider:
                out[f"{path}@{provider}"] = doc
    return out


def match_validation(reports: dict[str, dict[str, Any]], *, artifact: str | None, recipe: str,
                     backend: str | None, provider: str | None = None) -> dict[str, Any] | None:
    """The report for a row: its artifact, else its recipe; on ONNX Runtime only one made on the
    row's provider (`provider`: "cpu", "cuda", ... or None for the CPU)."""
    from sapiens_edge.runtime.backends.onnxruntime_backend import PROVIDERS  # names only; no onnxruntime import

    path = str(Path(artifact).resolve()) if artifact else None
    ort_name = PROVIDERS.get(provider or "cpu", provider) if backend == "onnxruntime" else None
    for key in ([f"{path}@{ort_name}"] if path and ort_name else []) + [path, recipe]:
        report = reports.get(key) if key else None
        if report is None:
            continue
        used = (report.get("backend_info") or {}).get("requested_provider")
        if ort_name and used and used != ort_name:
            continue
        return report
    return None


def accuracy_of(report: dict[str, Any]) -> dict[str, Any]:
    """The row's accuracy cell: the task's headline metric, its direction and the gate's verdict."""
    task = report.get("task")
    metric, higher = ACCURACY_METRIC.get(task, (None, True))
    value = (report.get("task_metrics") or {}).get(metric, {}).get("mean") if metric else None
    status = "FATAL" if report.get("fatal") else ("PASSED" if report.get("passed") else "FAILED")
    return {"metric": metric, "value": value, "higher_is_better": higher, "gate": status}
