"""Fixtures of the tensorrt backend's tests (test_tensorrt_backend.py, test_tensorrt_cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.fixture
def artifact(tmp_path) -> Path:
    from tests.runtime.tensorrt_artifacts import make_artifact

    return make_artifact(tmp_path / "seg")


@pytest.fixture
def install(monkeypatch):
    """install(**gpu) puts a fresh fake GPU's tensorrt and cuda-python into sys.modules and returns it."""
    from tests.runtime.fake_tensorrt import FakeGpu

    def install(**kw) -> FakeGpu:
        gpu = FakeGpu(**kw)
        for name, module in gpu.modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        return gpu

    return install
