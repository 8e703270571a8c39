"""Quiet mode for the CLI: third-party chatter stays off the terminal, our own lines stay on it.

Exporters and runtimes talk a lot: Python warnings, library loggers, and native code (TensorFlow,
XNNPACK, ONNX Runtime, cpuinfo) writing straight to file descriptors 1 and 2, where Python's
warnings/logging filters cannot reach. While quiet:

* fds 1 and 2 point at a capture file, so native output (and any subprocess's) lands there;
  ``sys.stdout`` / ``sys.stderr`` become proxies writing to copies of the terminal's fds, so every
  ``print`` of ours (and the CLI's tables) still reaches the user;
* Python warnings from sapiens_edge (RandomWeightsWarning, validation notes) are shown as
  ``warning: ...``; other packages' warnings go to the capture file;
* the usual noisy loggers are set to ERROR, native libraries are asked to log less (env), and what
  logging handlers and CHATTY libraries write through sys.stdout / sys.stderr goes to the capture file.

On exit everything is restored and one line says how much was hidden; when the command dies of an
unexpected exception the hidden tail is printed, so a crash (ours or a library's) is never hidden.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from types import TracebackType
from typing import Any, TextIO

from .errors import SapiensEdgeError

# Read by native libraries when they load (TensorFlow/LiteRT, glog users such as XNNPACK tools).
# Log levels only (errors still print): nothing here changes what a library computes.
NATIVE_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2"}
LOGGERS = ("absl", "torch", "torchao", "executorch", "onnxruntime", "onnxscript", "onnx_ir", "coremltools",
           "tensorflow", "litert_torch", "ai_edge_torch", "nncf", "openvino")
# Python packages whose writes to sys.stdout / sys.stderr are chatter, never an answer the user asked
# for: logging handlers (sapiens_edge does not log; torch's and absl's handlers hold our stream when
# those libraries are imported mid-command) and engines whose native logs are routed through Python
# (ExecuTorch's cpuinfo lines come from executorch.runtime).
CHATTY = {"logging", "absl", "torch", "torchao", "executorch", "onnxruntime", "onnx", "onnxscript",
          "onnx_ir", "onnxslim", "coremltools", "tensorflow", "litert_torch", "ai_edge_litert", "ai_edge_torch",
          "tqdm", "nncf", "openvino", "rich"}  # rich: NNCF's progress bars
TAIL_LINES = 40


def is_ours(category: type[Warning], filename: str) -> bool:
    """A warning of ours: a sapiens_edge category, or raised (after stacklevel) in a sapiens_edge module."""
    if category.__module__.split(".")[0] == "sapiens_edge":
        return True
    ours = {os.path.abspath(m.__file__) for name, m in list(sys.modules.items())
            if (name == "sapiens_edge" or name.startswith("sapiens_edge.")) and getattr(m, "__file__", None)}
    return os.path.abspath(filename) in ours


class _Terminal:
    """``sys.stdout`` / ``sys.stderr`` while quiet. Delegates to ``target``: a copy of the terminal's
    fd during the command, the restored stream afterwards (a library that kept a reference keeps working).
    While quiet, what a CHATTY package writes goes to the capture file instead."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.hide_chatty = True

    def write(self, text: str) -> int:
        if self.hide_chatty and str(sys._getframe(1).f_globals.get("__name__")).split(".")[0] in CHATTY:
            return os.write(2, text.encode("utf-8", "replace"))  # fd 2 is the capture file
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, errors, buffer ...
        return getattr(self.target, name)


