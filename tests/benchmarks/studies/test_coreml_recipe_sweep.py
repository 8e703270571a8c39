"""The Core ML benchmark's table and package sizes (the exports and twins are covered by the
target and twin tests)."""

from __future__ import annotations

from sapiens_edge.benchmarks.studies import coreml_recipe_sweep as bench


def test_package_bytes_counts_every_file_of_the_mlpackage(tmp_path):
    weights = tmp_path / "model.mlpackage" / "Data" / "com.apple.CoreML" / "weights"
    weights.mkdir(parents=True)
    (weights / "weight.bin").write_bytes(b"\0" * 1000)
    (tmp_path / "model.mlpackage" / "Manifest.json").write_bytes(b"{}")
    (tmp_path / "manifest.json").write_bytes(b"x" * 50)  # the artifact's own files do not count
    assert bench.package_bytes(tmp_path) == 1002


def test_table_shows_the_columns_the_rows_have():
    rows = [{"model": "m", "config": "coreml-fp16", "deployment_target": "iOS16", "file_mib": 100.0,
             "size_vs_fp16": 1.0, "pixel_agreement": 0.999},
            {"model": "m", "config": "coreml-palettized-4bit", "deployment_target": "iOS18", "file_mib": 27.0,
             "size_vs_fp16": 0.27, "pixel_agreement": 0.95}]
    text = bench.table(rows)
    assert "| recipe | min target | package MiB | size vs fp16 | pixel agree |" in text
    assert "| coreml-palettized-4bit | iOS18 | 27 | 0.27 | 0.9500 |" in text
    assert "kp err" not in text  # columns no row has are left out
