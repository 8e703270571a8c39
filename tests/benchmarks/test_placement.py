"""Node placement from ONNX Runtime's profiler: a made-up GPU trace (CUDA with CPU fallbacks) and a
real CPU profile of a tiny artifact through `bench`."""

from __future__ import annotations

import csv
import io

import pytest

from sapiens_edge.benchmarks import bench as B
from sapiens_edge.benchmarks import bench_output as O
from sapiens_edge.benchmarks.placement import placement_note, summarize_trace

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def _node(name, op, provider, ts, dur):
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
            "args": {"op_name": op, "provider": provider}}


def _gpu_trace():
    first_run = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 90},
                 _node("conv", "Conv", CUDA, 10, 70), _node("norm", "RMSNormalization", CPU, 80, 5)]
    second_run = [{"cat": "Session", "name": "model_run", "ts": 100, "dur": 1000},
                  _node("copy_in", "MemcpyFromHost", CUDA, 101, 50),
                  _node("conv", "Conv", CUDA, 151, 700),
                  _node("norm1", "RMSNormalization", CPU, 851, 100), _node("norm2", "RMSNormalization", CPU, 951, 100),
                  _node("shape", "Shape", CPU, 1051, 50),
                  {"cat": "Node", "name": "conv_fence_before", "ts": 152, "dur": 0, "args": {"provider": CUDA}}]
    return first_run + second_run


def test_trace_summary_counts_the_last_run_per_provider():
    s = summarize_trace(_gpu_trace(), CUDA)
    cuda, cpu = s["providers"][CUDA], s["providers"][CPU]
    assert (cuda["nodes"], cuda["time_us"], cpu["nodes"], cpu["time_us"]) == (2, 750, 3, 250)  # first run ignored
    assert s["off_requested_share"] == pytest.approx(250 / 1000)
    assert s["off_requested_ops"] == {"RMSNormalization": 2, "Shape": 1}
    assert s["host_device_copies"] == {"MemcpyFromHost": 1}
    note = placement_note(s)
    assert note == "3 of 5 nodes off CUDA (on CPU: RMSNormalization x2, Shape x1); 25.0% of the profiled node time"


def test_trace_without_nodes_is_an_error():
    with pytest.raises(ValueError, match="no node events"):
        summarize_trace([{"cat": "Session", "name": "model_run", "ts": 0, "dur": 1}], CUDA)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from sapiens_edge.export import core
    from tests.export.shared import tiny_model

    model = tiny_model("seg")
    path = tmp_path_factory.mktemp("placement") / "seg-fp32"
    core.export(model, "onnx-fp32", path, input_size=model.sapiens_info.input_hw, progress=lambda _: None)
    return path


def test_bench_profiles_placement_on_request(tiny_onnx):
    result = B.bench([tiny_onnx], runs=1, threads=1, placement=True)
    row = result.rows[0]
    assert row.status == "ok" and set(row.placement["providers"]) == {CPU}
    assert row.placement["providers"][CPU]["nodes"] > 20 and row.placement["off_requested_share"] == 0
    nodes = row.placement["providers"][CPU]["nodes"]
    assert O.placement_line(row) == f"all {nodes} nodes on CPU"
    md = O.to_markdown(result)
    assert "Node placement" in md and f"- onnx-fp32: all {nodes} nodes on CPU" in md
    assert next(csv.DictReader(io.StringIO(O.to_csv(result))))["placement"] == f"all {nodes} nodes on CPU"
    # on the CPU provider placement is not profiled unless asked for: nothing to learn, one session less
    assert B.bench([tiny_onnx], runs=1, threads=1).rows[0].placement == {}


def test_each_provider_gets_its_own_row_and_a_missing_one_says_why(tiny_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the row would run")
    result = B.bench([tiny_onnx], runs=1, threads=1, providers=["cpu", "cuda"],
                     backend_options={"provider_options": {"device_id": "0"}})
    on_cpu, on_cuda = result.rows
    assert on_cpu.name == "onnx-fp32 (cpu)" and on_cpu.status == "ok" and on_cpu.stats["runs"] == 1
    assert on_cuda.name == "onnx-fp32 (cuda)" and on_cuda.status == "unavailable"
    assert "onnxruntime-gpu" in on_cuda.reason and "Not falling back" in on_cuda.reason
    assert result.settings["providers"] == ["cpu", "cuda"]
    assert "| onnx-fp32 (cuda) | UNAVAILABLE: " in O.to_markdown(result)
