"""The GitHub workflows run where we cannot (macOS runners): check here that what they call exists,
so that a rename in the package breaks a test rather than a user's Mac CI."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from sapiens_edge.cli import build_parser
from sapiens_edge.export.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _subcommands() -> set[str]:
    action = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(action.choices)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_references_exist(workflow: Path):
    text = workflow.read_text()
    imports = re.findall(r"from (sapiens_edge[\w.]*) import (\w+)", text)
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{workflow.name}: {module}.{name} does not exist"
    for path in re.findall(r"\b(tests/[\w/]+\.py)\b", text):
        assert (ROOT / path).is_file(), f"{workflow.name}: {path} does not exist"
    for module in re.findall(r"python -m ([\w.]+)", text):
        assert importlib.util.find_spec(module) is not None, f"{workflow.name}: no module {module} to run"
    for folder in re.findall(r"working-directory: ([\w/.-]+)", text):
        assert (ROOT / folder).is_dir(), f"{workflow.name}: working-directory {folder} does not exist"
    commands = re.findall(r"sapiens-edge (\w+)", text)
    assert set(commands) <= _subcommands(), f"{workflow.name}: unknown CLI commands {set(commands) - _subcommands()}"
    for loop in re.findall(r"for recipe in ([\w\- ]+);", text):
        assert set(loop.split()) <= set(RECIPES), f"{workflow.name}: unknown recipes in {loop!r}"


def test_coreml_workflow_validates_every_coreml_recipe():
    text = (ROOT / ".github" / "workflows" / "coreml-validate.yml").read_text()
    loop = re.search(r"for recipe in ([\w\- ]+);", text)
    assert loop is not None
    assert set(loop.group(1).split()) == {n for n, r in RECIPES.items() if r.target == "coreml"}
