"""A disk that fills up mid-write: a typed DiskFullError that names the folder and the space free, the partial
files removed, however the writer reported it. A real ENOSPC comes from /dev/full (opened with plain `open`:
a library that writes through a temporary file and a rename would replace the device node when run as root);
converters' wrapped forms are built with their own types and the text the CI run that filled its disk printed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from safetensors import SafetensorError

from sapiens_edge import cli
from sapiens_edge.errors import DiskFullError, SapiensEdgeError
from sapiens_edge.export.artifact import write_artifact
from sapiens_edge.fileio import atomic_write_bytes, is_disk_full

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.is_char_device(), reason="needs Linux's /dev/full")


def real_enospc() -> OSError:
    """The OSError a write to a full disk raises, from the kernel (not constructed)."""
    with open(DEV_FULL, "wb", buffering=0) as f:
        try:
            f.write(b"x")
        except OSError as exc:
            return exc
    raise AssertionError("/dev/full accepted a write")


@needs_dev_full
def test_a_real_enospc_and_the_forms_converters_wrap_it_in_are_told_apart_from_other_errors():
    enospc = real_enospc()
    assert enospc.errno == errno.ENOSPC and is_disk_full(enospc)
    # safetensors' own type, with the text CI printed when its disk filled up
    assert is_disk_full(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    try:  # a converter that raises its own error from the OSError
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp: failed to write model.bin") from enospc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied", "/x"))
    assert not is_disk_full(ValueError("shape mismatch"))


def test_the_type_is_a_user_error_and_an_oserror_callers_can_test_by_errno():
    exc = DiskFullError("full", path="/x", free=0)
    assert isinstance(exc, SapiensEdgeError) and isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    assert (exc.path, exc.free, str(exc)) == ("/x", 0, "full")


@needs_dev_full
def test_atomic_write_leaves_neither_the_file_nor_its_temporary_on_enospc(monkeypatch, tmp_path):
    enospc = real_enospc()

    def fsync(_fd):
        raise enospc

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(DiskFullError) as info:
        atomic_write_bytes(tmp_path / "results.json", b"{}")
    assert info.value.__cause__ is enospc
    assert info.value.path == str(tmp_path) and isinstance(info.value.free, int) and info.value.free > 0
    assert f"{info.value.free / 2**30:.2f} GiB free" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_fills_the_disk_leaves_nothing_and_names_the_output_folder(tmp_path):
    out = tmp_path / "artifacts" / "seg-int8"
    wrote = []

    def build(work: Path):
        (work / "model.onnx").write_bytes(b"\0" * 4096)  # a partial model file
        wrote.append(work)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(DiskFullError) as info:
        write_artifact(out, build)
    assert wrote and not wrote[0].exists() and not out.exists()
    assert list(out.parent.iterdir()) == []  # no scratch folder left beside it
    assert info.value.path == str(out.parent) and "another disk" in str(info.value)


def test_an_export_that_fails_otherwise_keeps_its_own_error(tmp_path):
    def build(_work: Path):
        raise RuntimeError("our bug")

    with pytest.raises(RuntimeError, match="our bug"):
        write_artifact(tmp_path / "a", build)


@needs_dev_full
def test_cli_reports_a_full_disk_no_writer_of_ours_named_as_a_user_error(monkeypatch, capsys):
    enospc = real_enospc()
    enospc.filename = "/scratch/converter/model.bin"  # where a converter's own temporary file was going

    def fills_the_disk(_args):
        raise enospc

    monkeypatch.setattr(cli, "_cmd_models", fills_the_disk)
    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the disk filled up while writing to /scratch/converter") and "Traceback" not in err
    assert "nothing half-written" not in err  # the converter's own files are not ours to vouch for


def test_cli_prints_disk_full_from_our_writers_like_any_user_error(monkeypatch, capsys):
    def fills_the_disk(_args):
        raise DiskFullError("the disk filled up while writing to /out (0.00 GiB free there now)", path="/out", free=0)

    monkeypatch.setattr(cli, "_cmd_models", fills_the_disk)
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == "error: the disk filled up while writing to /out (0.00 GiB free there now)\n"
