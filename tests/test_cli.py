"""The CLI is thin: check its output, exit codes and that user errors print no traceback."""

from __future__ import annotations

import json
import warnings

import pytest

from sapiens_edge.cli import main
from sapiens_edge.export.recipes import RECIPES
from sapiens_edge.zoo import TASKS


def test_models_table_and_json(capsys):
    assert main(["models", "--task", "seg"]) == 0
    out = capsys.readouterr().out
    assert "sapiens2-0.4b-seg" in out and "hf://facebook/sapiens2-seg-0.4b" in out
    assert "0.4b is the smallest official task model" in out
    assert main(["models", "--json", "--official"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"sapiens2-5b-pointmap", "sapiens2-1b-4k"}
    assert not any(r["name"].startswith("sapiens2-0.1b-") for r in rows)


@pytest.mark.slow
def test_inspect(seg01, capsys):
    _, files = seg01
    assert main(["inspect", str(files["bf16"])]) == 0
    out = capsys.readouterr().out
    assert "sapiens2-0.1b-seg" in out and "123,047,645" in out and "BF16" in out
    assert main(["inspect", "--json", str(files["backbone"])]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "sapiens2-0.1b"


@pytest.mark.parametrize("argv,needle", [
    (["inspect", "/nonexistent/w.safetensors"], "not found"),
    (["predict", "sapiens2-0.4b-sge", "x.jpg", "-o", "out", "--random-weights"], "Did you mean"),
    (["predict", "sapiens2-0.1b-seg", "x.jpg", "-o", "out"], "needs --weights"),
])
def test_user_errors_exit_2_without_traceback(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err


def test_bad_box_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "sapiens2-0.1b-pose", "x.jpg", "-o", "o", "--box", "10,10,5,5"])
    assert exc.value.code == 2 and "x2>x1" in capsys.readouterr().err


def test_recipes_table_with_reasons(capsys):
    assert main(["recipes", "--model", "sapiens2-0.4b-pointmap", "--input-size", "512x384", "--json"]) == 0
    rows = {r["recipe"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["onnx-fp32"]["available"] == "no" and "1024x768 only" in rows["onnx-fp32"]["reason"]
    # calibrated recipes list their calibration methods, default first
    assert rows["onnx-int8"]["calibration"] == "percentile/minmax/entropy" and rows["onnx-fp32"]["calibration"] == "no"
    # where the artifact runs: Core ML exports anywhere and runs on Apple devices only
    assert rows["coreml-fp16"]["runs_on"] == "Apple devices only" and rows["onnx-int8"]["runs_on"] == "anywhere"
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "onnx-int8-dynamic" in out and "runs on" in out.splitlines()[0]


def test_recipes_markdown_is_the_generated_table(capsys):
    from sapiens_edge.export.recipe_table import markdown

    assert main(["recipes", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown()


def test_choices_come_from_the_tables():
    from sapiens_edge.cli import build_parser
    from sapiens_edge.runtime.backends.coreml_backend import COMPUTE_UNITS

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    option = {a.dest: a for a in sub["export"]._actions}["calibration_method"]
    assert set(option.choices) == {m for r in RECIPES.values() for m in r.calibration_methods}
    assert tuple({a.dest: a for a in sub["run"]._actions}["compute_units"].choices) == tuple(COMPUTE_UNITS)
    assert set({a.dest: a for a in sub["models"]._actions}["task"].choices) == {"backbone", *TASKS}


@pytest.mark.parametrize("argv,needle", [
    (["export", "sapiens2-0.1b-seg", "--recipe", "onnx-int9", "--random-weights", "-o", "x"], "Valid recipes"),
    (["export", "sapiens2-0.1b-seg", "--recipe", "onnx-fp32", "-o", "x"], "needs --weights"),
    (["export", "sapiens2-0.1b-seg", "--recipe", "onnx-int8", "--random-weights", "-o", "x",
      "--calibration", "/nonexistent/photos"], "Calibration folder not found"),
])
def test_export_user_errors(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
