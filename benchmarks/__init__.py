"""Benchmarks (`sapiens_edge.benchmarks`): load time, peak memory and eager latency today;
artifact benchmarks across backends arrive with the export targets."""
