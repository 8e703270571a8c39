"""Render the measured tables in results/*.csv into docs/results.md.

    python -m sapiens_edge.benchmarks.results_page            # (re)write docs/results.md
    python -m sapiens_edge.benchmarks.results_page --check    # exit 1 if docs/results.md is stale

Each CSV starts with `# key: value` lines giving the conditions of its figures (REQUIRED_KEYS),
then an ordinary CSV table. A figure without its machine, versions, date and command cannot be
compared with anything, so a file that lacks one is refused rather than rendered.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import SapiensEdgeError
from ..fileio import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "results"
PAGE = ROOT / "docs" / "results.md"

REQUIRED_KEYS = ("title", "machine", "threads", "versions", "date", "command")
OPTIONAL_KEYS = ("weights", "calibration", "notes")

HEADER = """# Measured results

Every table below is rendered from a CSV file in [`results/`](../results/) by
`python -m sapiens_edge.benchmarks.results_page`; edit the CSV, not this page (a test fails when the two differ).
Each table states the machine, thread count, versions, date and the command that produced it.
Latencies are batch 1 at 1024×768 unless a table says otherwise; compare ratios within one table,
since absolute times depend on the CPU generation (see [the CPU note](bench-and-report.md#cpus)).
"""


class ResultsFileError(SapiensEdgeError):
    """A results CSV is missing a condition or is malformed."""


@dataclass(frozen=True)
class ResultsTable:
    name: str
    meta: dict[str, str]
    rows: list[list[str]]  # rows[0] is the header


def read_table(path: Path) -> ResultsTable:
    """Parse one results CSV: `# key: value` lines, then the table."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = list(itertools.takewhile(lambda line: line.startswith("#"), lines))
    meta: dict[str, str] = {}
    for line in header:
        key, sep, value = line[1:].partition(":")
        if not sep:
            raise ResultsFileError(f"{path.name}: header line {line!r} is not '# key: value'")
        meta[key.strip()] = value.strip()
    missing = [k for k in REQUIRED_KEYS if not meta.get(k)]
    if missing:
        raise ResultsFileError(
            f"{path.name}: missing conditions {', '.join(missing)}; add a '# {missing[0]}: ...' line at the top "
            "(every figure states its machine, threads, versions, date and command)")
    unknown = sorted(set(meta) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ResultsFileError(f"{path.name}: unknown header keys {unknown}; allowed: {REQUIRED_KEYS + OPTIONAL_KEYS}")
    rows = [r for r in csv.reader(lines[len(header):]) if r]
    if len(rows) < 2:
        raise ResultsFileError(f"{path.name}: no table rows after the header lines")
    width = len(rows[0])
    bad = [i + 1 for i, r in enumerate(rows) if len(r) != width]
    if bad:
        raise ResultsFileError(f"{path.name}: rows {bad} do not have the header's {width} columns")
    return ResultsTable(path.stem, meta, rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table(table: ResultsTable) -> str:
    m = table.meta
    out = [f"## {m['title']}", "", f"<a id=\"{table.name}\"></a>File: [`results/{table.name}.csv`]"
           f"(../results/{table.name}.csv)", ""]
    out.append(f"- Machine: {m['machine']}; threads: {m['threads']}")
    out.append(f"- Versions: {m['versions']}")
    out.append(f"- Date: {m['date']}")
    if m.get("weights"):
        out.append(f"- Weights: {m['weights']}")
    if m.get("calibration"):
        out.append(f"- Calibration: {m['calibration']}")
    out += ["- Command:", "", "  ```bash", f"  {m['command']}", "  ```", ""]
    header, *body = table.rows
    numeric = [all(_is_number(r[i]) for r in body if r[i]) and any(r[i] for r in body) for i in range(len(header))]
    out.append("| " + " | ".join(_cell(h) for h in header) + " |")
    out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in body]
    if m.get("notes"):
        out += ["", m["notes"]]
    return "\n".join(out) + "\n"


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("×x%").replace("∞", "inf"))
    except ValueError:
        return False
    return True


def render(results_dir: Path | None = None) -> str:
    results_dir = results_dir or RESULTS_DIR
    paths = sorted(results_dir.glob("*.csv"))
    if not paths:
        raise ResultsFileError(f"no results/*.csv files in {results_dir}")
    return HEADER + "".join("\n" + render_table(read_table(p)) for p in paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/results.md differs from the rendering")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if not PAGE.is_file() or PAGE.read_text(encoding="utf-8") != page:
            print(f"{PAGE} is stale: run python -m sapiens_edge.benchmarks.results_page", file=sys.stderr)
            return 1
        return 0
    atomic_write_bytes(PAGE, page.encode("utf-8"))
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
