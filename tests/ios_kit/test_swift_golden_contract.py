"""The Swift kit (ios_demo/SapiensEdgeKit) checked from here, where no Swift compiler runs (its XCTests run in
.github/workflows/coreml-validate.yml on macOS):

- the golden vectors its tests read are what `python -m sapiens_edge.runtime.golden` writes today: every case and
  array named in GoldenTests.swift's GOLDEN_CONTRACT exists with the shape the table gives, cases.json holds no
  case the Swift tests do not read, and the Swift tests read no array outside the table;
- the end-to-end arrays EndToEndTests.swift reads are the ones tests/ios_kit/swift_fixtures.py writes;
- the Kotlin and Swift kits declare the same public types, functions and constants, but for a short list of
  platform-only backends.
"""

from __future__ import annotations

import json
import re

import numpy as np

from sapiens_edge.runtime import golden
from tests.helpers import REPO
from tests.ios_kit import swift_fixtures
from tests.ios_kit.declared_names import kotlin_names, swift_names

SWIFT_TESTS = REPO / "ios_demo" / "SapiensEdgeKit" / "Tests" / "SapiensEdgeKitTests"
SWIFT_SOURCES = REPO / "ios_demo" / "SapiensEdgeKit" / "Sources"
KOTLIN_SOURCES = REPO / "android_demo" / "kit" / "src" / "main" / "kotlin"
# Each kit's engines: ONNX Runtime Java on Android; Core ML and ExecuTorch (own SwiftPM targets) on iOS.
KOTLIN_ONLY = {"OnnxRuntimeBackend", "OrtProvider", "loadOnnx"}
SWIFT_ONLY = {"CoreMLBackend", "ComputeUnits", "loadCoreML", "ExecuTorchBackend", "loadExecuTorch"}


def swift_contract(source: str) -> dict[str, list[tuple[str, str, str]]]:
    """GOLDEN_CONTRACT of GoldenTests.swift: case name -> [(group, key, shape spec)]."""
    table = re.search(r"let GOLDEN_CONTRACT: \[String: \[String\]\] = \[\n(.*?)\n\]", source, re.S)
    assert table, "GoldenTests.swift has no GOLDEN_CONTRACT table"
    contract = {}
    for line in table.group(1).splitlines():
        m = re.fullmatch(r'\s*"(\w+)": \[(.*)\],?', line)
        assert m, f"GOLDEN_CONTRACT line not of the form \"case\": [\"in.key:shape\", ...]: {line!r}"
        entries = re.findall(r'"(in|out)\.(\w+):([\w*,]+)"', m.group(2))
        assert entries and len(entries) == m.group(2).count('"') // 2, line
        contract[m.group(1)] = entries
    return contract


def expected_shape(spec: str, case: dict, doc: dict, inputs: dict[str, np.ndarray]) -> list[int | None]:
    h, w = case.get("input_hw", (None, None))
    symbols = {"H": doc["frame_hw"][0], "W": doc["frame_hw"][1], "h": h, "w": w, "K": len(doc["flip_indices"]),
               "C": len(doc["palette_rgb"]), "N": len(inputs["boxes"]) if "boxes" in inputs else None, "*": None}
    return [int(s) if s.isdigit() else symbols[s] for s in spec.split(",")]


def test_the_swift_tests_read_what_the_python_runtime_writes_today(tmp_path):
    golden.write(tmp_path)
    doc = json.loads((tmp_path / "cases.json").read_text())
    cases = {c["name"]: c for c in doc["cases"]}
    source = (SWIFT_TESTS / "GoldenTests.swift").read_text()
    contract = swift_contract(source)
    assert sorted(contract) == sorted(cases), "GOLDEN_CONTRACT and cases.json name different cases"
    for name, entries in contract.items():
        case = cases[name]
        inputs = {k: np.load(tmp_path / f) for k, f in case["inputs"].items()}
        for group, key, spec in entries:
            files = case["inputs" if group == "in" else "expected"]
            assert key in files, f"{name}: the Swift tests read {group}.{key}; cases.json has {sorted(files)}"
            shape = np.load(tmp_path / files[key]).shape
            want = expected_shape(spec, case, doc, inputs)
            assert len(shape) == len(want) and all(d is None or d == s for d, s in zip(want, shape, strict=True)), \
                f"{name} {group}.{key}: shape {shape}, the Swift tests expect {spec} = {want}"
    # The per-kind name lists the Swift tests select cases by are the Python writer's.
    kinds = re.findall(r'cases\("(\w+)", \[([^\]]*)\]\)', source)
    assert {k for k, _ in kinds} == {c["kind"] for c in doc["cases"]}
    for kind, names in kinds:
        assert sorted(re.findall(r'"(\w+)"', names)) == sorted(n for n, c in cases.items() if c["kind"] == kind), kind
    # Every literal array read is in the table; every top-level key read exists.
    listed = {(g, k) for entries in contract.values() for g, k, _ in entries}
    reads = set(re.findall(r'arr\(c, "(in|out)", "(\w+)"\)', source))
    assert reads and reads <= listed, f"read but not in GOLDEN_CONTRACT: {sorted(reads - listed)}"
    assert set(re.findall(r'doc\["(\w+)"\]', source)) <= set(doc)


def test_the_swift_end_to_end_test_reads_what_the_fixture_writer_writes():
    source = (SWIFT_TESTS / "EndToEndTests.swift").read_text()
    reads = set(re.findall(r'npy\("(\w+)", "(\w+)"\)', source))
    per_task = re.findall(r'npy\(p\.manifest\.task, "(\w+)"\)', source)
    reads |= {(task, name) for name in per_task for task in ("seg", "pose")}
    written = {(task, name) for task, names in swift_fixtures.EXPECTED.items() for name in names}
    assert reads and reads <= written, f"EndToEndTests.swift reads arrays nobody writes: {sorted(reads - written)}"
    files = set(re.findall(r'appendingPathComponent\("(\w+\.\w+)"\)', source))
    assert files <= {"cases.json", "frame.npy", "boxes.npy"}, files


def test_the_kotlin_and_swift_kits_declare_the_same_public_names():
    kotlin, swift = kotlin_names(KOTLIN_SOURCES), swift_names(SWIFT_SOURCES)
    core = {"decodeUdpDark", "readManifest", "Predictor", "TaskProcessor", "prepare", "SCHEMA_VERSION"}
    assert core <= kotlin & swift, "the scan found too little: check tests/ios_kit/declared_names.py"
    assert kotlin >= KOTLIN_ONLY and swift >= SWIFT_ONLY, "the allow-lists name something no kit declares"
    assert sorted(kotlin - KOTLIN_ONLY - swift) == [], "declared in the Kotlin kit only: add them to the Swift kit"
    assert sorted(swift - SWIFT_ONLY - kotlin) == [], "declared in the Swift kit only: add them to the Kotlin kit"
