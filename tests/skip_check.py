"""A pytest plugin: skips per export target, and `--require-targets` (what `make test`, i.e. CI, passes)
fails the run when a test was skipped because a package could not be imported or a tool is missing.

`pip install -e '.[dev]'` declares every package the suite needs, and `.ci/run` installs the Debian tools
(`skip_missing_tool`: the aarch64 emulation), so on a machine set up that way such a skip means a target's
tests silently did not run (a package lost from the extras, a wheel that failed to install): exactly what
must not pass CI. Skips for other reasons (no GPU here) are counted and allowed.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

# Test files of each export target and of the aarch64 emulation (a module-level importorskip skips the file
# before any marker of it is read, so the grouping is by path).
TARGET_FILES = {
    "onnx": ("tests/export/test_onnx_target.py", "tests/export/test_onnx_instance_norm.py",
             "tests/export/test_onnx_streamed.py", "tests/quantize/test_onnx_ptq.py"),
    "executorch": ("tests/export/test_executorch_target.py", "tests/quantize/test_pt2e.py"),
    "coreml": ("tests/export/test_coreml_target.py", "tests/export/test_coreml_rewrites.py",
               "tests/quantize/test_coreml_twin.py", "tests/benchmarks/studies/test_coreml_recipe_sweep.py"),
    "tflite": ("tests/export/test_tflite_target.py",),
    "openvino": ("tests/export/test_openvino_target.py", "tests/export/test_openvino_bench.py",
                 "tests/benchmarks/studies/test_openvino_peer.py"),
    "aarch64": ("tests/pi/test_aarch64_emulated.py",),
}
IMPORT_SKIP = "could not import"  # the reason pytest.importorskip gives
TOOL_SKIP = "missing tool"  # the reason skip_missing_tool gives

_outcomes: dict[str, Counter] = defaultdict(Counter)
_required_skips: list[tuple[str, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--require-targets", action="store_true",
                     help="fail the run when a test is skipped because a package could not be imported or a tool "
                          "is missing")


def skip_missing_tool(reason: str) -> None:
    """Skip because a tool the machine's set-up (.ci/run) installs is missing: allowed here, a failure with
    --require-targets."""
    pytest.skip(f"{TOOL_SKIP}: {reason}")


def _target(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return next((t for t, files in TARGET_FILES.items() if path in files), None)


def _reason(longrepr) -> str:
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _record(nodeid: str, outcome: str, longrepr) -> None:
    target = _target(nodeid)
    if target:
        _outcomes[target][outcome] += 1
    if outcome == "skipped" and (IMPORT_SKIP in _reason(longrepr) or TOOL_SKIP in _reason(longrepr)):
        _required_skips.append((nodeid, _reason(longrepr)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole file skipped at import
        _record(report.nodeid, "skipped", report.longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.skipped):
        _record(report.nodeid, report.outcome, report.longrepr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.getoption("--require-targets") and _required_skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    line = terminalreporter.write_line
    counts = ", ".join(f"{t} {c['passed']} passed/{c['skipped']} skipped" for t, c in sorted(_outcomes.items()))
    line(f"targets: {counts or 'no target tests ran'}")
    if _required_skips and config.getoption("--require-targets"):
        line(f"FAILED: {len(_required_skips)} test(s) skipped for a package that could not be imported or a missing "
             f"tool, which `pip install -e '.[dev]'` or .ci/run must provide:", red=True)
        for nodeid, reason in _required_skips:
            line(f"  {nodeid}: {reason}", red=True)
