"""Peak memory of the runtime against the model file size, one fresh process per artifact.

    python -m sapiens_edge.benchmarks.runtime_memory ARTIFACT [ARTIFACT ...] [--threads 2]

For each artifact a child process imports the runtime, its backend and the backend's engine
(onnxruntime; torch + ExecuTorch's runtime) (baseline), loads the
artifact (after load) and runs one inference on a zero input (after run); each figure is that
process's peak RSS (ru_maxrss). `after load - baseline` against the file size tells whether the
weights were copied or memory-mapped and paged in on demand.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, resource, sys
import numpy as np
from sapiens_edge import runtime
from sapiens_edge.manifest import read_manifest
from sapiens_edge.runtime.backends import BACKENDS, backend_options, default_backend
import importlib
path, threads, options, backend = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
m = read_manifest(path, verify=False)
backend = backend or default_backend(m)
importlib.import_module(BACKENDS[backend].module)
# The engines load lazily inside the backends; import them first so the baseline includes them.
engines = {"onnxruntime": ("onnxruntime",), "executorch": ("torch", "executorch.runtime"),
           "tflite": ("ai_edge_litert.interpreter",), "tensorrt": ("tensorrt",),
           "openvino": ("openvino",)}
for engine in engines.get(backend, ()):
    importlib.import_module(engine)
if "threads" in backend_options(backend):
    options["threads"] = threads
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = peak()
p = runtime.load(path, backend, verify=False, **options)
loaded = peak()
p.run(np.zeros([1, 3, *m.input_hw], np.float32))
row = {"baseline_mib": base, "after_load_mib": loaded, "after_run_mib": peak()}
from sapiens_edge.benchmarks.runtime_memory import gpu_mib_of
import os
row["gpu_mib"] = gpu_mib_of(os.getpid())
print(json.dumps(row))
"""


def gpu_mib_of(pid: int, smi_csv: str | None = None) -> float | None:
    """Device memory (MiB) that the NVIDIA driver reports for process `pid` (None without nvidia-smi,
    or where it lists no such process: a CPU run, or a Jetson, whose nvidia-smi lists no processes).
    `smi_csv`: the output of `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`."""
    if smi_csv is None:
        try:
            smi_csv = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                     timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    used = []
    for line in smi_csv.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == 2 and cells[0].isdigit() and int(cells[0]) == pid:
            try:
                used.append(float(cells[1]))
            except ValueError:  # "[N/A]" where the driver cannot tell
                continue
    return sum(used) if used else None


def measure(artifact: Path, threads: int, options: dict | None = None, backend: str | None = None) -> dict:
    """Peak RSS (and GPU memory, where nvidia-smi reports it) of a fresh process that loads
    `artifact` in `backend` (default: the manifest target's) with its `options` (e.g. {"provider": "cuda"}; the
    threads go to the backends that take them) and runs it once."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(artifact), str(threads), json.dumps(options or {}),
                          backend or ""], capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    manifest = json.loads((artifact / "manifest.json").read_text())
    row["file_mib"] = sum((artifact / f).stat().st_size for f in manifest["files"] if f != "README.md") / 2**20
    row["artifact"], row["recipe"] = str(artifact), manifest["recipe"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print("| recipe | file MiB | baseline MiB | after load MiB | after 1 run MiB | load - baseline vs file |")
    print("|---|---:|---:|---:|---:|---:|")
    for art in args.artifacts:
        r = measure(art, args.threads)
        print(f"| {r['recipe']} | {r['file_mib']:.0f} | {r['baseline_mib']:.0f} | {r['after_load_mib']:.0f} | "
              f"{r['after_run_mib']:.0f} | {(r['after_load_mib'] - r['baseline_mib']) / r['file_mib']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
