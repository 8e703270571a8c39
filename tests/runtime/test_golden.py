"""The golden-vector writer for app kits (runtime/golden.py): every task and kind is covered, files are
little-endian .npy that round-trip, and the cases are what the Python runtime computes."""

from __future__ import annotations

import json

import numpy as np

from sapiens_edge import runtime
from sapiens_edge.runtime import golden


def test_cli_writes_every_task_and_kind(tmp_path, capsys):
    assert golden.main(["--write", str(tmp_path)]) == 0
    assert "15 cases" in capsys.readouterr().out
    doc = json.loads((tmp_path / "cases.json").read_text())
    kinds = {(c["task"], c["kind"]) for c in doc["cases"]}
    for task in ("pose", "seg", "normal"):  # (the dense pre-processing case serves normal and pointmap)
        assert {(task, "preprocess"), (task, "raw"), (task, "decoded")} <= kinds
    assert ("pointmap", "raw") in kinds and ("seg", "overlay") in kinds and ("normal", "overlay") in kinds
    for case in doc["cases"]:
        for name in [*case["inputs"].values(), *case["expected"].values()]:
            arr = np.load(tmp_path / name)
            assert arr.dtype.byteorder in ("<", "|", "=") and arr.size > 0
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 4 << 20  # small enough to regenerate per run


def test_frame_round_trips_through_argb_and_cases_match_the_runtime(tmp_path):
    golden.write(tmp_path)
    doc = json.loads((tmp_path / "cases.json").read_text())
    argb = np.load(tmp_path / "frame.npy").view(np.uint32)
    frame = np.stack([(argb >> 16) & 255, (argb >> 8) & 255, argb & 255], axis=-1).astype(np.uint8)
    np.testing.assert_array_equal(frame, golden.synthetic_frame())
    assert (argb >> 24 == 255).all()
    case = next(c for c in doc["cases"] if c["name"] == "raw_seg_up")
    logits = np.load(tmp_path / case["inputs"]["logits"])[0]
    np.testing.assert_array_equal(np.load(tmp_path / case["expected"]["labels"]),
                                  runtime.seg_labels(logits, frame.shape[:2]))


def test_decoded_seg_contract_is_nearest_on_pixel_centres():
    labels = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(golden.decoded_seg_labels(labels, (4, 3)), np.repeat(labels, 2, axis=0))
    np.testing.assert_array_equal(golden.decoded_seg_labels(labels, (1, 1)), [[4]])  # centre of (2, 3) -> (1, 1)
