"""The tensorrt backend against a faked TensorRT and cuda-python (tests/runtime/fake_tensorrt.py; no GPU here):
the engine cache (built once, then loaded; rebuilt for another GPU, TensorRT, recipe or model, or a damaged
file; never a foreign engine), the strongly typed build, parser errors and the static check as typed errors,
a missing TensorRT, and `run` / `validate` / `bench --backend tensorrt` equal to the onnxruntime backend.
The fake engine runs the ONNX model it was built from with ONNX Runtime on the CPU, so the numbers are real."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge import runtime  # noqa: E402
from sapiens_edge.errors import (  # noqa: E402
    ArtifactError,
    EngineCacheError,
    MissingDependencyError,
    OptionError,
    PlatformUnavailableError,
    SapiensEdgeError,
)
from sapiens_edge.export.artifact import write_artifact  # noqa: E402
from sapiens_edge.manifest import Manifest, TensorSpec, read_manifest  # noqa: E402
from sapiens_edge.runtime.backends import tensorrt_backend  # noqa: E402
from sapiens_edge.runtime.backends.tensorrt_build import rules_version  # noqa: E402
from sapiens_edge.runtime.backends.tensorrt_cache import EngineSlot, engine_key  # noqa: E402
from tests.runtime.fake_tensorrt import FakeGpu  # noqa: E402

H, W, C = 8, 6, 4
RNG = np.random.default_rng(0)
WEIGHTS = [(RNG.normal(size=(C, 3, 1, 1)).astype(np.float32), RNG.normal(size=C).astype(np.float32))
           for _ in range(2)]
X = RNG.normal(size=(1, 3, H, W)).astype(np.float32)


def conv_model(path: Path, weight: np.ndarray, bias: np.ndarray, rms: bool = False) -> None:
    """image (1, 3, H, W) -> logits (1, C, H, W): a 1x1 convolution, its weights in model.onnx.data (as the
    exports store them); `rms` adds an opset-23 RMSNormalization over W (TensorRT parses it from 10.15)."""
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["conv" if rms else "logits"], name="head/conv")]
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    if rms:
        nodes.append(helper.make_node("RMSNormalization", ["conv", "scale"], ["logits"], name="head/rms", axis=-1))
        inits.append(numpy_helper.from_array(np.linspace(0.5, 1.5, W, dtype=np.float32), "scale"))
    graph = helper.make_graph(nodes, "seg", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, C, H, W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23 if rms else 17)])
    model.ir_version = 10 if rms else 8
    onnx.save_model(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)


def reference(weights: int = 0, rms: bool = False) -> np.ndarray:
    weight, bias = WEIGHTS[weights]
    out = np.einsum("oc,nchw->nohw", weight[:, :, 0, 0], X) + bias.reshape(1, C, 1, 1)
    if rms:
        out = out / np.sqrt(np.mean(out**2, axis=-1, keepdims=True) + 1e-5) * np.linspace(0.5, 1.5, W)
    return out


def make_artifact(folder: Path, weights: int = 0, rms: bool = False) -> Path:
    def build(work: Path) -> Manifest:
        conv_model(work / "model.onnx", *WEIGHTS[weights], rms=rms)
        return Manifest(model="sapiens2-0.1b-seg", task="seg", recipe="onnx-fp32", target="onnx", precision="fp32",
                        input_hw=[H, W], files={}, model_file="model.onnx",
                        inputs=[TensorSpec("image", [1, 3, H, W], "float32")],
                        outputs=[TensorSpec("logits", [1, C, H, W], "float32")],
                        normalization={}, source_weights={"random": True}, tool_versions={})

    write_artifact(folder, build)
    return folder


@pytest.fixture
def artifact(tmp_path) -> Path:
    return make_artifact(tmp_path / "seg")


@pytest.fixture
def install(monkeypatch):
    """install(**gpu) puts a fresh fake GPU's tensorrt and cuda-python into sys.modules and returns it."""
    def install(**kw) -> FakeGpu:
        gpu = FakeGpu(**kw)
        for name, module in gpu.modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        return gpu

    return install


