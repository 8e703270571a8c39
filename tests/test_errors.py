"""The error story: SapiensEdgeError and its types are what the user can fix (the CLI prints the
message, exit 2); our bugs are plain exceptions that keep their traceback; callers branch on types."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sapiens_edge import cli, runtime
from sapiens_edge.benchmarks import bench as B
from sapiens_edge.errors import (
    MissingDependencyError,
    OptionError,
    PlatformUnavailableError,
    ProviderUnavailableError,
    SapiensEdgeError,
)


def test_the_types_callers_branch_on():
    assert issubclass(ProviderUnavailableError, PlatformUnavailableError)
    assert issubclass(ProviderUnavailableError, MissingDependencyError)  # onnxruntime-gpu is a package to install
    assert issubclass(OptionError, SapiensEdgeError) and issubclass(OptionError, ValueError)
    assert not issubclass(PlatformUnavailableError, MissingDependencyError)  # Core ML on Linux: nothing to install


@pytest.mark.parametrize(("error", "status"), [
    (PlatformUnavailableError("Core ML runs on Apple platforms only"), "unavailable"),
    (ProviderUnavailableError("provider 'cuda' comes with onnxruntime-gpu"), "unavailable"),
    (MissingDependencyError("needs 'ai_edge_litert': pip install 'sapiens-edge[tflite-runtime]'"), "unavailable"),
    # Told apart by type, not by text: a damaged artifact whose message happens to mention macOS failed.
    (SapiensEdgeError("written by Core ML on macOS, damaged: re-export it"), "failed"),
])
def test_bench_keeps_rows_unavailable_or_failed_by_error_type(monkeypatch, tmp_path, error, status):
    manifest = SimpleNamespace(recipe="coreml-fp16", task="seg", files=[], target="onnx", model="m", input_hw=[8, 8])
    monkeypatch.setattr("sapiens_edge.manifest.read_manifest", lambda path: manifest)

    def load(*_a, **_k):
        raise error

    monkeypatch.setattr(runtime, "load", load)
    (row,) = B.bench([tmp_path], runs=1).rows
    assert row.status == status and row.reason == str(error)


def test_cli_prints_user_mistakes_without_traceback(capsys):
    assert cli.main(["export", "sapiens2-0.1b-sge", "--recipe", "onnx-fp32", "--random-weights", "-o", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sapiens2-0.1b-seg" in err and "Traceback" not in err


def test_cli_does_not_hide_our_bugs(monkeypatch):
    def broken(_args):
        raise RuntimeError("an internal invariant broke")

    monkeypatch.setattr(cli, "_cmd_models", broken)
    with pytest.raises(RuntimeError, match="internal invariant"):  # its traceback reaches the user
        cli.main(["models"])
