"""SIGTERM / SIGHUP during an export unwind like Ctrl-C (nothing half-written is left), and a run into
the same place removes what a killed run (SIGKILL) left, reporting what a live one still uses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sapiens_edge.scratch import make_scratch_dir, owner_pid, sweep_stale

ROOT = Path(__file__).resolve().parents[1]

# Exports a tiny model; writing the model file (inside both scratch folders) waits to be signalled.
_EXPORT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import sapiens_edge.export.onnx as onnx_target
    from sapiens_edge.export import core
    from tests.export.shared import tiny_model

    def slow_save(*args, **kwargs):
        print("saving", flush=True)
        time.sleep(120)

    onnx_target.save = slow_save
    model = tiny_model("seg")
    try:
        core.export(model, "onnx-fp32", Path(sys.argv[1]), input_size=model.sapiens_info.input_hw,
                    progress=lambda _: None)
    except KeyboardInterrupt as exc:
        print("unwound:", type(exc).__name__, flush=True)
        sys.exit(getattr(exc, "exit_code", 130))
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_export_leaves_nothing_behind(tmp_path, signum):
    pytest.importorskip("onnx")
    out = tmp_path / "seg-fp32"
    # Default dispositions in the child: under `nohup` (SIGHUP ignored) the export rightly keeps ignoring it.
    proc = subprocess.Popen([sys.executable, "-c", _EXPORT, str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    try:
        for line in proc.stdout:
            if line.strip() == "saving":
                break
        during = sorted(p.name for p in tmp_path.iterdir())
        # The artifact's build folder and the converter's work folder, both named with the owner's pid.
        assert any(n.startswith(".seg-fp32.tmp-") for n in during), during
        assert any(n.startswith("sapiens-onnx-") for n in during), during
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=180)  # generous: a loaded CI machine unwinds slowly
    finally:
        proc.kill()
    assert "unwound: Terminated" in rest, err
    assert proc.returncode == 128 + signum
    assert list(tmp_path.iterdir()) == []  # no partial artifact, no scratch folder


def _default_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_run_removes_what_a_killed_run_left_and_reports_live_ones(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".seg.tmp-{dead}-abc123"
    stale_work = tmp_path / f"sapiens-onnx-{dead}-xyz"
    for folder in (stale, stale_work):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"partial")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".other.tmp-{sleeper.pid}-def456"
        live.mkdir()
        unrelated = tmp_path / ".seg.tmp-notapid"
        unrelated.mkdir()
        said: list[str] = []
        removed = sweep_stale(tmp_path, said.append)
    finally:
        sleeper.kill()
    assert sorted(removed) == sorted([stale, stale_work])
    assert not stale.exists() and not stale_work.exists() and live.is_dir() and unrelated.is_dir()
    assert any(f"removed {stale}" in s and f"process {dead} is gone" in s for s in said)
    assert any(str(live) in s and "running process" in s for s in said)


def test_export_sweeps_before_it_builds(tmp_path):
    pytest.importorskip("onnxruntime")
    from tests.runtime.test_predictor import make_artifact

    stale = tmp_path / f".seg.tmp-{_dead_pid()}-abc123"
    stale.mkdir()
    make_artifact(tmp_path / "seg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg"]


def test_scratch_names_carry_the_owner():
    path = make_scratch_dir(ROOT / "tests", ".probe.tmp")
    try:
        assert owner_pid(path) == os.getpid() and path.name.startswith(f".probe.tmp-{os.getpid()}-")
    finally:
        path.rmdir()


def test_cli_export_ends_143_on_sigterm_and_says_it_cleaned_up(tmp_path):
    pytest.importorskip("onnx")
    out = tmp_path / "seg"
    proc = subprocess.Popen([sys.executable, "-m", "sapiens_edge.cli", "export", "sapiens2-0.1b-seg",
                             "--random-weights", "--recipe", "onnx-fp32", "--input-size", "64x48", "-o", str(out)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("exporting "):  # the capture has started: the build folder exists
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM): cleaned up" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
