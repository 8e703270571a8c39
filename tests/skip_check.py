"""A pytest plugin: skips per export target, and `--require-targets` (what `make test`, i.e. CI, passes)
fails the run when a test was skipped because a package could not be imported.

`pip install -e '.[dev]'` declares every package the suite needs, so on a machine set up by the README
such a skip means a target's tests silently did not run (a package lost from the extras, a wheel that
failed to install): exactly what must not pass CI. Skips for other reasons (no GPU here) are counted
and allowed.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

# Test files of each export target (a module-level importorskip skips the file before any marker of
# it is read, so the grouping is by path).
TARGET_FILES = {
    "onnx": ("tests/export/test_onnx_target.py", "tests/export/test_onnx_instance_norm.py",
             "tests/export/test_onnx_streamed.py", "tests/quantize/test_onnx_ptq.py"),
    "executorch": ("tests/export/test_executorch_target.py", "tests/quantize/test_pt2e.py"),
    "coreml": ("tests/export/test_coreml_target.py", "tests/export/test_coreml_rewrites.py",
               "tests/quantize/test_coreml_twin.py", "tests/benchmarks/studies/test_coreml_recipe_sweep.py"),
    "tflite": ("tests/export/test_tflite_target.py",),
    "openvino": ("tests/export/test_openvino_target.py", "tests/benchmarks/studies/test_openvino_peer.py"),
}
IMPORT_SKIP = "could not import"  # the reason pytest.importorskip gives

_outcomes: dict[str, Counter] = defaultdict(Counter)
_import_skips: list[tuple[str, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--require-targets", action="store_true",
                     help="fail the run when a test is skipped because a package could not be imported")


def _target(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return next((t for t, files in TARGET_FILES.items() if path in files), None)


def _reason(longrepr) -> str:
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _record(nodeid: str, outcome: str, longrepr) -> None:
    target = _target(nodeid)
    if target:
        _outcomes[target][outcome] += 1
    if outcome == "skipped" and IMPORT_SKIP in _reason(longrepr):
        _import_skips.append((nodeid, _reason(longrepr)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole file skipped at import
        _record(report.nodeid, "skipped", report.longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.skipped):
        _record(report.nodeid, report.outcome, report.longrepr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.getoption("--require-targets") and _import_skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    line = terminalreporter.write_line
    counts = ", ".join(f"{t} {c['passed']} passed/{c['skipped']} skipped" for t, c in sorted(_outcomes.items()))
    line(f"export targets: {counts or 'no target tests ran'}")
    if _import_skips and config.getoption("--require-targets"):
        line(f"FAILED: {len(_import_skips)} test(s) skipped for a package that could not be imported, which "
             f"`pip install -e '.[dev]'` must provide:", red=True)
        for nodeid, reason in _import_skips:
            line(f"  {nodeid}: {reason}", red=True)
