"""The CSV a study writes into results/: `# key: value` header lines (what docs/results.md shows above the
table), then the table, written atomically (a temp file beside it, renamed)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

STANDIN_WEIGHTS = "stand-in (seeded random, confident classifier: docs/design/standin-weights.md)"


def write_study_csv(path: Path, header: dict[str, str], columns: Sequence[str],
                    rows: Iterable[Sequence[object]]) -> None:
    """`header` (title, machine, threads, versions, command, weights, notes; `date`, this month, is added after
    versions) above the `columns` and `rows` at `path`."""
    lines = []
    for key, value in header.items():
        lines.append(f"# {key}: {value}")
        if key == "versions":
            lines.append(f"# date: {date.today():%Y-%m}")
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write("\n".join(lines) + "\n")
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    tmp.replace(path)
