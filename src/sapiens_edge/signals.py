"""SIGTERM and SIGHUP unwind like Ctrl-C.

By default those signals end Python at once, skipping every `finally`: a `timeout`, a cancelled CI
job or a closed terminal left half-written temporary folders behind. Inside `terminate_as_interrupt()`
they raise `Terminated`, a KeyboardInterrupt, so the same clean-up paths run as for Ctrl-C. A signal
that arrives while native code runs (an ONNX conversion, a calibration pass) takes effect when that
call returns to Python. Handlers the application set itself are left alone.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by this signal


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise `Terminated` (main thread only; a handler the caller
    installed is kept). The previous handlers come back on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s, handler in previous.items():
        if handler in (signal.SIG_DFL, None):
            signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler in (signal.SIG_DFL, None):
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def unwinds_on_terminate(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` inside `terminate_as_interrupt()`: for the API's long jobs (export, report)."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with terminate_as_interrupt():
            return fn(*args, **kwargs)

    return wrapper
