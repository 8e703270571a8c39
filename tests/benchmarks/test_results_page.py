"""docs/results.md is rendered from results/*.csv: the checked-in page must equal the rendering, and a CSV
whose figures lack their conditions (machine, threads, versions, date, command) is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from sapiens_edge.benchmarks import results_page
from sapiens_edge.benchmarks.results_page import ResultsFileError, read_table, render

CONDITIONS = (
    "# title: A table\n# machine: test box\n# threads: 2\n# versions: torch 2.13.0\n# date: 2026-12\n"
    "# command: python -m something\n"
)


def test_checked_in_page_equals_rendering():
    assert results_page.PAGE.read_text(encoding="utf-8") == render(), (
        "docs/results.md is stale: run python -m sapiens_edge.benchmarks.results_page")
    assert results_page.main(["--check"]) == 0


def test_every_csv_is_on_the_page_with_its_command():
    page = results_page.PAGE.read_text(encoding="utf-8")
    for path in sorted(results_page.RESULTS_DIR.glob("*.csv")):
        table = read_table(path)
        assert f"results/{path.name}" in page
        assert table.meta["command"] in page


def test_check_fails_when_a_csv_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    results = tmp_path / "results"
    results.mkdir()
    (results / "t.csv").write_text(CONDITIONS + "config,latency s\ntorch,1.00\n", encoding="utf-8")
    page = tmp_path / "results.md"
    monkeypatch.setattr(results_page, "RESULTS_DIR", results)
    monkeypatch.setattr(results_page, "PAGE", page)
    assert results_page.main([]) == 0
    assert results_page.main(["--check"]) == 0
    (results / "t.csv").write_text(CONDITIONS + "config,latency s\ntorch,1.50\n", encoding="utf-8")
    assert results_page.main(["--check"]) == 1


def test_rendered_table_shows_conditions_above_the_rows(tmp_path: Path):
    (tmp_path / "t.csv").write_text(CONDITIONS + 'config,latency s\n"a, b",2.5\n', encoding="utf-8")
    text = render(tmp_path)
    assert text.index("test box") < text.index("python -m something") < text.index("| a, b | 2.5 |")
    assert "|---|---:|" in text


@pytest.mark.parametrize("missing", ["machine", "threads", "versions", "date", "command"])
def test_csv_without_a_condition_is_refused(tmp_path: Path, missing: str):
    header = "".join(line + "\n" for line in CONDITIONS.splitlines() if not line.startswith(f"# {missing}:"))
    (tmp_path / "t.csv").write_text(header + "config,latency s\ntorch,1.00\n", encoding="utf-8")
    with pytest.raises(ResultsFileError, match=missing):
        render(tmp_path)


def test_ragged_rows_are_refused(tmp_path: Path):
    (tmp_path / "t.csv").write_text(CONDITIONS + "config,latency s\ntorch,1.00,extra\n", encoding="utf-8")
    with pytest.raises(ResultsFileError, match="columns"):
        render(tmp_path)
