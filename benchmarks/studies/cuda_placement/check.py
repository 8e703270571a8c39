"""Which nodes of an ONNX model ONNX Runtime's CUDA provider takes, on a machine without a GPU.

    python benchmarks/studies/cuda_placement/check.py MODEL.onnx|ARTIFACT_DIR ... --python GPU_VENV/bin/python

GPU_VENV holds onnxruntime-gpu (a CUDA 13 build, e.g. onnxruntime-gpu==1.31.1). The stand-in CUDA,
cuBLAS, cuDNN and TensorRT libraries in `fakecuda/` (built here with gcc) report one GPU and hand
out host memory, so the real CUDA provider loads and runs ONNX Runtime's real partitioner and
kernel lookup; no kernel ever runs, so this says nothing of speed or numbers. It prints, per model,
how many nodes each provider got and the op types that missed CUDA, and exits 1 if any did.
Maintainers' tool: the CUDA placement test's golden op list (tests/export/test_onnx_target.py)
comes from it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "fakecuda"
# soname -> source; the CUDA 13 sonames onnxruntime-gpu 1.31 links against
LIBS = {"libcudart.so.13": "cudart.c", "libcublas.so.13": "cublas.c", "libcublasLt.so.13": "cublasLt.c",
        "libcudnn.so.9": "cudnn.c", "libcurand.so.10": "curand.c", "libcuda.so.1": "cuda.c",
        "libnvinfer.so.10": "nvinfer.c", "libnvonnxparser.so.10": "nvonnxparser.c"}

_CHILD = r"""
import sys, onnxruntime as ort
so = ort.SessionOptions()
so.log_severity_level = 0  # the 'Node placements' listing is a verbose log
so.log_verbosity_level = 0
so.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=[("CUDAExecutionProvider", {"device_id": 0}),
                                                     "CPUExecutionProvider"])
print("PROVIDERS", ",".join(s.get_providers()), flush=True)
"""


def build(folder: Path) -> None:
    for soname, source in LIBS.items():
        cmd = ["gcc", "-shared", "-fPIC", "-O0", "-o", str(folder / soname), str(HERE / source),
               f"-Wl,-soname,{soname}"]
        version_script = HERE / f"{soname}.map"
        if version_script.is_file():  # the provider library asks for versioned symbols (cudaMalloc@libcudart.so.13)
            cmd.append(f"-Wl,--version-script={version_script}")
        subprocess.run(cmd, check=True)


def placement(model: Path, python: str, libs: Path) -> tuple[dict[str, int], dict[str, dict[str, str]], str]:
    """(nodes per provider, {provider: {node name: op type}}, ONNX Runtime's log) for one model."""
    env = {**os.environ, "LD_LIBRARY_PATH": f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    out = subprocess.run([python, "-c", _CHILD, str(model)], capture_output=True, text=True, env=env)
    log = out.stdout + out.stderr
    if out.returncode != 0 or "PROVIDERS CUDAExecutionProvider" not in log:
        raise RuntimeError(f"the CUDA provider did not come up for {model}:\n{log[-3000:]}")
    counts: dict[str, int] = {}
    nodes: dict[str, dict[str, str]] = {}
    provider = None
    for line in log.splitlines():
        m = re.search(r"(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)", line)
        if m:
            provider = m.group(1)
            counts[provider] = int(m.group(2))
            continue
        m = re.search(r"VerifyEachNodeIsAssignedToAnEp\]\s+(\S+) \((.*)\)\s*$", line)
        if m and provider:  # "  OpType (node name)" lines follow each provider's header
            nodes.setdefault(provider, {})[m.group(2)] = m.group(1)
    if not counts:
        raise RuntimeError(f"no 'Node placements' listing in ONNX Runtime's log for {model}")
    return counts, nodes, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="model.onnx files or artifact folders")
    parser.add_argument("--python", required=True, help="a Python whose onnxruntime is onnxruntime-gpu")
    parser.add_argument("--ops", action="store_true", help="also list the op types placed on CUDA")
    args = parser.parse_args(argv)
    missed = 0
    on_cuda: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="fakecuda-") as tmp:
        build(Path(tmp))
        for model in args.models:
            path = model / "model.onnx" if model.is_dir() else model
            counts, nodes, _ = placement(path, args.python, Path(tmp))
            total = sum(counts.values())
            print(f"{model}: {total} nodes; " + ", ".join(f"{p}: {n}" for p, n in counts.items()))
            for provider, placed in nodes.items():
                for name, op in placed.items():
                    if provider != "CUDAExecutionProvider":
                        print(f"    on {provider}: {op} ({name})")
            if counts.get("CUDAExecutionProvider") == total:
                on_cuda |= file_ops(path)
            missed += total - counts.get("CUDAExecutionProvider", 0)
    if args.ops:  # the file's ops (before ONNX Runtime's fusions) of the models that landed wholly on CUDA
        print("op types of the models wholly on CUDA:", ", ".join(sorted(on_cuda)))
    return 1 if missed else 0


def file_ops(path: Path) -> set[str]:
    """'domain:OpType' of every node in the file (the graph as exported, before ONNX Runtime's fusions)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in graph.node}


if __name__ == "__main__":
    sys.exit(main())
