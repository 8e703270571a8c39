"""`bench` checks its request before anything loads: a wrong --baseline (folder or row) or option
is an OptionError (the CLI's exit 2) naming what would work; a right one is named in the table."""

from __future__ import annotations

import json

import pytest

from sapiens_edge import cli
from sapiens_edge.benchmarks import bench as B
from sapiens_edge.benchmarks import bench_output as O
from sapiens_edge.errors import OptionError


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _artifact(folder, recipe: str, target: str = "onnx"):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"recipe": recipe, "target": target}))
    return folder


@pytest.fixture
def never_loads(monkeypatch):
    """Any artifact opened is a failure of the check-first promise."""
    def refuse(*_a, **_k):
        raise AssertionError("an artifact was loaded before the request was checked")

    monkeypatch.setattr(B, "_artifact_config", refuse)
    monkeypatch.setattr(B, "_torch_config", refuse)


@pytest.fixture
def timed(monkeypatch):
    """Artifacts 'run' on a fake clock: the fp32 one takes 1 s, the int8 one 0.25 s."""
    clock = FakeClock()
    durations = {"onnx-fp32": 1.0, "onnx-int8": 0.25}

    def fake_config(path, backend, options, clk, progress):
        recipe = json.loads((path / "manifest.json").read_text())["recipe"]
        row = B.BenchRow(name=recipe, artifact=str(path), recipe=recipe)
        return B._Config(row, lambda: setattr(clock, "now", clock.now + durations[recipe]))

    monkeypatch.setattr(B, "_artifact_config", fake_config)
    return clock


def test_an_unknown_baseline_is_refused_before_anything_loads(tmp_path, never_loads):
    a, b = _artifact(tmp_path / "a", "onnx-fp32"), _artifact(tmp_path / "b", "onnx-int8")
    with pytest.raises(OptionError) as err:
        B.bench([a, b], runs=1, baseline="onnx-fp16")
    text = str(err.value)
    assert "'onnx-fp16' is none of the artifact folders" in text
    assert str(a) in text and str(b) in text and "onnx-fp32, onnx-int8" in text


def test_a_baseline_folder_names_its_row_and_says_it_was_a_folder(tmp_path, timed):
    a, b = _artifact(tmp_path / "a", "onnx-fp32"), _artifact(tmp_path / "b", "onnx-int8")
    result = B.bench([a, b], runs=2, clock=timed, baseline=str(b))
    assert result.baseline == "onnx-int8"
    assert result.row("onnx-fp32").speedup == pytest.approx(0.25) and result.row("onnx-int8").speedup == 1.0
    assert result.settings["baseline"] == {"given": str(b), "by": "folder"}
    assert f"ratios against **onnx-int8** (p50, --baseline folder {b})" in O.to_markdown(result)


def test_a_baseline_row_name_is_taken_as_the_row(tmp_path, timed):
    a, b = _artifact(tmp_path / "a", "onnx-fp32"), _artifact(tmp_path / "b", "onnx-int8")
    result = B.bench([a, b], runs=1, clock=timed, baseline="onnx-fp32")
    assert result.baseline == "onnx-fp32" and result.row("onnx-int8").speedup == pytest.approx(4.0)
    assert "(p50, --baseline row)" in O.to_markdown(result)


def test_a_recipe_name_shared_by_two_folders_asks_for_the_folder(tmp_path, never_loads):
    a, b = _artifact(tmp_path / "old", "onnx-fp32"), _artifact(tmp_path / "new", "onnx-fp32")
    with pytest.raises(OptionError, match=r"names 2 rows .*pass the folder instead"):
        B.bench([a, b], runs=1, baseline="onnx-fp32")


def test_a_folder_with_several_provider_rows_asks_for_a_row(tmp_path, never_loads):
    a = _artifact(tmp_path / "a", "onnx-fp16")
    with pytest.raises(OptionError, match=r"2 rows \(onnx-fp16 \(cpu\), onnx-fp16 \(cuda\)\); name one"):
        B.bench([a], runs=1, providers=["cpu", "cuda"], baseline=str(a))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"runs": 0}, "runs must be at least 1"),
    ({"runs": 1, "warmup": 0}, "warmup must be at least 1"),
    ({"runs": 1, "seconds": 2.0}, "exactly one of runs"),
    ({"runs": 1, "torch_device": "tpu"}, "torch_device must be one of cpu, cuda"),
    ({"runs": 1, "backend": "tensorflow"}, "Unknown runtime backend 'tensorflow'"),
    ({"runs": 1, "backend": "tflite", "backend_options": {"graph_optimization": "all"}},
     "tflite backend has no option"),
])
def test_bad_options_are_refused_before_anything_loads(tmp_path, never_loads, kwargs, message):
    a = _artifact(tmp_path / "a", "onnx-fp32")
    with pytest.raises(OptionError, match=message):
        B.bench([a], **kwargs)


def test_cli_bad_baseline_exits_2_with_the_choices_and_loads_nothing(tmp_path, never_loads, capsys):
    a = _artifact(tmp_path / "a", "onnx-fp32")
    code = cli.main(["bench", str(a), "--runs", "1", "--baseline", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and f"error: --baseline {str(tmp_path / 'nope')!r} is none of" in err
    assert "Traceback" not in err and "loading" not in err
