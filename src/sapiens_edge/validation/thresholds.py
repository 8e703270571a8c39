"""The gate's limits and checks: a recipe's thresholds for a task (with a caller's overrides), per-image
values aggregated to mean and worst, and one pass/fail check per threshold. Torch-free."""

from __future__ import annotations

import re

import numpy as np

from sapiens_edge.errors import RecipeError, SapiensEdgeError

from . import metrics as M
from .report import MetricResult

# A threshold's key: <metric>_min or <metric>_max.
THRESHOLD_KEY = re.compile(r"^(?P<metric>.+)_(?P<kind>min|max)$")


def resolve_thresholds(recipe: str, task: str, overrides: dict[str, float | None] | None = None) -> dict[str, float]:
    """The recipe's limits for ``task`` with ``overrides`` merged over them (None drops a key)."""
    from sapiens_edge.export.recipes import get_recipe

    try:
        base = get_recipe(recipe).thresholds_for(task)
    except RecipeError:
        if not overrides:
            raise
        base = {}
    merged = {**base, **(overrides or {})}
    valid = set(M.TENSOR_METRICS) | set(M.TASK_METRICS.get(task, ()))
    out: dict[str, float] = {}
    for key, value in merged.items():
        match = THRESHOLD_KEY.match(key)
        if match is None or match["metric"] not in valid:
            raise SapiensEdgeError(
                f"Unknown threshold {key!r} for a {task} artifact. Thresholds are <metric>_min or <metric>_max "
                f"with metric one of: {', '.join(sorted(valid))}.")
        if value is not None:
            out[key] = float(value)
    return out


def make_checks(limits: dict[str, float], tensor_agg: dict[str, dict[str, dict[str, float]]],
                task_agg: dict[str, dict[str, float]]) -> list[MetricResult]:
    """One check per task threshold, and per output for tensor thresholds ("cosine[logits]")."""
    checks = []
    for key, limit in limits.items():
        match = THRESHOLD_KEY.match(key)
        metric, kind = match["metric"], match["kind"]
        if metric in M.TENSOR_METRICS:
            for out, ms in tensor_agg.items():
                checks.append(MetricResult.check(f"{metric}[{out}]", ms[metric]["mean"], limit, kind,
                                                 ms[metric]["worst"]))
        elif metric in task_agg:
            agg = task_agg[metric]
            checks.append(MetricResult.check(metric, agg["mean"], limit, kind, agg["worst"]))
        else:  # named but not computed: a renamed metric must not silently drop its limit
            checks.append(MetricResult.missing(metric, limit, kind))
    return checks


def aggregate(metric: str, values: list[float], strict: bool) -> dict[str, float]:
    """Mean and worst image. strict: any NaN makes both NaN (non-finite outputs must fail);
    otherwise images where the metric was not computable are left out."""
    a = np.asarray(values, dtype=np.float64)
    if not strict:
        a = a[~np.isnan(a)]
    if a.size == 0 or np.isnan(a).any():
        return {"mean": float("nan"), "worst": float("nan")}
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float(np.mean(a))
    worst = float(a.min() if metric in M.HIGHER_IS_BETTER else a.max())
    return {"mean": mean, "worst": worst}
