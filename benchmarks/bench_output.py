"""A bench result as tables (Markdown, CSV, the terminal via rich) and plots (matplotlib)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from .bench import BenchResult, BenchRow
from .placement import placement_note
from .sysinfo import describe

CSV_COLUMNS = ("name", "status", "reason", "recipe", "backend", "file_mib", "load_s", "first_s", "runs", "mean_s",
               "p50_s", "p90_s", "p99_s", "std_s", "throughput_per_s", "speedup", "peak_rss_mib",
               "gpu_mem_mib", "accuracy_metric", "accuracy", "gate", "artifact",
               "placement", "input_hw")


def _flat(row: BenchRow) -> dict[str, Any]:
    s = row.stats or {}
    return {"name": row.name, "status": row.status, "reason": row.reason, "recipe": row.recipe,
            "backend": row.backend, "file_mib": row.file_mib, "load_s": row.load_s, "first_s": row.first_s,
            "runs": s.get("runs", 0), "mean_s": s.get("mean_s"), "p50_s": s.get("p50_s"), "p90_s": s.get("p90_s"),
            "p99_s": s.get("p99_s"), "std_s": s.get("std_s"), "throughput_per_s": s.get("throughput_per_s"),
            "speedup": row.speedup, "peak_rss_mib": row.peak_rss_mib, "gpu_mem_mib": row.gpu_mem_mib,
            "accuracy_metric": row.accuracy.get("metric"), "accuracy": row.accuracy.get("value"),
            "gate": row.accuracy.get("gate"), "artifact": row.artifact, "placement": placement_line(row),
            "input_hw": _hw(row.input_hw)}


def _hw(hw: Any) -> str | None:
    return f"{hw[0]}x{hw[1]}" if hw else None


def input_size(result: BenchResult) -> str:
    """The input size every row ran at, "HxW" (a latency means nothing without it)."""
    return _hw(result.settings.get("input_hw")) or "unknown size"


def placement_line(row: BenchRow) -> str | None:
    """Where the row's ONNX Runtime nodes ran (None when it was not measured)."""
    if not row.placement:
        return None
    if "error" in row.placement:
        return f"not measured: {row.placement['error']}"
    return placement_note(row.placement)


def placement_notes(result: BenchResult) -> list[str]:
    return [f"- {r.name}: {placement_line(r)}" for r in result.rows if r.placement]


def to_csv(result: BenchResult) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in _flat(row).items()})
    return buf.getvalue()


