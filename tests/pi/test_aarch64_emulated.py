"""The Raspberry Pi path: the torch-free runtime installed on aarch64 from wheels and run under qemu user emulation
(tests/pi/aarch64_check.py) agrees with this host on every Pi recipe, within the recipe's own thresholds; and an
aarch64 install with a dependency that has no aarch64 wheel fails naming it.

Needs qemu-user-static, debootstrap and dpkg-deb (.ci/run installs them) and the package index (a cold root
downloads ~100 MB; it is cached in ~/.cache/sapiens-edge/aarch64). Skipped without the tools, which fails
`make test` (--require-targets).
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from sapiens_edge.validation.validate import resolve_thresholds
from tests.pi import aarch64_check as C
from tests.pi import aarch64_root as A
from tests.skip_check import skip_missing_tool


@pytest.fixture
def tools() -> None:
    try:
        A.check_tools()
    except A.EmulatorMissingError as exc:
        skip_missing_tool(str(exc))


def test_the_runtime_on_aarch64_agrees_with_this_host(tools, tmp_path):
    result = C.run_check(tmp_path, say=print)
    C.print_table(result)
    assert result.emulated["machine"] == "aarch64", result.emulated
    assert result.emulated["torch"] is False  # the device extras alone: no torch on the Pi
    assert [r.name for r in result.rows] == [f"{t}-{r}" for t in C.TASKS for r in C.RECIPES]
    for row in result.rows:
        task, recipe = row.name.split("-", 1)
        assert row.fatal is None, (row.name, row.fatal)
        # every threshold of the recipe checked (tensor ones once per output), each passing
        assert {c.metric for c in row.checks} == {k.rsplit("_", 1)[0] for k in resolve_thresholds(recipe, task)}
        assert all(c.passed for c in row.checks), (row.name, [c for c in row.checks if not c.passed])
    assert result.passed


def test_a_dependency_without_an_aarch64_wheel_is_named(tmp_path):
    """The resolver step alone (no emulation): `mkl` ships x86-64 wheels only."""
    wheel = C.build_wheel(tmp_path / "dist")
    with pytest.raises(A.Aarch64InstallError, match=r"^mkl: no aarch64 wheel for CPython 3\.11") as exc:
        A.download_wheels(wheel, tmp_path / "wheels", extra_requirements=["mkl"])
    assert "No matching distribution found for mkl" in str(exc.value)  # pip's own words follow
