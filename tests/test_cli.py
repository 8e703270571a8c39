"""The CLI is thin: check its output, exit codes and that user errors print no traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import warnings

import pytest

from sapiens_edge.cli import build_parser, main
from sapiens_edge.errors import RandomWeightsWarning, SapiensEdgeError
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
    (["export", "sapiens2-0.1b-pointmap", "--recipe", "onnx-fp32", "--random-weights", "-o", "x", "--decode"],
     "dense geometry already"),
    (["export", "sapiens2-0.1b-seg", "--recipe", "coreml-fp32", "--random-weights", "-o", "x", "--decode"],
     "does not lower decoded outputs"),
])
def test_export_user_errors(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------- quiet by default

def _noisy_models(fail: BaseException | None = None):
    """A stand-in for zoo.list_models that talks like the exporters do: native code writing to fds 1
    and 2 (here and in a subprocess), a third-party Python warning, and a warning of ours."""
    def list_models(task=None, official_only=False):
        print("our own progress line", file=sys.stderr)
        os.write(2, b"native noise on fd 2\n")
        os.write(1, b"native noise on fd 1\n")
        subprocess.run([sys.executable, "-c", "import os; os.write(2, b'child noise\\n')"], check=True)
        warnings.warn_explicit("third-party deprecation", UserWarning, "/site-packages/thirdparty/lib.py", 7)
        warnings.warn("stand-in weights", RandomWeightsWarning, stacklevel=1)
        logger = logging.getLogger("thirdparty.quiet_test")  # a handler made mid-command holds sys.stderr
        handler = logging.StreamHandler()
        logger.addHandler(handler)
        logger.warning("third-party log line")
        logger.removeHandler(handler)
        # an engine whose native log is routed through Python's sys.stderr (ExecuTorch's cpuinfo lines)
        exec("import sys; sys.stderr.write('engine log via python\\n')", {"__name__": "executorch.runtime"})
        # NNCF's progress bars: rich writes them through sys.stdout
        exec("import sys; sys.stdout.write('Statistics collection 100%\\n')", {"__name__": "rich.console"})
        if fail is not None:
            raise fail
        return []
    return list_models


def test_quiet_hides_third_party_output_and_counts_it(monkeypatch, capfd):
    monkeypatch.setattr("sapiens_edge.zoo.list_models", _noisy_models())
    stdout, stderr = sys.stdout, sys.stderr
    with pytest.warns(RandomWeightsWarning, match="stand-in weights") as record:  # ours reaches the user
        assert main(["models"]) == 0
    assert not any("third-party" in str(w.message) for w in record)
    out, err = capfd.readouterr()
    assert "our own progress line" in err and "model" in out  # our lines (and the table header)
    assert "noise" not in out + err and "third-party deprecation" not in err and "log line" not in err
    assert "engine log" not in err and "Statistics collection" not in out
    assert "(7 lines of third-party output hidden; --verbose shows them)" in err
    # everything is restored: Python streams and the process's fds
    assert sys.stdout is stdout and sys.stderr is stderr
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


@pytest.mark.parametrize("argv", [["--verbose", "models"], ["models", "--verbose"]])
def test_verbose_shows_third_party_output(argv, monkeypatch, capfd):
    monkeypatch.setattr("sapiens_edge.zoo.list_models", _noisy_models())
    with pytest.warns(UserWarning, match="third-party deprecation"):  # passed on, not hidden
        assert main(argv) == 0
    out, err = capfd.readouterr()
    assert "native noise on fd 1" in out and "native noise on fd 2" in err and "child noise" in err
    assert "third-party log line" in err and "engine log via python" in err and "Statistics collection" in out
    assert "our own progress line" in err and "hidden" not in err


def test_quiet_keeps_error_lines_and_shows_the_hidden_tail_on_a_crash(monkeypatch, capfd):
    monkeypatch.setattr("sapiens_edge.zoo.list_models", _noisy_models(SapiensEdgeError("bad input, do X")))
    with pytest.warns(RandomWeightsWarning):
        assert main(["models"]) == 2
    err = capfd.readouterr().err
    assert err.rstrip().endswith("error: bad input, do X") and "noise" not in err and "hidden" in err
    # an unexpected exception (our bug or a library's): the hidden output is shown, never swallowed
    monkeypatch.setattr("sapiens_edge.zoo.list_models", _noisy_models(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"), pytest.warns(RandomWeightsWarning):
        main(["models"])
    err = capfd.readouterr().err
    assert "lines of hidden third-party output" in err and "native noise on fd 2" in err and "child noise" in err
    assert "third-party deprecation" in err


# ---------------------------------------------------------------------------- messages and help

def test_every_argument_has_help():
    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "sapiens-edge")
    assert not missing, f"arguments without --help text: {missing}"


def test_version_is_set_once(capsys):
    from pathlib import Path

    import sapiens_edge

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"sapiens-edge {sapiens_edge.__version__}"
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sapiens_edge.__version__"}


def test_messages_name_flags_for_the_cli_and_keywords_for_python(tmp_path, capsys):
    from sapiens_edge.errors import OutputExistsError, cli_messages
    from sapiens_edge.fileio import refuse_overwrite

    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(OutputExistsError) as api:
        refuse_overwrite([tmp_path / "x.json"], force=False)
    with cli_messages(), pytest.raises(OutputExistsError) as cli:
        refuse_overwrite([tmp_path / "x.json"], force=False)
    assert "force=True" in str(api.value) and "--force" not in str(api.value)
    assert "--force" in str(cli.value) and "force=True" not in str(cli.value)
    # through the CLI: validate's image check (before any model work) speaks in flags
    (tmp_path / "empty").mkdir()
    assert main(["validate", str(tmp_path / "no-artifact"), "--images", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "leave --images out" in err and "images=None" not in err


def test_bench_random_weights_go_with_the_torch_row(capsys):
    assert main(["bench", "some-artifact", "--random-weights"]) == 2
    assert "go with --torch-baseline" in capsys.readouterr().err


def test_predict_without_image_uses_the_bundled_photo_and_random_weights_say_so_once(monkeypatch, tmp_path, capsys):
    """A first run needs no photo of one's own; --random-weights was asked for, so one plain note, no warning."""
    pytest.importorskip("torch")
    import importlib

    from sapiens_edge.metadata import bundled_photo
    from sapiens_edge.results_io import PredictionRecords

    seen = {}

    def predict(model, images, output, **kwargs):
        seen["images"] = images
        warnings.warn("no weights given", RandomWeightsWarning, stacklevel=1)  # what load_model does
        return PredictionRecords()

    # the module, not the package's lazy `predict` name (which is the function until the module is imported)
    monkeypatch.setattr(importlib.import_module("sapiens_edge.predict"), "predict", predict)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert main(["predict", "sapiens2-0.1b-seg", "--random-weights", "-o", str(tmp_path)]) == 0
    assert seen["images"] == [str(bundled_photo())]
    assert not [w for w in record if issubclass(w.category, RandomWeightsWarning)]
    err = capsys.readouterr().err
    assert "no image given: using the bundled photo" in err and err.count("--random-weights") == 1


def test_validate_never_overwrites_a_report_without_force(tmp_path, capsys):
    """`validate --report FILE` refuses an existing report (its .json or the .md beside it) before any
    work; --force lets it through to the next step (here: the missing artifact)."""
    pytest.importorskip("torch")
    from sapiens_edge.errors import OutputExistsError
    from sapiens_edge.validation import validate

    (tmp_path / "r.md").write_text("previous verdict")
    args = ["validate", str(tmp_path / "no-artifact"), "--report", str(tmp_path / "r.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "r.md" in err and "--force" in err and "--report" in err and "no-artifact" not in err
    assert main([*args, "--force"]) == 2
    err = capsys.readouterr().err
    assert "already exist" not in err and "no-artifact" in err
    assert (tmp_path / "r.md").read_text() == "previous verdict"  # a failed run leaves it be
    with pytest.raises(OutputExistsError, match=r"force=True"):
        validate(tmp_path / "no-artifact", report=tmp_path / "r.md")
