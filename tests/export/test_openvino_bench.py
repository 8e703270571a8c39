"""The OpenVINO target through `bench` and the profile study on tiny models: the precision each op ran in, read
from OpenVINO's per-op counters (benchmarks.openvino_placement, benchmarks.studies.openvino_profile)."""

from __future__ import annotations

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

import openvino as ov

from sapiens_edge import runtime
from sapiens_edge.errors import OptionError, SapiensEdgeError
from sapiens_edge.export import core
from sapiens_edge.runtime.backends.openvino_backend import resolve_precision

RECIPES = ("openvino-fp32", "openvino-int8", "openvino-int8-hybrid")


@pytest.fixture(scope="module")
def artifacts(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino-bench")
    model = models["seg"]
    hw = model.sapiens_info.input_hw
    return {r: core.export(model, r, root / r, input_size=hw, calibration_limit=2, progress=lambda _: None)
            for r in RECIPES}


def _cpu_reduced() -> str:
    return resolve_precision("reduced", "CPU", list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")))


def test_bench_reports_the_precision_each_op_ran_in(artifacts):
    """`bench` profiles every OpenVINO row (per-op counters of the compiled model): fp32 computes in f32 alone, int8
    runs its linears in int8 kernels, and on a CPU with bf16 the hybrid runs attention and deconvs in bf16."""
    from sapiens_edge.benchmarks import bench as B
    from sapiens_edge.benchmarks import bench_output as O

    names = ("openvino-fp32", "openvino-int8", "openvino-int8-hybrid")
    result = B.bench([artifacts[r].path for r in names], runs=1, threads=1)
    rows = {r.name: r for r in result.rows}
    arithmetic = {r: set(rows[r].placement["precisions"]) - {"data movement"} for r in names}
    assert arithmetic["openvino-fp32"] == {"f32"}, rows["openvino-fp32"].placement
    assert rows["openvino-int8"].placement["precisions"]["int8"]["op_types"].get("FullyConnected", 0) >= 1
    if _cpu_reduced() == "bf16":
        hybrid = rows["openvino-int8-hybrid"].placement
        assert hybrid["requested"].startswith("f32 but ScaledDotProductAttention/ConvolutionBackpropData in bf16")
        assert {"Subgraph", "Deconvolution"} <= set(hybrid["precisions"]["bf16"]["op_types"]), hybrid
        assert arithmetic["openvino-int8-hybrid"] == {"bf16", "int8", "f32"}
    assert "- openvino-fp32: f32 requested; f32 " in O.to_markdown(result)
    assert B.bench([artifacts["openvino-fp32"].path], runs=1, threads=1, placement=False).rows[0].placement == {}
    with runtime.load(artifacts["openvino-fp32"].path) as p, pytest.raises(OptionError, match="profile=True"):
        p.session.op_profile()
    closed = runtime.load(artifacts["openvino-fp32"].path, profile=True)
    closed.close()
    with pytest.raises(SapiensEdgeError, match="closed; load the artifact again"):
        closed.session.op_profile()
    with pytest.raises(OptionError, match="profile must be True or False"):
        runtime.load(artifacts["openvino-fp32"].path, profile="yes")


def test_profile_study_compares_precisions_of_one_artifact(artifacts, tmp_path):
    """benchmarks.studies.openvino_profile: per setting, precision groups whose shares sum to one; the f32 hint
    computes nothing in bf16, and on a bf16 CPU the bf16 hint computes the float layers in bf16."""
    import csv

    from sapiens_edge.benchmarks.studies import openvino_profile

    out = tmp_path / "profile.csv"
    settings = "manifest,f32,bf16"
    assert openvino_profile.main([str(artifacts["openvino-int8"].path), "--precisions", settings, "--runs", "1",
                                  "--threads", "1", "--csv", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# title:") and any(line.startswith("# command: python -m") for line in lines)
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    by_setting: dict[str, dict[str, float]] = {}
    for row in rows:
        by_setting.setdefault(row["setting"].split(" ")[0], {})[row["precision"]] = float(row["share"])
    assert list(by_setting) == settings.split(",")
    for shares in by_setting.values():
        assert sum(shares.values()) == pytest.approx(1.0, abs=0.01) and shares.get("int8", 0) > 0, shares
    assert "bf16" not in by_setting["f32"] and "bf16" not in by_setting["manifest"]  # openvino-int8's hint: f32
    if _cpu_reduced() == "bf16":
        assert by_setting["bf16"]["bf16"] > by_setting["bf16"].get("f32", 0), by_setting["bf16"]
