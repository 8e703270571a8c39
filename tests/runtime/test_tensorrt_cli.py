"""The tensorrt backend behind the CLI and in a torch-free process, against the faked TensorRT
(tests/runtime/fake_tensorrt.py): run / validate / bench --backend tensorrt equal to onnxruntime, the install
hint, the torch-free path, too-old TensorRT, bench --memory in the named backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from sapiens_edge import runtime
from sapiens_edge.errors import PlatformUnavailableError
from tests.runtime.tensorrt_artifacts import X, make_artifact, reference

# --- the CLI on a real export ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fp16_seg(tmp_path_factory):
    """The tiny seg model of the export tests and its onnx-fp16 export: standard Attention and RMSNormalization
    at opset 23, which TensorRT 10.15+ parses (docs/jetson.md), so the fake installs 10.16 for it."""
    pytest.importorskip("torch")
    from sapiens_edge.export import core
    from tests.export.shared import tiny_model

    model = tiny_model("seg")
    out = tmp_path_factory.mktemp("trt") / "seg-fp16"
    core.export(model, "onnx-fp16", out, input_size=model.sapiens_info.input_hw, progress=lambda _: None)
    return model, out


def test_run_validate_and_bench_with_backend_tensorrt_equal_onnxruntime(fp16_seg, install, monkeypatch, tmp_path,
                                                                         capsys):
    import importlib

    from sapiens_edge.cli import main
    from tests.helpers import ASTRONAUT

    model, art = fp16_seg
    gpu = install(version="10.16.0.1")
    validate_module = importlib.import_module("sapiens_edge.validation.validate")
    monkeypatch.setattr(validate_module, "load_model", lambda name, weights=None, seed=0: model)
    cache = tmp_path / "engines"

    assert main(["run", str(art), str(ASTRONAUT), "--output", str(tmp_path / "ort")]) == 0
    assert main(["run", str(art), str(ASTRONAUT), "--backend", "tensorrt", "--engine-cache", str(cache),
                 "--output", str(tmp_path / "trt")]) == 0
    assert gpu.count("build") == 1 and "building a TensorRT 10.16.0.1 engine" in capsys.readouterr().err
    arrays = sorted(p.name for p in (tmp_path / "ort").glob("*.npy"))
    assert arrays and arrays == sorted(p.name for p in (tmp_path / "trt").glob("*.npy"))
    for name in arrays:  # the fake engine is ONNX Runtime on the CPU: the same numbers
        np.testing.assert_allclose(np.load(tmp_path / "trt" / name), np.load(tmp_path / "ort" / name),
                                   rtol=1e-6, atol=1e-6)

    reports = {}
    for backend in ("onnxruntime", "tensorrt"):
        path = tmp_path / f"val-{backend}.json"
        extra = ["--engine-cache", str(cache)] if backend == "tensorrt" else []
        assert main(["validate", str(art), "--backend", backend, *extra, "--report", str(path)]) == 0
        reports[backend] = json.loads(path.read_text())
    trt_report = reports["tensorrt"]
    assert trt_report["passed"] and trt_report["backend"] == "tensorrt"
    assert trt_report["backend_info"]["engine_cache"] == "hit" and gpu.count("build") == 1  # run's engine
    for kind in ("tensor_metrics", "task_metrics"):
        trt_values, ort_values = (_leaves(reports[b][kind]) for b in ("tensorrt", "onnxruntime"))
        assert trt_values.keys() == ort_values.keys() and trt_values
        np.testing.assert_allclose([trt_values[k] for k in ort_values], list(ort_values.values()), rtol=1e-6)

    assert main(["bench", str(art), "--backend", "tensorrt", "--engine-cache", str(cache), "--runs", "1",
                 "--no-plots", "--output", str(tmp_path / "bench")]) == 0
    (row,) = json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]
    assert row["status"] == "ok" and row["backend"] == "tensorrt" and "TensorRT 10.16.0.1" in row["backend_summary"]
    assert gpu.count("build") == 1

    # the TensorRT options without the backend they configure: a usage error, before anything loads
    assert main(["run", str(art), "--engine-cache", str(cache), "--output", str(tmp_path / "x")]) == 2
    assert "go with --backend tensorrt" in capsys.readouterr().err


def _leaves(tree: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def test_cli_without_tensorrt_exits_2_with_the_install_hint(artifact, monkeypatch, tmp_path, capsys):
    from sapiens_edge.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["run", str(artifact), "--backend", "tensorrt", "--output", str(tmp_path / "out")]) == 2
    assert "python3-libnvinfer" in capsys.readouterr().err


def test_the_whole_tensorrt_path_is_torch_free(tmp_path):
    """Check, build, cache and run in a process where torch, OpenCV and scipy cannot be imported (the board has
    none of them): the fence in test_runtime_torch_free.py lets this backend import the static check."""
    import subprocess

    folder = make_artifact(tmp_path / "seg")
    np.save(tmp_path / "x.npy", X)
    root = Path(__file__).resolve().parents[2]
    code = f"""
import sys
sys.path.insert(0, {str(root)!r})
for m in ("torch", "cv2", "scipy"):
    sys.modules[m] = None
import numpy as np
from tests.runtime.fake_tensorrt import FakeGpu
gpu = FakeGpu()
sys.modules.update(gpu.modules)
from sapiens_edge import runtime
for _ in range(2):
    with runtime.load({str(folder)!r}, backend="tensorrt") as p:
        np.save({str(tmp_path / "out.npy")!r}, p.run(np.load({str(tmp_path / "x.npy")!r}))[0])
assert gpu.count("build") == 1
assert [m for m in ("torch", "cv2", "scipy") if sys.modules.get(m) is not None] == []
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), reference(), rtol=1e-5, atol=1e-5)


def test_tensorrt_older_than_10_is_refused(artifact, install):
    gpu = install(version="8.6.2.3")  # JetPack 5
    with pytest.raises(PlatformUnavailableError, match=r"TensorRT 8\.6\.2\.3 is too old .* JetPack 6"):
        runtime.load(artifact, backend="tensorrt")
    assert gpu.count("create_network") == 0 and gpu.streams == set()


def test_bench_memory_measures_the_named_backend(artifact):
    """`bench --memory` loads each artifact again in a fresh process: in the row's backend, not the default one
    (here, without TensorRT, that process fails and says why instead of measuring ONNX Runtime)."""
    import subprocess

    from sapiens_edge.benchmarks.runtime_memory import measure

    assert measure(artifact, 1, {}, backend="onnxruntime")["after_run_mib"] > 0
    with pytest.raises(subprocess.CalledProcessError) as err:
        measure(artifact, 1, {}, backend="tensorrt")
    assert "No module named 'tensorrt'" in err.value.stderr  # the engine, imported first for the baseline
