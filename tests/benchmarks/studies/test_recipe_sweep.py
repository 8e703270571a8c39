"""The recipe benchmark's timing loop: interleaved rounds, medians, on a fake clock."""

from __future__ import annotations

from sapiens_edge.benchmarks.studies import recipe_sweep as bench


def test_interleaved_rounds_run_each_config_once_per_round_and_take_medians(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    calls: list[str] = []
    # each call advances the fake clock by its configuration's cost; "b" has one slow outlier
    costs = {"a": iter([1.0, 1.0, 1.0, 1.0]), "b": iter([2.0, 2.0, 9.0, 2.0])}

    def make(name):
        def fn():
            calls.append(name)
            clock[0] += next(costs[name])
        return fn

    medians = bench.interleaved({"a": make("a"), "b": make("b")}, runs=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then round-robin
    assert medians == {"a": 1.0, "b": 2.0}  # the 9 s spell does not move the median
