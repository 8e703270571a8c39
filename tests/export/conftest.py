"""Fixtures of the export target tests: tiny models per task, and validate() pointed at them."""

from __future__ import annotations

import importlib

import pytest

torch = pytest.importorskip("torch")

from tests.export.shared import WELL_CONDITIONED, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def models() -> dict:
    """Seg and pose on the well-conditioned stand-in (shared.WELL_CONDITIONED): int8 recipes pass their own
    thresholds on it."""
    return {task: tiny_model(task, **WELL_CONDITIONED.get(task, {})) for task in ("pose", "seg", "normal", "pointmap")}


@pytest.fixture
def tiny_reference(monkeypatch, models):
    """validate() loads the reference by zoo name; tiny models are not in the zoo."""
    validate_module = importlib.import_module("sapiens_edge.validation.validate")
    monkeypatch.setattr(validate_module, "load_model", lambda name, weights=None, seed=0: models[name[5:]])
