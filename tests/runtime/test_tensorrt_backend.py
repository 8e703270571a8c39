"""The tensorrt backend against a faked TensorRT and cuda-python (tests/runtime/fake_tensorrt.py; no GPU here):
the engine cache (built once, then loaded; rebuilt for another GPU, TensorRT, recipe or model, or a damaged
file; never a foreign engine), the strongly typed build, parser errors and the static check as typed errors,
a missing TensorRT (the CLI and the torch-free process: test_tensorrt_cli.py).
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

from sapiens_edge import runtime  # noqa: E402
from sapiens_edge.errors import (  # noqa: E402
    ArtifactError,
    EngineCacheError,
    MissingDependencyError,
    OptionError,
    PlatformUnavailableError,
    SapiensEdgeError,
)
from sapiens_edge.manifest import read_manifest  # noqa: E402
from sapiens_edge.runtime.backends import tensorrt_backend  # noqa: E402
from sapiens_edge.runtime.backends.tensorrt_build import rules_version  # noqa: E402
from sapiens_edge.runtime.backends.tensorrt_cache import EngineSlot, engine_key  # noqa: E402
from tests.runtime.tensorrt_artifacts import X, make_artifact, reference, run_once  # noqa: E402


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
