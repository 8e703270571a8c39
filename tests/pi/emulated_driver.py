"""Run inside the emulated aarch64 root (aarch64_check): every artifact's raw outputs on the host's prepared inputs,
through the installed runtime wheel alone (numpy and the engines; this file imports nothing from the checkout).

    python emulated_driver.py JOB.json   (JOB: {"out": DIR, "artifacts": {NAME: [ARTIFACT_DIR, INPUT.npy]}})

Writes OUT/NAME-K.npy per output K and prints one JSON line: the outputs per artifact, the machine, the versions,
whether torch is importable.
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
    out = Path(job["out"])
    counts = {}
    for name, (artifact, inputs) in job["artifacts"].items():
        with runtime.load(artifact) as predictor:
            outputs = predictor.run(np.load(inputs))
        for k, value in enumerate(outputs):
            np.save(out / f"{name}-{k}.npy", np.asarray(value))
        counts[name] = len(outputs)
    versions = {d: metadata.version(d) for d in ("sapiens-edge", "numpy", "pillow", "onnxruntime", "ai-edge-litert")}
    print(json.dumps({"outputs": counts, "machine": platform.machine(), "python": platform.python_version(),
                      "versions": versions, "torch": importlib.util.find_spec("torch") is not None}))


if __name__ == "__main__":
    main(sys.argv[1])
