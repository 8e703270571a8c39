"""The Kotlin kit (android_demo/kit) against the Python runtime, in one Maven run driven from here:

- golden vectors (`python -m sapiens_edge.runtime.golden`), every task, frame -> input, raw and decoded outputs;
- end to end: tiny seg and pose models exported here (onnx-fp32), run by ONNX Runtime Java through the kit,
  must give what `sapiens_edge.runtime.load(...).predict` gives on the same image and boxes, and so must their
  decoded-output variants (`export --decode`: labels, keypoints and scores from the graph);
- the kit's bad-input tests.

Needs a JDK 17 and Maven (Maven Central reachable on the first run); `make test` (CI) fails without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sapiens_edge import runtime  # noqa: E402
from sapiens_edge.export import core  # noqa: E402
from sapiens_edge.runtime import golden  # noqa: E402
from sapiens_edge.runtime import pose as pose_module  # noqa: E402
from tests.export.shared import WELL_CONDITIONED, tiny_model  # noqa: E402
from tests.helpers import ASTRONAUT, REPO  # noqa: E402

KIT = REPO / "android_demo" / "kit"
BOXES = np.array([[60, 20, 300, 500], [200, 100, 260, 160]], dtype=np.float32)  # a person-sized box and a small one
SUITES = {"GoldenTest": 6, "EndToEndTest": 4, "ErrorsTest": 10}  # test classes and their test counts


def _maven(request) -> str:
    mvn = shutil.which("mvn")
    if mvn is None or shutil.which("java") is None:
        msg = "the Kotlin kit's tests need a JDK 17 and Maven on PATH (apt-get install openjdk-17-jdk-headless maven)"
        if request.config.getoption("--require-targets"):
            pytest.fail(msg)
        pytest.skip(msg)
    return mvn


def _end_to_end_cases(folder: Path) -> None:
    """Export tiny seg and pose artifacts and write what the Python runtime predicts with them."""
    image = runtime.load_image(ASTRONAUT)
    np.save(folder / "frame.npy", golden.to_argb(image))
    np.save(folder / "boxes.npy", BOXES)
    cases = []
    for task in ("seg", "pose"):
        art = core.export(tiny_model(task), "onnx-fp32", folder / task, progress=lambda _: None).path
        boxes = BOXES if task == "pose" else None
        with runtime.load(art) as pred:
            result = pred.predict(image, boxes=boxes)
            inputs = runtime.get_processor(task).prepare(image, boxes, pred.input_hw).inputs
            raw = pred.run(inputs)[0]  # the engine's part, to tell the kit's differences from the engines'
        expected = {"input": inputs, "raw": raw, **({"labels": result.labels.astype(np.int32)} if task == "seg" else {
            "keypoints": result.keypoints, "scores": result.scores})}
        for name, arr in expected.items():
            np.save(folder / f"{task}.{name}.npy", np.ascontiguousarray(arr))
        cases.append({"task": task, "artifact": task, "expected": sorted(expected)})
        # The decoded variant (`export --decode`: labels, or keypoints and scores, from the graph) and what the
        # Python runtime predicts with it. Pose on the stand-in with clean heatmap blobs: on the default tiny
        # model's noisy maps a flat peak's DARK step (solved in the graph, in float32) turns the two ONNX Runtime
        # builds' last-bit differences into up to 1.5 image px on one keypoint (median 1e-4 px); 1.03 px here.
        decoded = core.export(tiny_model(task, **WELL_CONDITIONED.get(task, {})), "onnx-fp32",
                              folder / f"{task}-decoded", decode=True, progress=lambda _: None).path
        with runtime.load(decoded) as pred:
            result = pred.predict(image, boxes=boxes)
        expected = {"labels": result.labels.astype(np.int32)} if task == "seg" else {
            "keypoints": result.keypoints, "scores": result.scores}
        for name, arr in expected.items():
            np.save(folder / f"{task}-decoded.{name}.npy", np.ascontiguousarray(arr))
    (folder / "cases.json").write_text(json.dumps({"frame": "frame.npy", "frame_hw": list(image.shape[:2]),
                                                   "boxes": "boxes.npy", "cases": cases}))


def test_kotlin_kit_matches_the_python_runtime(request, tmp_path, monkeypatch):
    mvn = _maven(request)
    golden.write(tmp_path / "golden")
    (tmp_path / "e2e").mkdir()
    _end_to_end_cases(tmp_path / "e2e")
    reports = KIT / "target" / "surefire-reports"
    shutil.rmtree(reports, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(KIT / "pom.xml"), "test",
           f"-Dsapiens.golden={tmp_path / 'golden'}", f"-Dsapiens.artifacts={tmp_path / 'e2e'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MAVEN_OPTS": "-Xmx1g"})
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    # Every suite ran every test, none skipped (a skip would mean a fixture folder did not reach the JVM).
    for suite, count in SUITES.items():
        xml = ET.parse(reports / f"TEST-io.sapiensedge.kit.{suite}.xml").getroot()
        counts = {k: int(xml.get(k)) for k in ("tests", "failures", "errors", "skipped")}
        assert counts == {"tests": count, "failures": 0, "errors": 0, "skipped": 0}, (suite, counts)
    _python_decodes_the_kits_outputs_alike(tmp_path / "e2e", monkeypatch)


def _python_decodes_the_kits_outputs_alike(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw outputs ONNX Runtime Java gave the kit, decoded by the Python runtime: the kit's results
    (identical labels; identical keypoints), whatever the two engines' last-bit differences.

    Keypoints are bit-identical once both sides take DARK's log correctly rounded: numpy's float32 log is
    within an ulp (CPU-dependent SIMD), the kit's is exact, and DARK's step on a flat peak of a tiny random model
    turns one ulp into up to ~3e-3 heatmap px. So: exact against a correctly rounded log, and <= 1e-2 heatmap
    px against the runtime as it is."""
    image = runtime.load_image(ASTRONAUT)
    seg = runtime.get_processor("seg")
    labels = seg.finish([np.load(folder / "kotlin.seg.raw.npy")], seg.prepare(image, None, (128, 96))).labels
    np.testing.assert_array_equal(np.load(folder / "kotlin.seg.labels.npy"), labels)
    pose = runtime.get_processor("pose")
    raw, flipped = np.load(folder / "kotlin.pose.raw.npy"), np.load(folder / "kotlin.pose.flipped.npy")
    prepared = pose.prepare(image, BOXES, (128, 96))
    kit = np.load(folder / "kotlin.pose.keypoints.npy")
    px = prepared.context.scales / (np.array(raw.shape[:1:-1]) - 1)  # image px per heatmap px, (N, 2)
    res = pose.finish([raw], prepared, [flipped])
    assert (np.abs(kit - res.keypoints) / px[:, None, :]).max() <= 1e-2
    np.testing.assert_allclose(np.load(folder / "kotlin.pose.scores.npy"), res.scores, rtol=0, atol=1e-6)
    log = np.log
    monkeypatch.setattr(pose_module.np, "log", lambda x: log(x.astype(np.float64)).astype(np.float32))
    exact = pose.finish([raw], prepared, [flipped]).keypoints
    np.testing.assert_allclose(kit, exact, rtol=0, atol=1e-5)
