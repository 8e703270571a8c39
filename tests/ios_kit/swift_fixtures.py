"""Fixtures for the Swift kit's XCTest end-to-end test (ios_demo/SapiensEdgeKit), written by the Python side
in the same CI run (.github/workflows/coreml-validate.yml, on macOS):

    python -m tests.ios_kit.swift_fixtures DIR

exports tiny seg and pose models with `coreml-fp32` (image input, the recipes' default) and writes what
`sapiens_edge.runtime` computes with them on the bundled photo (Core ML on the CPU, through coremltools):
the normalized input, the engine's raw output, and the decoded labels / keypoints, in the layout the Kotlin
kit's end-to-end fixtures use (tests/android_kit/test_kotlin_kit.py). The golden vectors come from
`python -m sapiens_edge.runtime.golden --write DIR`. Needs torch and coremltools; the predictions need macOS.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BOXES = np.array([[60, 20, 300, 500], [200, 100, 260, 160]], dtype=np.float32)  # as the Kotlin kit's test
RECIPE = "coreml-fp32"
# The arrays written per task, `{task}.{name}.npy` (EndToEndTests.swift reads them; the contract test checks that).
EXPECTED = {"seg": ("input", "raw", "labels"), "pose": ("input", "raw", "keypoints", "scores")}


def write(folder: Path) -> Path:
    """Export the tiny artifacts into `folder` and write the Python runtime's results; returns cases.json."""
    from sapiens_edge import runtime
    from sapiens_edge.export import core
    from sapiens_edge.runtime import golden
    from tests.export.shared import tiny_model
    from tests.helpers import ASTRONAUT

    folder.mkdir(parents=True, exist_ok=True)
    image = runtime.load_image(ASTRONAUT)
    np.save(folder / "frame.npy", golden.to_argb(image))
    np.save(folder / "boxes.npy", BOXES)
    cases = []
    for task in ("seg", "pose"):
        art = core.export(tiny_model(task), RECIPE, folder / task, progress=lambda _: None).path
        boxes = BOXES if task == "pose" else None
        with runtime.load(art, compute_units="cpu") as pred:  # the Swift test asks for .cpu too
            result = pred.predict(image, boxes=boxes)
            inputs = runtime.get_processor(task).prepare(image, boxes, pred.input_hw).inputs
            raw = pred.run(inputs)[0]
        arrays = {"input": inputs, "raw": raw, "labels": getattr(result, "labels", None),
                  "keypoints": getattr(result, "keypoints", None), "scores": getattr(result, "scores", None)}
        for name in EXPECTED[task]:
            arr = arrays[name].astype(np.int32) if name == "labels" else arrays[name]
            np.save(folder / f"{task}.{name}.npy", np.ascontiguousarray(arr))
        cases.append({"task": task, "artifact": task, "recipe": RECIPE, "expected": list(EXPECTED[task])})
    path = folder / "cases.json"
    path.write_text(json.dumps({"frame": "frame.npy", "frame_hw": list(image.shape[:2]), "boxes": "boxes.npy",
                                "cases": cases}))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.ios_kit.swift_fixtures",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder to write the artifacts and cases.json into")
    print(f"wrote {write(parser.parse_args(argv).folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