class Quiet:
    """Context manager; ``Quiet(enabled=False)`` (``--verbose``) changes nothing but the warning format."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._saved_fds: dict[int, int] = {}
        self._streams: dict[str, tuple[TextIO, _Terminal, TextIO | None]] = {}
        self._capture: Any = None
        self._env: dict[str, str | None] = {}
        self._levels: dict[str, int] = {}
        self._warnings = warnings.catch_warnings()  # restores filters and showwarning on exit
        self._showwarning = warnings.showwarning
        self._formatwarning = warnings.formatwarning

    def __enter__(self) -> Quiet:
        self._warnings.__enter__()
        self._showwarning, self._formatwarning = warnings.showwarning, warnings.formatwarning
        warnings.formatwarning = self._format_warning
        if not self.enabled:
            return self
        warnings.showwarning = self._show_warning
        for key, value in NATIVE_ENV.items():
            self._env[key] = os.environ.get(key)
            os.environ.setdefault(key, value)
        for name in LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(max(logger.level, logging.ERROR))
        try:
            self._capture = tempfile.TemporaryFile()
            sys.stdout.flush()
            sys.stderr.flush()
            for fd in (1, 2):
                self._saved_fds[fd] = os.dup(fd)
        except (OSError, ValueError):  # no fd 1/2 (a daemon), or a closed stream: stay as we are
            self._restore_fds()
            return self
        for name, fd in (("stdout", 1), ("stderr", 2)):
            original = getattr(sys, name)
            copy = None
            if _writes_to(original, fd):  # a real terminal/pipe stream: give it the fd copy
                copy = open(self._saved_fds[fd], "w", buffering=1, encoding=original.encoding,
                            errors=original.errors, closefd=False)
            proxy = _Terminal(copy or original)
            self._streams[name] = (original, proxy, copy)
            setattr(sys, name, proxy)
        for fd in (1, 2):
            os.dup2(self._capture.fileno(), fd)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self.enabled and self._capture is not None:
                self._restore_fds()
                self._report(exc_type)
        finally:
            for key, value in self._env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            for name, level in self._levels.items():
                logger = logging.getLogger(name)
                if logger.level == max(level, logging.ERROR):  # unless a library set its own level meanwhile
                    logger.setLevel(level)
            warnings.formatwarning = self._formatwarning
            self._warnings.__exit__(exc_type, exc, tb)

    def _show_warning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: TextIO | None = None, line: str | None = None) -> None:
        if self._saved_fds and not is_ours(category, filename):
            text = self._formatwarning(message, category, filename, lineno, line)
            os.write(2, text.encode("utf-8", "replace"))  # fd 2 is the capture file
        else:  # the previous hook: prints, or records under pytest.warns / catch_warnings(record=True)
            self._showwarning(message, category, filename, lineno, file, line)

    def _format_warning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                        line: str | None = None) -> str:
        """Ours as one plain ``warning: ...`` line; others in Python's usual form (file, line, category)."""
        if is_ours(category, filename):
            return f"warning: {message}\n"
        return self._formatwarning(message, category, filename, lineno, line)

    def _restore_fds(self) -> None:
        for original, proxy, _ in self._streams.values():
            proxy.flush()
            original.flush()  # anything a library wrote through the old stream object lands in the capture
        for fd, saved in self._saved_fds.items():
            os.dup2(saved, fd)
        for name, (original, proxy, copy) in self._streams.items():
            proxy.target, proxy.hide_chatty = original, False
            if getattr(sys, name) is proxy:
                setattr(sys, name, original)
            if copy is not None:
                copy.close()
        for saved in self._saved_fds.values():
            os.close(saved)
        self._saved_fds.clear()
        self._streams.clear()

    def _report(self, exc_type: type[BaseException] | None) -> None:
        self._capture.seek(0)
        lines = [ln for ln in self._capture.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        self._capture.close()
        crashed = exc_type is not None and not issubclass(
            exc_type, SapiensEdgeError | KeyboardInterrupt | BrokenPipeError | SystemExit)
        if crashed and lines:
            tail = lines[-TAIL_LINES:]
            print(f"--- last {len(tail)} of {len(lines)} lines of hidden third-party output ---", *tail,
                  "---", sep="\n", file=sys.stderr)
        elif lines:
            print(f"({len(lines)} line{'s' if len(lines) != 1 else ''} of third-party output hidden; "
                  f"--verbose shows them)", file=sys.stderr)


def _writes_to(stream: Any, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # pytest's capsys buffers and similar have no fd
        return False
