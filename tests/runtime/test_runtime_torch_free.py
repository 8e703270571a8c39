"""The runtime must import and work without torch, OpenCV or scipy (Raspberry Pi rule)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"
ALLOWED_THIRD_PARTY = {"numpy", "PIL"}
ALLOWED_OWN = {"sapiens_edge.errors", "sapiens_edge.metadata", "sapiens_edge.fileio", "sapiens_edge.manifest",
               "sapiens_edge"}
# A backend may import its own engine (inside functions, when an artifact of its kind is loaded):
# ExecuTorch's Python runtime is the one engine that brings torch along (documented in docs/runtime.md).
ENGINE_IMPORTS = {"backends/executorch_backend.py": {"executorch"},
                  "backends/tflite_backend.py": {"ai_edge_litert", "tflite_runtime"}}

_SNIPPET = """
import sys
{block}
import sapiens_edge.runtime as rt
for name in rt.__all__:
    getattr(rt, name)  # resolves every lazy name, i.e. imports every runtime module
import numpy as np
res = rt.run_task(lambda x: [np.zeros((x.shape[0], 29, *x.shape[2:]), np.float32)],
                  np.zeros((8, 8, 3), np.uint8), "seg", input_hw=(16, 16))
assert res.labels.shape == (8, 8)
bad = [m for m in ("torch", "cv2", "scipy") if sys.modules.get(m) is not None]
assert not bad, bad
{check}
print("ok")
"""


def _run(code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_import_with_torch_blocked():
    _run(_SNIPPET.format(block="sys.modules['torch'] = None  # any 'import torch' now raises",
                         check="assert sys.modules['torch'] is None"))


def test_import_does_not_load_torch():
    _run(_SNIPPET.format(block="", check="assert 'torch' not in sys.modules"))


def test_runtime_sources_import_only_allowed_modules():
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    for path in sorted(RUNTIME_DIR.rglob("*.py")):  # backends included: engines load lazily
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                rel = path.relative_to(RUNTIME_DIR).as_posix()
                if top in stdlib or top in ALLOWED_THIRD_PARTY or name in ALLOWED_OWN \
                        or top in ENGINE_IMPORTS.get(rel, ()):
                    continue
                offenders.append(f"{path.relative_to(RUNTIME_DIR)}: {name}")
    assert not offenders, offenders
