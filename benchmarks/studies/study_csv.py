"""The CSV a study writes into results/: `# key: value` header lines (what docs/results.md shows above the
table), then the table, written atomically (fileio.atomic_write_bytes: nothing half-written on an interruption)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from sapiens_edge.fileio import atomic_write_bytes

STANDIN_WEIGHTS = "stand-in (seeded random, confident classifier: docs/design/standin-weights.md)"


def write_study_csv(path: Path, header: dict[str, str], columns: Sequence[str],
                    rows: Iterable[Sequence[object]]) -> None:
    """`header` (title, machine, threads, versions, command, weights, notes; `date`, this month, is added after
    versions) above the `columns` and `rows` at `path`."""
    out = io.StringIO(newline="")
    for key, value in header.items():
        out.write(f"# {key}: {value}\n")
        if key == "versions":
            out.write(f"# date: {date.today():%Y-%m}\n")
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    atomic_write_bytes(path, out.getvalue().encode("utf-8"))
