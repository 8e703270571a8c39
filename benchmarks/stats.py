"""Latency statistics of one configuration's timed runs (pure: tested on made-up timings)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_times: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    if not sorted_times:
        return math.nan
    pos = (len(sorted_times) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_times[lo] + (sorted_times[hi] - sorted_times[lo]) * (pos - lo)


def latency_stats(times: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99, std (sample), min, max, and throughput (inferences per second, from the
    mean) of `times` in seconds; NaN everywhere for no runs."""
    n = len(times)
    if n == 0:
        nan = math.nan
        return {"runs": 0, "mean_s": nan, "p50_s": nan, "p90_s": nan, "p99_s": nan, "std_s": nan, "min_s": nan,
                "max_s": nan, "throughput_per_s": nan}
    ordered = sorted(times)
    mean = sum(ordered) / n
    std = math.sqrt(sum((t - mean) ** 2 for t in ordered) / (n - 1)) if n > 1 else 0.0
    return {"runs": n, "mean_s": mean, "p50_s": percentile(ordered, 50), "p90_s": percentile(ordered, 90),
            "p99_s": percentile(ordered, 99), "std_s": std, "min_s": ordered[0], "max_s": ordered[-1],
            "throughput_per_s": 1.0 / mean if mean > 0 else math.inf}
