"""Run inside the emulated aarch64 root (aarch64_check), through the installed runtime wheel alone (numpy and the
engines; this file imports nothing from the checkout):

    python emulated_driver.py JOB.json

JOB: {"raw": {NAME: [ARTIFACT_DIR, INPUT.npy]}, "raw_out": DIR, "run": {NAME: [ARTIFACT_DIR, OUTPUT_DIR]},
"photo": IMAGE}. Writes each artifact's raw outputs on its input to RAW_OUT/NAME-K.npy (output K), runs
`sapiens-edge run ARTIFACT_DIR IMAGE --output OUTPUT_DIR` through the console-script entry point the wheel declares
(in this process: one emulated Python start-up, not one per artifact), and prints one JSON line: the outputs per
artifact, the machine, the versions, the OpenVINO artifacts' inference precisions, whether torch is importable.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from sapiens_edge import runtime


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    counts, precisions = {}, {}
    for name, (artifact, inputs) in job["raw"].items():
        with runtime.load(artifact) as predictor:
            outputs = predictor.run(np.load(inputs))
            described = predictor.describe()
        if "inference_precision" in described:  # OpenVINO: what its "reduced" hint became on this CPU
            precisions[name] = described["inference_precision"]
            if described.get("reduced_ops"):  # openvino-int8-hybrid: f32, but attention and deconvs reduced
                precisions[name] += "+" + described["reduced_ops"]["precision"]
        for k, value in enumerate(outputs):
            np.save(Path(job["raw_out"]) / f"{name}-{k}.npy", np.asarray(value))
        counts[name] = len(outputs)
    (entry,) = metadata.entry_points(group="console_scripts", name="sapiens-edge")
    cli = entry.load()
    for name, (artifact, output) in job["run"].items():
        rc = cli(["run", artifact, job["photo"], "--output", output])
        if rc != 0:
            sys.exit(f"sapiens-edge run {name} exited {rc}")
    versions = {d: metadata.version(d) for d in ("sapiens-edge", "numpy", "pillow", "onnxruntime", "ai-edge-litert",
                                               "openvino")}
    print(json.dumps({"outputs": counts, "machine": platform.machine(), "python": platform.python_version(),
                      "versions": versions, "precisions": precisions,
                      "torch": importlib.util.find_spec("torch") is not None}))


if __name__ == "__main__":
    main(sys.argv[1])
