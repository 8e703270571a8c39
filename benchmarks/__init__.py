"""Benchmarks (`sapiens_edge.benchmarks`): `bench` (artifacts side by side in interleaved rounds, any
backend, torch eager as a baseline), runtime memory, and `results_page` (docs/results.md from
results/*.csv). One-off studies behind the documented figures live in `studies/`."""
