"""The runtime must import and work without torch, OpenCV or scipy (Raspberry Pi rule): a static
fence over every import the runtime (and the core modules it uses) makes, and every runtime backend
run on a tiny artifact in a process where importing torch is impossible."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from sapiens_edge.export.artifact import write_artifact
from sapiens_edge.manifest import Manifest, TensorSpec

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_DIR = ROOT / "runtime"
# package -> folder, as installed (the subpackages live at the top level of the repository)
_SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
PACKAGE_DIRS = {pkg: ROOT / folder for pkg, folder in _SETUPTOOLS["package-dir"].items()}
ALLOWED_THIRD_PARTY = {"numpy", "PIL"}
# Core modules the runtime may import; they are fenced like the runtime itself (their imports checked too).
ALLOWED_OWN = {"sapiens_edge", "sapiens_edge.errors", "sapiens_edge.metadata", "sapiens_edge.fileio",
               "sapiens_edge.manifest", "sapiens_edge.memory", "sapiens_edge.scratch"}
# A backend may import its own engine (inside functions, when an artifact of its kind is loaded):
# ExecuTorch's Python runtime is the one engine that brings torch along (documented in docs/runtime.md).
# The TensorRT backend's engine side: cuda-python, and the static TensorRT check it runs before a build (which
# reads the graph with `onnx`; its torch-free run is tests/runtime/test_tensorrt_cli.py's, torch blocked).
ENGINE_IMPORTS = {"sapiens_edge.runtime.backends.executorch_backend": {"executorch"},
                  "sapiens_edge.runtime.backends.tflite_backend": {"ai_edge_litert", "tflite_runtime"},
                  "sapiens_edge.runtime.backends.tensorrt_cuda": {"cuda"},
                  "sapiens_edge.runtime.backends.openvino_rounding": {"openvino"},
                  "sapiens_edge.runtime.backends.openvino_reduced": {"openvino"},
                  # ONNX Runtime's pieces (large models): the graph read with `onnx` to plan them
                  "sapiens_edge.runtime.backends.onnx_plan": {"onnx"},
                  "sapiens_edge.runtime.backends.onnx_pieces": {"onnx", "onnxruntime"},
                  "sapiens_edge.runtime.backends.tensorrt_build": {"sapiens_edge.export.tensorrt_check",
                                                                   "sapiens_edge.export.tensorrt_rules"}}
BLOCKED = ("torch", "cv2", "scipy")

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
_BLOCK = f"for _m in {BLOCKED!r}:\n    sys.modules[_m] = None  # any import of them (or their submodules) now raises"


def _run(code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_import_with_torch_blocked():
    _run(_SNIPPET.format(block=_BLOCK, check="assert sys.modules['torch'] is None"))


def test_import_does_not_load_torch():
    _run(_SNIPPET.format(block="", check="assert 'torch' not in sys.modules"))


# --- static fence ---------------------------------------------------------------------------------

def module_file(name: str) -> Path | None:
    """The source file of our module `name` (a package's __init__.py), None if it is not one of ours."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        base = PACKAGE_DIRS.get(".".join(parts[:i]))
        if base is not None:
            path = base.joinpath(*parts[i:])
            for candidate in (path.with_suffix(".py") if parts[i:] else None, path / "__init__.py"):
                if candidate is not None and candidate.is_file():
                    return candidate
            return None
    return None


def _imports(tree: ast.AST):
    """Import nodes outside `if TYPE_CHECKING:` blocks (those never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in _imports(ast.Module([child], [])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def imported_modules(source: str, module: str, is_package: bool) -> list[str]:
    """Every module `source` (the code of `module`) imports, relative imports and `from pkg import
    submodule` resolved to the submodule itself."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in _imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            out.append(sub if module_file(sub) is not None else base)
    return out


def offending_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for name in imported_modules(source, module, is_package):
        top = name.split(".")[0]
        engine = ENGINE_IMPORTS.get(module, ())
        if top in stdlib or top in ALLOWED_THIRD_PARTY or top in engine or name in engine:
            continue
        if name in ALLOWED_OWN or (name.startswith("sapiens_edge.runtime") and module_file(name) is not None):
            continue  # runtime modules are fenced themselves
        bad.append(f"{module}: {name}")
    return bad


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(RUNTIME_DIR).with_suffix("")
    parts = ["sapiens_edge", "runtime", *rel.parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def test_runtime_sources_import_only_allowed_modules():
    fenced = [(*_module_name(p), p) for p in sorted(RUNTIME_DIR.rglob("*.py"))]  # backends too: engines load lazily
    fenced += [(name, module_file(name).name == "__init__.py", module_file(name)) for name in sorted(ALLOWED_OWN)]
    offenders = [o for name, is_package, path in fenced
                 for o in offending_imports(path.read_text("utf-8"), name, is_package)]
    assert not offenders, offenders


@pytest.mark.parametrize(("source", "module", "culprit"), [
    ("from sapiens_edge import loading", "sapiens_edge.runtime.image", "sapiens_edge.loading"),
    ("from sapiens_edge import metadata, zoo", "sapiens_edge.runtime.image", "sapiens_edge.zoo"),
    ("from ..loading import load_model", "sapiens_edge.runtime.image", "sapiens_edge.loading"),
    ("from ...loading import load_model", "sapiens_edge.runtime.backends.onnxruntime_backend", "sapiens_edge.loading"),
    ("from .. import checkpoint", "sapiens_edge.runtime.image", "sapiens_edge.checkpoint"),
    ("def f():\n    import torch.nn", "sapiens_edge.runtime.pose", "torch.nn"),
    ("import torch", "sapiens_edge.errors", "torch"),
])
def test_fence_sees_through_package_and_relative_imports(source, module, culprit):
    """The holes the fence once had: `from sapiens_edge import X` and relative imports name a module."""
    assert offending_imports(source, module) == [f"{module}: {culprit}"]


def test_fence_allows_runtime_and_core_modules():
    ok = ("from . import visualize\nfrom .backends import open_session\nfrom sapiens_edge import metadata\n"
          "from sapiens_edge.errors import ImageError\nfrom typing import TYPE_CHECKING\n"
          "if TYPE_CHECKING:\n    import torch\n")
    assert offending_imports(ok, "sapiens_edge.runtime.image") == []


# --- every backend with torch blocked -------------------------------------------------------------

H, W = 8, 4
BIAS = np.array([0.5, -1.0, 2.0], np.float32)


def _onnx_model(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["image", "bias"], ["logits"])], "add",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, H, W])],
        [numpy_helper.from_array(BIAS.reshape(1, 3, 1, 1), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _tflite_model(path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    from tests.runtime.tiny_tflite import write_add_model

    write_add_model(path, H, W, BIAS)


def _placeholder(path: Path) -> None:
    """A model file that is never opened: the backend must refuse before reading it."""
    if path.suffix == ".mlpackage":
        path.mkdir()
        path = path / "Manifest.json"
    path.write_bytes(b"not read")


TINY = {  # target -> (model file, writer, layout)
    "onnx": ("model.onnx", _onnx_model, "NCHW"),
    "tflite": ("model.tflite", _tflite_model, "NHWC"),
    "executorch": ("model.pte", _placeholder, "NCHW"),
    "coreml": ("model.mlpackage", _placeholder, "NCHW"),
}


def tiny_artifact(folder: Path, target: str) -> Path:
    model_file, writer, layout = TINY[target]
    shape = [1, H, W, 3] if layout == "NHWC" else [1, 3, H, W]

    def build(work: Path) -> Manifest:
        writer(work / model_file)
        return Manifest(model="sapiens2-0.1b-seg", task="seg", recipe=f"{target}-fp32", target=target,
                        precision="fp32", input_hw=[H, W], files={}, model_file=model_file,
                        inputs=[TensorSpec("image", shape, "float32", layout)],
                        outputs=[TensorSpec("logits", shape, "float32", layout)],
                        normalization={}, source_weights={"random": True}, tool_versions={})

    write_artifact(folder, build)
    return folder


def _run_blocked(body: str) -> None:
    """Run `body` in a fresh interpreter where torch, OpenCV and scipy cannot be imported."""
    _run(f"import sys\n{_BLOCK}\nimport numpy as np\nfrom sapiens_edge import errors, runtime\n{body}\n"
         f"assert [m for m in {BLOCKED!r} if sys.modules.get(m) is not None] == []\nprint('ok')\n")


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_backend_runs_with_torch_blocked(target, tmp_path):
    """Load (sha256 checks included), run a real tiny artifact; the outputs equal the numpy reference."""
    folder = tiny_artifact(tmp_path / target, target)
    x = np.random.default_rng(0).normal(size=(1, 3, H, W)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    _run_blocked(f"""
with runtime.load({str(folder)!r}, threads=1) as p:
    np.save({str(tmp_path / "out.npy")!r}, p.run(np.load({str(tmp_path / "x.npy")!r}))[0])
""")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), x + BIAS.reshape(1, 3, 1, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("target", "error", "needle"), [
    # ExecuTorch's Python runtime exchanges torch tensors: without torch, a clear MissingDependencyError.
    ("executorch", "MissingDependencyError", r"needs the 'torch' package.*pip install 'sapiens-edge\[executorch\]'"),
    ("coreml", "PlatformUnavailableError", "Core ML runs on Apple platforms only"),
])
def test_backend_that_cannot_run_here_says_why_with_torch_blocked(target, error, needle, tmp_path):
    if target == "executorch" and importlib.util.find_spec("executorch") is None:
        pytest.skip("executorch not installed: the error would name executorch, not torch")
    if target == "coreml" and sys.platform == "darwin":
        pytest.skip("Core ML runs on macOS")
    folder = tiny_artifact(tmp_path / target, target)
    _run_blocked(f"""
import re
try:
    runtime.load({str(folder)!r})
except errors.{error} as exc:
    assert re.search({needle!r}, str(exc)), str(exc)
else:
    raise AssertionError("loaded")
""")
