"""The OpenVINO peer study: the peer (OpenVINO's plain conversion of the torch module) computes the model, and the
CSV it writes is one the results page reads."""

from __future__ import annotations

import pytest

pytest.importorskip("openvino")
pytest.importorskip("torch")

from sapiens_edge.benchmarks.results_page import read_table
from sapiens_edge.benchmarks.studies import openvino_peer
from sapiens_edge.validation import metrics as M
from tests.export.shared import photo_input, tiny_model, torch_outputs


def test_the_peer_is_the_model_in_openvino():
    model = tiny_model("seg")
    x = photo_input("seg", model.sapiens_info.input_hw)
    ref = torch_outputs(model, x)[0]
    configs = openvino_peer.peers(model, x, threads=1)
    assert len(configs) == 2
    f32 = next(fn for name, fn in configs.items() if "f32 hint (f32)" in name)
    assert M.rel_l2(ref, f32()[0]) < 1e-3  # plain fp32 RoPE (not bf16-exact): close, not exact


def test_csv_has_the_results_header(tmp_path):
    path = tmp_path / "openvino.csv"
    rows = [{"model": "m", "config": "openvino-int8", "latency_s": 0.5, "pixel_agreement": 0.991}]
    openvino_peer.write_csv(path, rows, "python -m sapiens_edge.benchmarks.studies.openvino_peer", 2, "n")
    table = read_table(path)
    assert table.meta["threads"] == "2" and "openvino" in table.meta["versions"]
    assert table.rows[0][:3] == ["config", "latency s", "vs torch fp32"]
    assert table.rows[1][:2] == ["openvino-int8", "0.5"]
