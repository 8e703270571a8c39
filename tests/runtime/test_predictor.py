"""runtime.load / Predictor on small hand-built ONNX artifacts (no torch): raw outputs, task results,
manifest checks, bad input, providers never chosen silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapiens_edge import metadata, runtime  # noqa: E402
from sapiens_edge.errors import (  # noqa: E402
    ArtifactError,
    InputShapeError,
    ManifestVersionError,
    PlatformUnavailableError,
    ProviderUnavailableError,
    SapiensEdgeError,
    UncheckedManifestWarning,
)
from sapiens_edge.export.artifact import write_artifact  # noqa: E402
from sapiens_edge.manifest import MANIFEST_NAME, Manifest, TensorSpec  # noqa: E402

H, W, C = 32, 16, 29
WEIGHT = np.random.default_rng(0).normal(size=(C, 3, 1, 1)).astype(np.float32)


def conv_model(path: Path) -> None:
    """image (1, 3, H, W) -> logits (1, 29, H, W): one 1x1 convolution."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"])], "seg",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, C, H, W])],
        [numpy_helper.from_array(WEIGHT, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def make_artifact(folder: Path, **overrides) -> Path:
    def build(work: Path) -> Manifest:
        conv_model(work / "model.onnx")
        fields = dict(model="sapiens2-0.1b-seg", task="seg", recipe="onnx-fp32", target="onnx", precision="fp32",
                      input_hw=[H, W], files={}, model_file="model.onnx",
                      inputs=[TensorSpec("image", [1, 3, H, W], "float32")],
                      outputs=[TensorSpec("logits", [1, C, H, W], "float32")],
                      normalization={"mean_rgb": metadata.MEAN_RGB.tolist(), "std_rgb": metadata.STD_RGB.tolist()},
                      source_weights={"path": None, "sha256": None, "random": True, "seed": 0},
                      tool_versions={"test": "1"})
        fields.update(overrides)
        return Manifest(**fields)

    write_artifact(folder, build)
    return folder


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("art") / "seg")


def reference(x: np.ndarray) -> np.ndarray:
    return np.einsum("oc,nchw->nohw", WEIGHT[:, :, 0, 0], x)


def test_run_matches_numpy_reference(artifact):
    x = np.random.default_rng(1).normal(size=(1, 3, H, W)).astype(np.float32)
    with runtime.load(artifact, threads=1) as p:
        (out,) = p.run(x)
        assert out.shape == (1, C, H, W) and out.dtype == np.float32
        np.testing.assert_allclose(out, reference(x), rtol=1e-5, atol=1e-5)
        info = p.describe()
        assert info["backend"] == "onnxruntime" and info["providers"][0] == "CPUExecutionProvider"
        assert info["threads"] == 1


def test_batch_larger_than_export_runs_item_by_item(artifact):
    x = np.random.default_rng(2).normal(size=(3, 3, H, W)).astype(np.float32)
    with runtime.load(artifact) as p:
        (out,) = p.run(x)
    np.testing.assert_allclose(out, reference(x), rtol=1e-5, atol=1e-5)


def test_predict_gives_seg_result_at_image_size(artifact):
    image = np.random.default_rng(3).integers(0, 255, (50, 40, 3), dtype=np.uint8)
    with runtime.load(artifact) as p:
        result = p.predict(image)
        expected = runtime.run_task(lambda x: [reference(x)], image, "seg", input_hw=(H, W))
    assert result.labels.shape == (50, 40)
    np.testing.assert_array_equal(result.labels, expected.labels)


@pytest.mark.parametrize(("x", "needle"), [
    (np.zeros((1, 3, H + 1, W), np.float32), "height 33 instead of 32"),
    (np.zeros((1, 4, H, W), np.float32), "channels 4 instead of 3"),
    (np.zeros((3, H, W), np.float32), "3 dimension(s) instead of 4"),
    (np.zeros((1, 3, H, W), np.float64), "dtype float64"),
    ([[0.0]], "not a numpy array"),
])
def test_wrong_input_says_expected_shape(artifact, x, needle):
    with runtime.load(artifact) as p, pytest.raises(InputShapeError) as err:
        p.run(x)
    assert needle in str(err.value) and "(1, 3, 32, 16)" in str(err.value)


def test_tampered_file_is_refused_unless_verification_is_skipped(artifact, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    at = data.find(WEIGHT.tobytes())
    assert at > 0
    data[at + 3] ^= 0x40  # a changed weight: still a valid model, different numbers
    (bad / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        runtime.load(bad)
    x = np.ones((1, 3, H, W), np.float32)
    with runtime.load(bad, verify=False) as p:  # the explicit opt-out runs what is there
        assert not np.allclose(p.run(x)[0], reference(x), atol=1e-3)
    (bad / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ArtifactError, match="re-export"):
        runtime.load(bad, verify=False)


def test_missing_file_and_missing_manifest(artifact, tmp_path):
    gone = tmp_path / "gone"
    shutil.copytree(artifact, gone)
    (gone / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"missing model\.onnx"):
        runtime.load(gone)
    (gone / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        runtime.load(gone)
    with pytest.raises(ArtifactError, match="not found"):
        runtime.load(tmp_path / "nowhere")


def test_newer_schema_is_refused(artifact, tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(artifact, newer)
    doc = json.loads((newer / MANIFEST_NAME).read_text())
    doc["schema_version"] = 99
    (newer / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(ManifestVersionError, match="Upgrade sapiens-edge"):
        runtime.load(newer)


def _edited_copy(artifact: Path, folder: Path, edit) -> Path:
    """A copy of `artifact` whose manifest.json went through `edit(doc)`; the model files are untouched."""
    shutil.copytree(artifact, folder)
    doc = json.loads((folder / MANIFEST_NAME).read_text())
    edit(doc)
    (folder / MANIFEST_NAME).write_text(json.dumps(doc, indent=2))
    return folder


@pytest.mark.parametrize("edit", [
    pytest.param(lambda d: d["normalization"].update(mean_rgb=[0.0, 0.0, 0.0]), id="mean"),
    pytest.param(lambda d: d["normalization"].update(std_rgb=[1.0, 1.0, 1.0]), id="std"),
    pytest.param(lambda d: d.update(task="normal"), id="task"),
    pytest.param(lambda d: d["files"].pop("README.md"), id="removed-file-entry"),
    pytest.param(lambda d: d.pop("manifest_sha256"), id="digest-removed"),
])
def test_edited_manifest_is_refused_unless_verification_is_skipped(artifact, tmp_path, edit):
    """The manifest covers itself: an edit that leaves every model file intact is still caught."""
    edited = _edited_copy(artifact, tmp_path / "edited", edit)
    with pytest.raises(ArtifactError, match=r"manifest\.json .*(mismatch|no manifest_sha256).*Re-export the "
                                            r"artifact or restore the folder.*verify=False"):
        runtime.load(edited)
    with runtime.load(edited, verify=False) as p:  # the explicit opt-out skips this check too
        assert p.manifest == Manifest.from_json(json.loads((edited / MANIFEST_NAME).read_text()))


def test_intact_manifest_passes_in_any_formatting(artifact, tmp_path):
    """The digest covers content, not layout: re-indented, reordered JSON still verifies."""
    with runtime.load(artifact) as p:
        original = p.manifest
    reformatted = _edited_copy(artifact, tmp_path / "reformatted", lambda d: None)
    doc = json.loads((reformatted / MANIFEST_NAME).read_text())
    (reformatted / MANIFEST_NAME).write_text(json.dumps(dict(reversed(doc.items())), separators=(",", ":")))
    with runtime.load(reformatted) as p:
        assert p.manifest == original


def test_schema_1_manifest_loads_with_a_warning(artifact, tmp_path):
    """Manifests written before the digest (schema 1) still load: their files are checked, their own
    content cannot be, and the warning says so."""
    def downgrade(doc):
        doc.pop("manifest_sha256")
        doc["schema_version"] = 1

    old = _edited_copy(artifact, tmp_path / "old", downgrade)
    with pytest.warns(UncheckedManifestWarning, match="predates manifest digests.*Re-export"), \
            runtime.load(old) as p:
        assert p.manifest.schema_version == 1
    (old / "model.onnx").write_bytes(b"changed")
    with pytest.warns(UncheckedManifestWarning), pytest.raises(ArtifactError, match="sha256 mismatch"):
        runtime.load(old)


def test_manifest_that_disagrees_with_the_graph(tmp_path):
    wrong = make_artifact(tmp_path / "wrong", outputs=[TensorSpec("heatmaps", [1, C, H, W], "float32")])
    with pytest.raises(ArtifactError, match="no output named 'heatmaps'"):
        runtime.load(wrong)


def test_unavailable_provider_is_an_error_not_a_fallback(artifact):
    with pytest.raises(ProviderUnavailableError, match="Not falling back"):  # a PlatformUnavailableError too
        runtime.load(artifact, provider="tensorrt")
    with pytest.raises(SapiensEdgeError, match="Unknown ONNX Runtime provider"):
        runtime.load(artifact, provider="gpu")
    with pytest.raises(SapiensEdgeError, match="Unknown runtime backend"):
        runtime.load(artifact, backend="tvm")
    with pytest.raises(SapiensEdgeError, match="threads must be a positive integer"):
        runtime.load(artifact, threads=0)


class FakeGpuOrt:
    """onnxruntime as a GPU build presents itself: CUDA and TensorRT listed as available. Sessions
    record the provider list they were given and really run on the CPU; `initialises` says whether
    the accelerator came up (a real GPU build on a machine without the CUDA libraries drops it from
    the session's providers instead of raising)."""

    def __init__(self, initialises: bool):
        import onnxruntime as real

        self.real, self.initialises, self.asked = real, initialises, []
        self.__version__ = real.__version__
        self.SessionOptions, self.GraphOptimizationLevel = real.SessionOptions, real.GraphOptimizationLevel

    def get_available_providers(self):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def InferenceSession(self, path, sess_options=None, providers=None):
        self.asked.append(providers)
        session = self.real.InferenceSession(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
        first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        used = [first, "CPUExecutionProvider"] if self.initialises else ["CPUExecutionProvider"]
        session.get_providers = lambda: used
        return session


@pytest.fixture
def fake_gpu_ort(monkeypatch):
    from sapiens_edge.runtime.backends import onnxruntime_backend

    def install(initialises: bool) -> FakeGpuOrt:
        fake = FakeGpuOrt(initialises)
        monkeypatch.setattr(onnxruntime_backend, "_import_ort", lambda: fake)
        return fake

    return install


def test_gpu_providers_are_asked_in_onnxruntime_order(artifact, fake_gpu_ort):
    fake = fake_gpu_ort(initialises=True)
    with runtime.load(artifact, provider="tensorrt", provider_options={"trt_fp16_enable": "True"}) as p:
        info = p.describe()
        out = p.run(np.zeros((1, 3, H, W), np.float32))
    # TensorRT first with its options, then CUDA for what TensorRT rejects, then the CPU per node
    assert fake.asked[-1] == [("TensorrtExecutionProvider", {"trt_fp16_enable": "True"}), "CUDAExecutionProvider",
                              "CPUExecutionProvider"]
    assert info["requested_provider"] == "TensorrtExecutionProvider" and "TensorrtExecutionProvider" in info["summary"]
    assert out[0].shape == (1, C, H, W)
    runtime.load(artifact, provider="cuda").close()
    assert fake.asked[-1] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_a_gpu_provider_that_fails_to_start_is_an_error_not_a_cpu_run(artifact, fake_gpu_ort):
    fake_gpu_ort(initialises=False)
    with pytest.raises(PlatformUnavailableError, match=r"session runs on CPUExecutionProvider only.*Not falling back"):
        runtime.load(artifact, provider="cuda")
    runtime.load(artifact, provider="cpu").close()  # the CPU itself is fine


def test_unknown_target_names_what_can_run(tmp_path):
    other = make_artifact(tmp_path / "tvm", target="tvm", recipe="tvm-fp16")
    with pytest.raises(SapiensEdgeError, match="no runtime backend for 'tvm'"):
        runtime.load(other)


def test_closed_predictor_refuses_to_run(artifact):
    p = runtime.load(artifact)
    p.close()
    with pytest.raises(SapiensEdgeError, match="closed"):
        p.run(np.zeros((1, 3, H, W), np.float32))


def test_input_layout_is_checked(tmp_path):
    """NHWC manifests are read channels-last; an unknown layout, or an NHWC shape whose last axis is not
    3, is refused with what was expected."""
    odd = make_artifact(tmp_path / "odd", inputs=[TensorSpec("image", [1, 3, H, W], "float32", "CHWN")])
    with pytest.raises(ArtifactError, match=r"layout 'CHWN'.*NCHW or NHWC"):
        runtime.load(odd)
    bad = make_artifact(tmp_path / "nhwc", inputs=[TensorSpec("image", [1, 3, H, W], "float32", "NHWC")])
    with pytest.raises(ArtifactError, match=r"expected \(N, H, W, 3\)"):
        runtime.load(bad)


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_artifacts_and_results_get_the_permissions_the_umask_gives(tmp_path, umask, file_mode, dir_mode):
    """Every file and folder written (artifact folder, manifest, README, model, run results) has the
    mode of a plain new file or folder: 0666 / 0777 less the umask, not mkstemp/mkdtemp's private
    0600 / 0700, so an artifact can be shared with another user or container."""
    import os
    import stat

    from sapiens_edge.run import run_artifact
    from tests.helpers import ASTRONAUT

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    old = os.umask(umask)
    try:
        folder = make_artifact(tmp_path / "seg")
        out = tmp_path / "out"
        run_artifact(folder, [ASTRONAUT], out, threads=1, progress=lambda _: None)
    finally:
        os.umask(old)
    assert mode(folder) == dir_mode and mode(out) == dir_mode
    files = [folder / name for name in ("manifest.json", "README.md", "model.onnx")] + sorted(out.iterdir())
    assert len(files) > 4 and {p.name: mode(p) for p in files} == {p.name: file_mode for p in files}


def test_run_goes_on_past_an_unreadable_image(artifact, tmp_path, capsys):
    """`run` on many photos: one that cannot be read is reported (path and reason) and skipped, the
    others are written, and the CLI exits 1 after writing them."""
    from sapiens_edge.cli import main
    from sapiens_edge.run import run_artifact
    from tests.helpers import ASTRONAUT

    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    lines = []
    records = run_artifact(artifact, [ASTRONAUT, bad], tmp_path / "api", threads=1, progress=lines.append)
    assert [r.image for r in records] == [ASTRONAUT] and records[0].json_path.is_file()
    assert [(f.image, "Cannot decode" in f.reason) for f in records.failures] == [(bad, True)]
    assert any(str(bad) in line and "FAILED" in line for line in lines)
    out = tmp_path / "cli"
    assert main(["run", str(artifact), str(bad), str(ASTRONAUT), "-o", str(out), "--threads", "1"]) == 1
    captured = capsys.readouterr()
    assert "wrote 1 result(s)" in captured.out and (out / "astronaut.json").is_file()
    assert f"failed: {bad}: Cannot decode" in captured.err and "1 image(s) could not be read" in captured.err


def test_run_on_a_folder_takes_its_images_and_goes_on_past_a_bad_one(artifact, tmp_path, capsys):
    """`run ART photos/`: the folder stands for the images in it (sorted, by suffix); one that cannot
    be read is reported and skipped, the others written, exit 1. An empty folder is an error."""
    import shutil

    from sapiens_edge.cli import main
    from tests.helpers import ASTRONAUT

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    shutil.copy(ASTRONAUT, photos / "a.jpg")
    shutil.copy(ASTRONAUT, photos / "sub" / "c.jpg")
    (photos / "b.png").write_bytes(b"not a png")
    (photos / "notes.txt").write_text("not an image: ignored by suffix")
    out = tmp_path / "out"
    assert main(["run", str(artifact), str(photos), "-o", str(out), "--threads", "1"]) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "c.json"]
    assert f"failed: {photos / 'b.png'}: Cannot decode" in captured.err
    (tmp_path / "empty").mkdir()
    assert main(["run", str(artifact), str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert "No images in" in capsys.readouterr().err
