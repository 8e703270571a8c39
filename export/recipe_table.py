"""The recipe table as Markdown, generated from `RECIPES` (and the targets' declarations), so the
thresholds and descriptions the docs quote are the ones the validator applies.

    python -m sapiens_edge.export.recipe_table                       # print the table
    python -m sapiens_edge.export.recipe_table --write README.md docs/recipes.md
    python -m sapiens_edge.export.recipe_table --check README.md docs/recipes.md   # exit 1 when stale

`--write` replaces what lies between the marker lines START and END in each file.
Torch-free.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sapiens_edge.errors import SapiensEdgeError
from sapiens_edge.fileio import atomic_write_bytes

from .recipes import RECIPES, Recipe
from .target_table import runs_on

START = "<!-- recipes-table:start -->"
END = "<!-- recipes-table:end -->"

# metric -> (label, unit): how a threshold reads in the table ("seg ≥ 99.9 %"); kp: heatmap pixels.
_METRICS = {
    "cosine": ("cosine", ""), "rel_l2": ("rel L2", ""),
    "pixel_agreement": ("seg", "%"), "miou": ("mIoU", ""),
    "keypoint_err_px": ("kp", " hm px"), "pck": ("PCK", ""),
    "angle_mean_deg": ("normal mean", "°"), "angle_median_deg": ("median", "°"),
    "depth_rel_err": ("depth", "%"),
}
_GROUPS = ("tensor", "seg", "pose", "normal", "pointmap")


def _limit(key: str, value: float) -> str:
    metric, _, bound = key.rpartition("_")
    label, unit = _METRICS.get(metric, (metric, ""))
    op = "≥" if bound == "min" else "≤"
    number = f"{value * 100:g} %" if unit == "%" else f"{value:g}{unit}"
    return f"{label} {op} {number}"


def thresholds_text(recipe: Recipe) -> str:
    """The recipe's validation limits, compact: 'cosine ≥ 0.99999, rel L2 ≤ 0.001; seg ≥ 99.9 %, ...'."""
    groups = [*_GROUPS, *(g for g in recipe.thresholds if g not in _GROUPS)]
    return "; ".join(", ".join(_limit(k, v) for k, v in recipe.thresholds[g].items())
                     for g in groups if recipe.thresholds.get(g))


def calibration_text(recipe: Recipe) -> str:
    if not recipe.needs_calibration:
        return "no"
    if not recipe.calibration_methods:
        return "yes (GPTQ weight rounding)"
    first, *rest = recipe.calibration_methods
    return ", ".join([f"{first} (default)", *rest])


def markdown(recipes: Sequence[Recipe] | None = None) -> str:
    """The recipe table (Markdown, one row per recipe, ending in a newline)."""
    rows = ["| recipe | precision | what | calibration | runs on | validation thresholds |",
            "|---|---|---|---|---|---|"]
    for r in recipes if recipes is not None else RECIPES.values():
        cells = [f"`{r.name}`", r.precision, r.description, calibration_text(r), runs_on(r), thresholds_text(r)]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def with_table(text: str, table: str | None = None, where: str = "the file") -> str:
    """`text` with the lines between START and END replaced by the table."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SapiensEdgeError(f"{where} has no {START} ... {END} lines; add them where the table goes.")
    head = text[:start + len(START)]
    return f"{head}\n{table if table is not None else markdown()}{text[end:]}"


def marked_files(root: str | Path) -> list[Path]:
    """README.md and docs/**/*.md under `root` that hold the table's markers."""
    root = Path(root)
    candidates = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [p for p in candidates if p.is_file() and START in p.read_text(encoding="utf-8")]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sapiens_edge.export.recipe_table", description=__doc__.split("\n")[0])
    how = p.add_mutually_exclusive_group()
    how.add_argument("--write", nargs="+", metavar="FILE", help="refresh the table between the markers in FILEs")
    how.add_argument("--check", nargs="+", metavar="FILE", help="exit 1 when a FILE's table is not the generated one")
    args = p.parse_args(argv)
    if not args.write and not args.check:
        print(markdown(), end="")
        return 0
    stale = []
    for path in map(Path, args.write or args.check):
        text = path.read_text(encoding="utf-8")
        new = with_table(text, where=str(path))
        if new != text:
            stale.append(path)
            if args.write:
                atomic_write_bytes(path, new.encode("utf-8"))
    verb = "refreshed" if args.write else "stale (run with --write)"
    for path in stale:
        print(f"{verb}: {path}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