def _f(value: Any, fmt: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


HEADERS = ("config", "p50 s", "p90 s", "p99 s", "mean s", "std s", "vs baseline", "first s", "load s", "file MiB",
           "peak RSS MiB", "accuracy", "gate")


def table_rows(result: BenchResult) -> list[list[str]]:
    rows = []
    for r in result.rows:
        s = r.stats or {}
        if r.status != "ok" and not s:
            rows.append([r.name, f"{r.status.upper()}: {r.reason}"] + [""] * (len(HEADERS) - 2))
            continue
        acc = r.accuracy
        accuracy = f"{acc['metric']} {_f(acc.get('value'), '.4g')}" if acc.get("metric") else ""
        rows.append([r.name, _f(s.get("p50_s"), ".3f"), _f(s.get("p90_s"), ".3f"), _f(s.get("p99_s"), ".3f"),
                     _f(s.get("mean_s"), ".3f"), _f(s.get("std_s"), ".3f"),
                     (_f(r.speedup, ".2f") + "x") if r.speedup else "", _f(r.first_s, ".3f"), _f(r.load_s, ".2f"),
                     _f(r.file_mib, ".0f"), _f(r.peak_rss_mib, ".0f"), accuracy, acc.get("gate", "")])
    return rows


def baseline_source(result: BenchResult) -> str:
    """How the baseline row was chosen, when the user named it: ", --baseline folder X" or ", --baseline row"."""
    chosen = result.settings.get("baseline")
    if not chosen:
        return ""
    return f", --baseline folder {chosen['given']}" if chosen["by"] == "folder" else ", --baseline row"


def to_markdown(result: BenchResult) -> str:
    st = result.settings
    how = f"{st['runs']} interleaved rounds" if st.get("runs") else f"rounds for {st['seconds']} s"
    lines = [f"Device: {describe(result.system)}", "",
             f"Batch 1, input {input_size(result)}, {st.get('threads') or 'default'} threads, "
             f"{st['warmup']} warm-up run(s), {how}; "
             f"ratios against **{result.baseline}** (p50{baseline_source(result)})."
             + (" **Interrupted**: partial results." if result.interrupted else ""), "",
             "| " + " | ".join(HEADERS) + " |", "|---|" + "---:|" * (len(HEADERS) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(result)]
    notes = placement_notes(result)
    if notes:
        lines += ["", "Node placement, one profiled run (ONNX Runtime: which provider ran each node, in host time, so "
                      "a GPU node counts its launch only; OpenVINO: the share of its per-op time in each precision):",
                  *notes]
    return "\n".join(lines) + "\n"


def print_table(result: BenchResult) -> None:
    """The table in the terminal (rich when installed, else the Markdown)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(to_markdown(result))
        return
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: the Markdown table, unwrapped
        print(to_markdown(result))
        return
    table = Table(title=f"sapiens-edge bench, input {input_size(result)}: {describe(result.system)}",
                  caption=f"ratios vs {result.baseline}{baseline_source(result)}")
    for k, h in enumerate(HEADERS):
        table.add_column(h, justify="left" if k == 0 or h == "accuracy" else "right")
    for cells in table_rows(result):
        table.add_row(*cells)
    console.print(table)
    for line in placement_notes(result):
        console.print(line, markup=False)


def write_plots(result: BenchResult, folder: Path) -> list[Path]:
    """latency.png (p50 bars with p90 whiskers) and, when accuracies are known, accuracy.png (accuracy
    against p50 latency, the Pareto front drawn). Raises MissingDependencyError without matplotlib."""
    from sapiens_edge.errors import require

    require("matplotlib", "report", "Benchmark plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    timed = [r for r in result.rows if r.stats]
    written = []
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(timed) + 1.5))
    names = [r.name for r in timed]
    p50 = [r.stats["p50_s"] for r in timed]
    p90 = [r.stats["p90_s"] for r in timed]
    colors = ["#888888" if r.name == result.baseline else "#1f77b4" for r in timed]
    ax.barh(names, p50, xerr=[[0] * len(timed), [b - a for a, b in zip(p50, p90, strict=True)]], color=colors,
            capsize=3)
    for y, (v, hi, r) in enumerate(zip(p50, p90, timed, strict=True)):
        ax.text(hi, y, f"   {v:.2f} s" + (f" ({r.speedup:.2f}x)" if r.speedup else ""), va="center", fontsize=8)
    ax.set_xlim(0, max(p90) * 1.3)
    ax.invert_yaxis()
    ax.set_xlabel("latency, s (bar: p50, whisker: p90)")
    ax.set_title(f"input {input_size(result)}, batch 1: {describe(result.system)}", fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, folder / "latency.png"))
    plt.close(fig)
    points = [r for r in timed if r.accuracy.get("value") is not None]
    if points:
        fig, ax = plt.subplots(figsize=(7, 5))
        metric, higher = points[0].accuracy["metric"], points[0].accuracy["higher_is_better"]
        for r in points:
            ok = r.accuracy.get("gate") == "PASSED"
            ax.scatter(r.stats["p50_s"], r.accuracy["value"], marker="o" if ok else "x", color="C0" if ok else "C3")
            ax.annotate(r.name, (r.stats["p50_s"], r.accuracy["value"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        front = pareto_front([(r.stats["p50_s"], r.accuracy["value"]) for r in points], higher)
        ax.plot(*zip(*front, strict=True), "--", color="grey", linewidth=1, label="Pareto front")
        ax.set_xlabel("latency p50, s")
        ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better) vs PyTorch fp32")
        ax.set_title(f"accuracy vs latency at input {input_size(result)} (o: gate passed, x: failed)", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, folder / "accuracy.png"))
        plt.close(fig)
    return written


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both latency (lower) and accuracy, by latency."""
    front = []
    best = -math.inf if higher_is_better else math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1] if higher_is_better else p[1])):
        if (y > best) if higher_is_better else (y < best):
            front.append((x, y))
            best = y
    return front


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)
    return path


# Every file `write_all` may write: a forced run removes them all first, so no plot of the previous
# run stays beside this one's tables.
OUTPUT_FILES = ("bench.json", "bench.csv", "bench.md", "latency.png", "accuracy.png")


def prepare_output(folder: Path, force: bool) -> None:
    """Before any work: refuse an `folder` holding a previous run's outputs (OutputExistsError) unless
    `force`, which removes them (only those files; the folder's others stay)."""
    from sapiens_edge.fileio import clear_outputs, refuse_overwrite

    paths = [Path(folder) / name for name in OUTPUT_FILES]
    refuse_overwrite(paths, force)
    clear_outputs(paths)


def write_all(result: BenchResult, folder: Path, *, plots: bool = True) -> dict[str, Path]:
    """bench.json, bench.csv, bench.md (and the plots) into `folder`; the caller checked it first
    (`prepare_output`)."""
    from sapiens_edge.fileio import atomic_write_bytes, atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    out = {"json": atomic_write_json(folder / "bench.json", result.to_json()),
           "csv": atomic_write_bytes(folder / "bench.csv", to_csv(result).encode("utf-8")),
           "markdown": atomic_write_bytes(folder / "bench.md", to_markdown(result).encode("utf-8"))}
    if plots:
        for p in write_plots(result, folder):
            out[p.stem] = p
    return out
