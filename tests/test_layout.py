"""The layout: `sapiens_edge` lives in src/, its subpackages export/, quantize/, runtime/ and benchmarks/
at the top level (mapped by pyproject's package-dir). No import-path patching: a checkout on sys.path
cannot shadow the installed tree, because the package is not at the checkout's root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_on_sys_path_imports_the_same_files_as_the_install():
    code = ("import json, sapiens_edge, sapiens_edge.export, sapiens_edge.runtime.backends, sapiens_edge.benchmarks;"
            "print(json.dumps([list(sapiens_edge.__path__), sapiens_edge.export.__file__,"
            " sapiens_edge.runtime.backends.__file__, sapiens_edge.benchmarks.__file__]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    path, export, backends, benchmarks = json.loads(out.stdout)
    assert [Path(p) for p in path] == [ROOT / "src" / "sapiens_edge"]  # one folder: nothing appended at run time
    assert Path(export) == ROOT / "export" / "__init__.py"
    assert Path(backends) == ROOT / "runtime" / "backends" / "__init__.py"
    assert Path(benchmarks) == ROOT / "benchmarks" / "__init__.py"


def test_no_package_folder_at_the_root_and_studies_apart_from_bench():
    assert not (ROOT / "sapiens_edge").exists()
    assert "__path__" not in (ROOT / "src" / "sapiens_edge" / "__init__.py").read_text()
    shipped = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    studies = {p.stem for p in (ROOT / "benchmarks" / "studies").glob("*.py")}
    assert {"bench", "bench_output", "sysinfo"} <= shipped
    assert {"recipe_sweep", "coreml_recipe_sweep", "attention_kernels", "load_and_latency"} <= studies
    assert not shipped & (studies - {"__init__"})
