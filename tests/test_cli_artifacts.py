"""The user path through the CLI on a real zoo model (0.1b seg, a checkpoint file written by the
test, small input): export -> run -> validate, the report, and the bad inputs of each step."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from sapiens_edge.cli import main
from sapiens_edge.manifest import sha256_file
from tests.helpers import ASTRONAUT

SIZE = "64x48"


@pytest.fixture(scope="module")
def artifact(seg01, tmp_path_factory):
    _, files = seg01
    out = tmp_path_factory.mktemp("cli") / "seg-fp32"
    rc = main(["export", "sapiens2-0.1b-seg", "--weights", str(files["fp32"]), "--recipe", "onnx-fp32",
               "--input-size", SIZE, "--output", str(out)])
    assert rc == 0
    return out, files


def test_export_run_validate(artifact, tmp_path, capsys):
    out, files = artifact
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "sapiens2-0.1b-seg" and manifest["input_hw"] == [64, 48]
    assert manifest["source_weights"]["path"] == str(files["fp32"]) and not manifest["source_weights"]["random"]
    assert len(manifest["task_metadata"]["class_names"]) == 29
    assert main(["run", str(out), str(ASTRONAUT), "--output", str(tmp_path / "run"), "--threads", "1"]) == 0
    result = json.loads((tmp_path / "run" / "astronaut.json").read_text())
    assert result["recipe"] == "onnx-fp32" and (tmp_path / "run" / "astronaut_overlay.png").is_file()
    report = tmp_path / "report.json"
    assert main(["validate", str(out), "--weights", str(files["fp32"]), "--report", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["passed"] and doc["fatal"] is None and doc["weights"]["matches_artifact"] is True
    assert {c["name"] for c in doc["checks"]} >= {"cosine[logits]", "pixel_agreement"}
    assert doc["image_sha256"] == [sha256_file(ASTRONAUT)] and doc["calibration"] == {}
    md = (tmp_path / "report.md").read_text()
    assert "PASSED" in md and sha256_file(ASTRONAUT) in md and "none (not a calibrated recipe)" in md


def test_a_first_run_needs_no_photo(artifact, tmp_path, capsys):
    """`run` with no image uses the bundled photo and says so."""
    out, _ = artifact
    assert main(["run", str(out), "--output", str(tmp_path / "run"), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "no image given: using the bundled photo" in err and "astronaut.jpg" in err
    assert json.loads((tmp_path / "run" / "astronaut.json").read_text())["recipe"] == "onnx-fp32"


def test_run_and_validate_in_pieces(artifact, tmp_path, capsys):
    """--pieces N runs the graph as N ONNX Runtime sessions, one at a time: the same labels as one session, and
    the validate report records the pieces (a 0.1b with inline weights: planned on a scratch copy)."""
    out, files = artifact
    assert main(["run", str(out), str(ASTRONAUT), "--output", str(tmp_path / "one"), "--threads", "1"]) == 0
    assert main(["run", str(out), str(ASTRONAUT), "--output", str(tmp_path / "three"), "--threads", "1",
                 "--pieces", "3"]) == 0
    one, three = (json.loads((tmp_path / d / "astronaut.json").read_text()) for d in ("one", "three"))
    assert one["runtime"]["pieces"] is None and three["runtime"]["pieces"] == 3 and "in 3 pieces" in three["backend"]
    assert one["class_fractions"] == three["class_fractions"]
    np.testing.assert_array_equal(np.load(tmp_path / "one" / "astronaut_seg.npy"),
                                  np.load(tmp_path / "three" / "astronaut_seg.npy"))
    report = tmp_path / "report.json"
    assert main(["validate", str(out), "--weights", str(files["fp32"]), "--pieces", "2", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["backend_info"]["pieces"] == 2


def test_validate_no_verify(artifact, tmp_path, capsys):
    """A manifest hash that no longer matches: validate refuses and suggests --no-verify, which it accepts."""
    out, files = artifact
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = "0" * 64
    (edited / "manifest.json").write_text(json.dumps(manifest))
    argv = ["validate", str(edited), "--weights", str(files["fp32"])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--no-verify" in err and "verify=False" not in err
    assert main([*argv, "--no-verify"]) == 0


def test_validate_with_other_weights_fails(artifact, seg01, tmp_path, capsys):
    """The gate can fail: against perturbed weights the artifact misses the tight fp32 limits."""
    import torch
    from safetensors.torch import save_file

    model, _ = seg01
    other = tmp_path / "other.safetensors"
    gen = torch.Generator().manual_seed(5)
    save_file({k: (v + 0.05 * torch.randn(v.shape, generator=gen)).contiguous() if v.ndim > 1 else v.contiguous()
               for k, v in model.state_dict().items()}, str(other))
    out, _ = artifact
    with pytest.warns(UserWarning, match="differ from the file"):
        rc = main(["validate", str(out), "--weights", str(other)])
    assert rc == 1
    assert "FAIL" in capsys.readouterr().out


def test_export_refuses_bad_input_before_work(artifact, tmp_path, capsys):
    out, files = artifact
    base = ["export", "sapiens2-0.1b-seg", "--weights", str(files["fp32"]), "--input-size", SIZE]
    assert main([*base, "--recipe", "onnx-int9", "--output", str(tmp_path / "x")]) == 2
    assert "Valid recipes: onnx-fp32" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*base, "--recipe", "onnx-int8", "--calibration", str(tmp_path / "empty"),
                 "--output", str(tmp_path / "y")]) == 2
    assert "No images in" in capsys.readouterr().err
    assert main([*base, "--recipe", "onnx-fp32", "--output", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", "sapiens2-0.1b-pointmap", "--random-weights", "--recipe", "onnx-fp32",
                 "--input-size", SIZE, "--output", str(tmp_path / "z")]) == 2
    assert "1024x768 only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_run_refuses_damaged_artifact(artifact, tmp_path, capsys):
    out, _ = artifact
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes()[:-100])
    assert main(["run", str(bad), str(ASTRONAUT), "--output", str(tmp_path / "r")]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert main(["run", str(out), str(tmp_path / "missing.jpg"), "--output", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err


def test_bench_providers_side_by_side(artifact, tmp_path, capsys):
    """`--provider cpu,cuda`: one row per provider; on a machine without CUDA that row says why and the
    exit code is 1. `--placement` profiles the CPU row too. Bad provider input fails before any work."""
    import onnxruntime

    out, _ = artifact
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: both rows would run")
    rc = main(["bench", str(out), "--provider", "cpu,cuda", "--threads", "1", "--runs", "1", "--placement",
               "--no-plots", "-o", str(tmp_path / "b")])
    assert rc == 1
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "| onnx-fp32 (cpu) | " in md and "| onnx-fp32 (cuda) | UNAVAILABLE: " in md
    assert re.search(r"- onnx-fp32 \(cpu\): all \d+ nodes on CPU", md)
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(out), "--provider", "cpu,gpu"])
    assert exc.value.code == 2 and "unknown provider(s) gpu" in capsys.readouterr().err
    assert main(["bench", str(out), "--provider-option", "trt_fp16_enable=True"]) == 2
    assert "--provider-option goes with --provider" in capsys.readouterr().err
    assert main(["run", str(out), str(ASTRONAUT), "-o", str(tmp_path / "r"), "--provider", "cuda",
                 "--provider-option", "device_id"]) == 2
    assert "--provider-option takes KEY=VALUE" in capsys.readouterr().err


def test_report_end_to_end(seg01, tmp_path, capsys):
    """The main job on a small input: export, validate, overlays, bench, report card (Markdown +
    HTML with plots); a recipe that cannot be exported here keeps its row with the reason."""
    _, files = seg01
    out = tmp_path / "report"
    rc = main(["report", "--weights", str(files["fp32"]), "--recipes", "onnx-fp32,coreml-fp32", "--input-size", SIZE,
               "--runs", "2", "--threads", "1", "--strict", "--output", str(out)])
    assert rc == 0
    summary = json.loads((out / "report.json").read_text())
    assert summary["recipes"]["onnx-fp32"]["passed"] is True
    rows = {r["name"]: r for r in summary["bench"]["rows"]}
    assert rows["onnx-fp32"]["stats"]["runs"] == 2 and rows["torch eager fp32"]["stats"]["p50_s"] > 0
    assert rows["onnx-fp32"]["accuracy"]["gate"] == "PASSED"
    assert (out / "validation" / "onnx-fp32.md").is_file()
    assert (out / "overlays" / "onnx-fp32" / "astronaut_overlay.png").is_file()
    for name in ("bench.json", "bench.csv", "bench.md", "latency.png", "accuracy.png", "report.md", "report.html"):
        assert (out / name).is_file(), name
    card = (out / "report.md").read_text()
    assert "| onnx-fp32 |" in card and "![" in card and "overlays/onnx-fp32/astronaut_overlay.png" in card
    html = (out / "report.html").read_text()
    assert '<img src="latency.png"' in html and "onnx-fp32" in html
    if "coreml-fp32" in summary["skipped"]:  # no coremltools here: the reason is kept
        assert "coreml" in summary["skipped"]["coreml-fp32"]
    else:  # exported, but Core ML does not run on Linux: its bench row says why
        assert rows["coreml-fp32"]["status"] == "unavailable" and "Apple" in rows["coreml-fp32"]["reason"]
    assert main(["report", "--weights", str(files["fp32"]), "--recipes", "onnx-fp32", "--input-size", SIZE,
                 "--output", str(out)]) == 2  # exists, no --force


def test_report_on_several_providers(seg01, tmp_path, capsys):
    """`report --provider cpu,cuda`: each ONNX artifact validated and benchmarked per provider; on a
    machine without CUDA that provider's verdict and bench row say why, and the CPU's stand."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: both providers would run")
    _, files = seg01
    out = tmp_path / "report"
    # A previous card in the folder: --force replaces or removes what it wrote (a stale verdict of a
    # recipe not in this run), the user's files stay.
    (out / "validation").mkdir(parents=True)
    (out / "validation" / "onnx-int8.json").write_text("{}")
    (out / "report.md").write_text("an old card")
    (out / "notes.txt").write_text("the user's")
    assert main(["report", "--weights", str(files["fp32"]), "--recipes", "onnx-fp32", "--input-size", SIZE,
                 "--runs", "1", "--threads", "1", "--provider", "cpu,cuda", "--strict", "--force",
                 "--output", str(out)]) == 0
    assert not (out / "validation" / "onnx-int8.json").exists() and (out / "notes.txt").is_file()
    assert f"input {SIZE}" in (out / "report.md").read_text()
    summary = json.loads((out / "report.json").read_text())
    verdicts = summary["recipes"]["onnx-fp32"]["by_provider"]
    assert verdicts["cpu"]["passed"] is True and verdicts["cuda"]["passed"] is None
    assert "onnxruntime-gpu" in verdicts["cuda"]["summary"] and summary["recipes"]["onnx-fp32"]["passed"] is True
    assert (out / "validation" / "onnx-fp32-cpu.json").is_file()
    assert not (out / "validation" / "onnx-fp32-cuda.json").exists()
    rows = {r["name"]: r for r in summary["bench"]["rows"]}
    assert rows["onnx-fp32 (cpu)"]["accuracy"]["gate"] == "PASSED"
    assert rows["onnx-fp32 (cuda)"]["status"] == "unavailable"
    card = (out / "report.md").read_text()
    assert "| onnx-fp32 (cpu) | PASSED" in card and "| onnx-fp32 (cuda) | ONNX Runtime provider" in card