def run_once(folder: Path, **options) -> tuple[np.ndarray, dict]:
    with runtime.load(folder, backend="tensorrt", **options) as p:
        return p.run(X)[0], p.describe()


def test_first_open_builds_and_caches_the_engine_then_later_opens_load_it(artifact, install):
    gpu = install()
    out, info = run_once(artifact)
    np.testing.assert_allclose(out, reference(), rtol=1e-5, atol=1e-5)
    assert gpu.count("build") == 1 and info["engine_cache"] == "miss" and info["build_seconds"] >= 0
    engines = sorted((artifact / "engines").glob("*.engine"))
    assert [Path(info["engine"])] == engines
    key = json.loads(engines[0].with_suffix(".json").read_text())["key"]
    files = read_manifest(artifact).files
    assert key == {"gpu": "Orin", "compute_capability": "8.7", "tensorrt": "10.3.0.30", "recipe": "onnx-fp32",
                   "model_sha256": files["model.onnx"], "data_sha256": {"model.onnx.data": files["model.onnx.data"]},
                   "workspace_mib": None, "format": 1}
    assert info["version"] == "10.3.0.30" and info["gpu"] == "Orin" and info["check_rules"] == "10.3"
    assert "TensorRT 10.3.0.30 on Orin (sm 8.7)" in info["summary"] and "cache miss" in info["summary"]

    again, info2 = run_once(artifact)
    assert gpu.count("build") == 1 and gpu.count("parse_from_file") == 1  # loaded, not rebuilt
    assert info2["engine_cache"] == "hit" and info2["build_seconds"] == round(info["build_seconds"], 3)
    np.testing.assert_array_equal(again, out)
    assert gpu.memory == {} and gpu.streams == set()  # close() freed every buffer and the stream


def test_network_is_strongly_typed_parsed_from_the_file_with_the_workspace_limit(artifact, install):
    gpu = install()
    run_once(artifact, workspace_mib=256)
    strongly_typed = 1 << int(gpu.module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert [e for e in gpu.log if e[0] == "create_network"] == [("create_network", strongly_typed)]
    # parse_from_file, not parse(bytes): TensorRT resolves model.onnx.data beside the file
    assert [e for e in gpu.log if e[0] == "parse_from_file"] == [("parse_from_file", str(artifact / "model.onnx"))]
    assert [e for e in gpu.log if e[0] == "set_memory_pool_limit"] == [
        ("set_memory_pool_limit", gpu.module.MemoryPoolType.WORKSPACE, 256 << 20)]
    # the tensors went through the device buffers on the backend's one stream: input in, run, output out, sync
    steps = [e for e in gpu.log if e[0] in ("memcpy", "execute", "synchronize")]
    assert [e[0] if e[0] != "memcpy" else e[1] for e in steps] == [
        "cudaMemcpyHostToDevice", "execute", "cudaMemcpyDeviceToHost", "synchronize"]
    assert steps[1][1] == steps[3][1]
    with pytest.raises(OptionError, match="workspace_mib must be a positive"):
        runtime.load(artifact, backend="tensorrt", workspace_mib=0)
    with pytest.raises(OptionError, match="accepts: engine_cache, workspace_mib"):
        runtime.load(artifact, backend="tensorrt", threads=2)


# Each case changes one thing the engine depends on; the first engine is also planted under the new key's
# file names, as a copy from another board or an older TensorRT would sit there: it must not be used.
CHANGES = {
    "gpu": ({"name": "Orin Nano"}, None),
    "compute capability": ({"compute_capability": "8.9"}, None),
    "tensorrt version": ({"version": "10.13.0.35"}, None),
    "recipe": ({}, lambda m: dataclasses.replace(m, recipe="tensorrt-fp16")),
    "weights": ({}, "other weights"),
    "workspace": ({}, "workspace"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_stale_or_foreign_engine_is_rebuilt_never_used(tmp_path, install, change):
    gpu_change, artifact_change = CHANGES[change]
    cache = tmp_path / "cache"  # shared by both artifacts: the key, not the folder, keeps them apart
    first = make_artifact(tmp_path / "a")
    install()
    run_once(first, engine_cache=cache)
    (old,) = cache.glob("*.engine")

    folder, options, expected = first, {"engine_cache": cache}, reference()
    manifest = read_manifest(first)
    if artifact_change == "other weights":  # same graph, so the same model.onnx bytes: only the data file differs
        folder, expected = make_artifact(tmp_path / "b", weights=1), reference(weights=1)
        manifest = read_manifest(folder)
        assert manifest.files["model.onnx"] == read_manifest(first).files["model.onnx"]
    elif artifact_change == "workspace":
        options["workspace_mib"] = 64
    elif artifact_change is not None:
        manifest = artifact_change(manifest)
    gpu = install(**gpu_change)
    key = engine_key(manifest, gpu=gpu.name, compute_capability=gpu.compute_capability, tensorrt=gpu.version,
                     workspace_mib=options.get("workspace_mib"))
    slot = EngineSlot(cache, key)
    shutil.copy(old, slot.engine)
    shutil.copy(old.with_suffix(".json"), slot.sidecar)

    with contextlib.closing(tensorrt_backend.open(manifest, folder, **options)) as session:
        out = session.run({"image": X})[0]
        assert session.describe()["engine_cache"] == "miss"
    assert gpu.count("build") == 1
    assert [e for e in gpu.log if e[0] == "deserialize"] == [("deserialize", True)]  # only the new engine's
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert json.loads(slot.sidecar.read_text())["key"] == key and len(list(cache.glob("*.engine"))) == 2


@pytest.mark.parametrize("damage", ["truncated engine", "flipped byte", "garbage sidecar", "sidecar vouches",
                                    "empty, vouched"])
def test_a_damaged_cache_is_rebuilt(artifact, install, damage):
    gpu = install()
    _, info = run_once(artifact)
    engine = Path(info["engine"])
    sidecar = engine.with_suffix(".json")
    blob = engine.read_bytes()
    if damage == "truncated engine":
        engine.write_bytes(blob[: len(blob) // 2])
    elif damage == "flipped byte":
        engine.write_bytes(blob[:40] + bytes([blob[40] ^ 0xFF]) + blob[41:])
    elif damage == "garbage sidecar":
        sidecar.write_text("{not json")
    else:  # the sidecar's sha256 matches a damaged engine: TensorRT itself refuses it (None), still a miss;
        # an empty file cannot even be mapped
        import hashlib

        bad = b"" if damage == "empty, vouched" else b"not an engine"
        engine.write_bytes(bad)
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "engine_sha256": hashlib.sha256(bad).hexdigest()}))
    out, info2 = run_once(artifact)
    assert gpu.count("build") == 2 and info2["engine_cache"] == "miss"
    np.testing.assert_allclose(out, reference(), rtol=1e-5, atol=1e-5)
    assert engine.read_bytes() == blob  # rewritten whole
    # a damaged file is caught by its sha256 before TensorRT sees it; a vouched-for one by TensorRT
    refused = [("deserialize", False)] if damage == "sidecar vouches" else []
    assert [e for e in gpu.log if e[0] == "deserialize"] == [("deserialize", True), *refused, ("deserialize", True)]


def test_parser_errors_are_a_typed_error_naming_each_node(artifact, install):
    gpu = install()
    gpu.parser_errors = [("/blocks.0/attn/Attention", "Attention", "No importer registered for op: Attention"),
                         ("/blocks.0/norm1/RMS", "RMSNormalization", "No importer registered for op: RMSNorm")]
    with pytest.raises(ArtifactError) as err:
        runtime.load(artifact, backend="tensorrt")
    message = str(err.value)
    assert "/blocks.0/attn/Attention [Attention]: No importer registered for op: Attention" in message
    assert "/blocks.0/norm1/RMS [RMSNormalization]" in message and "tensorrt-fp16" in message
    assert gpu.count("build") == 0 and not list((artifact / "engines").glob("*"))
    assert gpu.memory == {} and gpu.streams == set()  # a failed open frees what it took


def test_an_artifact_failing_the_static_check_is_refused_listing_the_violations(tmp_path, install):
    """RMSNormalization at opset 23: TensorRT 10.3 (JetPack 6) parses neither; 10.16 both. The check runs with the
    rules of the installed TensorRT, before anything is parsed or built, and nothing falls back."""
    folder = make_artifact(tmp_path / "rms", rms=True)
    gpu = install(version="10.3.0.30")
    with pytest.raises(ArtifactError) as err:
        runtime.load(folder, backend="tensorrt")
    message = str(err.value)
    assert "2 violation(s) of the TensorRT 10.3 rules" in message
    assert "opset: (graph): ai.onnx opset 23, TensorRT 10.3 parses 9-20" in message
    assert "unsupported-op: head/rms [RMSNormalization]: not in TensorRT 10.3's ONNX parser (added in 10.15)" in message
    assert "tensorrt-fp16" in message and "falls back" in message
    assert gpu.count("create_network") == 0 and not (folder / "engines").exists()

    gpu = install(version="10.16.0.1")
    out, info = run_once(folder)
    assert info["check_rules"] == "10.16" and gpu.count("build") == 1
    np.testing.assert_allclose(out, reference(rms=True), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("installed", "rules"), [
    ("10.3.0.30", "10.3"), ("10.0.1.6", "10.3"), ("10.7.0", "10.3"), ("10.13.3.9", "10.13"), ("10.14.1", "10.13"),
    ("10.15.1.29", "10.15"), ("10.16.0", "10.16"), ("11.0.0.1", "10.16"),
])
def test_installed_tensorrt_maps_to_the_nearest_rules(installed, rules):
    assert rules_version(installed) == rules


def test_without_tensorrt_or_cuda_python_the_error_says_what_to_install(artifact, install, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt now raises ImportError
    with pytest.raises(MissingDependencyError) as err:
        runtime.load(artifact, backend="tensorrt")
    assert "comes with JetPack" in str(err.value) and "python3-libnvinfer" in str(err.value)
    assert "pip install 'sapiens-edge[tensorrt]'" in str(err.value)

    install()
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r"pip install cuda-python .*12\.x on JetPack 6"):
        runtime.load(artifact, backend="tensorrt")


def test_without_a_gpu_the_real_cuda_bindings_say_so(artifact, install, monkeypatch):
    """This machine has cuda-python (torch brings it) and no GPU or driver: the real seam reports that."""
    try:
        from cuda.bindings import runtime as real
    except ImportError:  # not an extra of ours (CUDA builds of torch bring it): no reason to fail CI
        pytest.skip("cuda-python is not installed here")
    err, count = real.cudaGetDeviceCount()
    if err == real.cudaError_t.cudaSuccess and count:
        pytest.skip("a GPU is visible here")
    gpu = install()
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime"):
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(PlatformUnavailableError, match="needs an NVIDIA GPU"):
        runtime.load(artifact, backend="tensorrt")
    assert gpu.count("create_network") == 0


def test_an_unwritable_cache_folder_is_a_typed_error_before_the_build(artifact, install, tmp_path):
    """<artifact>/engines cannot be made (a file in the way stands in for a read-only artifact folder: the tests
    run as root, whom permissions do not stop); the error names --engine-cache, which then works."""
    gpu = install()
    (artifact / "engines").write_text("in the way")
    with pytest.raises(EngineCacheError, match=r"engines cannot be written .*engine_cache=DIR"):
        runtime.load(artifact, backend="tensorrt")
    assert gpu.count("build") == 0 and gpu.memory == {}
    out, info = run_once(artifact, engine_cache=tmp_path / "elsewhere")
    assert Path(info["engine"]).parent == tmp_path / "elsewhere" and gpu.count("build") == 1
    np.testing.assert_allclose(out, reference(), rtol=1e-5, atol=1e-5)


def test_a_failed_build_says_what_tensorrt_said(artifact, install):
    gpu = install()
    gpu.fail_build = True
    with pytest.raises(SapiensEdgeError, match=r"(?s)could not build .*\n  out of device memory\n.*workspace_mib"):
        runtime.load(artifact, backend="tensorrt")
    assert not list((artifact / "engines").glob("*.engine"))


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
