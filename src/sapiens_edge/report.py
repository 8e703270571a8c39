"""The main job: `sapiens-edge report MODEL --output DIR`, a report card for one model on this machine.

Exports the model with each recipe (the built-in default set, every recipe with `--recipes all`,
or a list), validates each artifact against PyTorch fp32, runs each on the bundled photo, benchmarks
them side by side with torch eager (interleaved rounds), and writes the card: `report.md` and
`report.html` with the tables, the plots and the overlays, next to `bench.json` / `bench.csv`, the
validation reports and the artifacts. A recipe this machine cannot export (missing extra) or run
(Core ML off Apple) keeps its row with the reason.

Without --weights it writes stand-in weights first (seeded random, classifier made confident) and
says so on every page: the numbers then measure the export, not the model.
"""

from __future__ import annotations

import html
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import OutputExistsError, SapiensEdgeError, option
from .export.recipes import DEFAULT_REPORT_RECIPES
from .fileio import atomic_write_bytes, atomic_write_json
from .metadata import bundled_photo
from .signals import unwinds_on_terminate

DEFAULT_MODEL = "sapiens2-0.1b-seg"
# A few minutes on 2 cores, one float and one int8 recipe of two targets; `all` for every recipe.
DEFAULT_RECIPES = DEFAULT_REPORT_RECIPES


def resolve_recipes(spec: str | Sequence[str] | None, info: Any, input_hw: tuple[int, int]) -> tuple[list[str], dict]:
    """(recipes to export, {recipe: reason} for those that cannot here). `spec`: None/"default",
    "all", or recipe names (unknown names are an error)."""
    from .export.recipes import RECIPES, availability, get_recipe

    if spec is None or spec == "default":
        names = list(DEFAULT_RECIPES)
    elif spec == "all":
        names = list(RECIPES)
    else:
        names = [spec] if isinstance(spec, str) else list(spec)
        for name in names:
            get_recipe(name)  # unknown -> RecipeError listing the valid ones
    keep, skipped = [], {}
    for name in names:
        ok, reason = availability(RECIPES[name], info, input_hw)
        (keep.append(name) if ok else skipped.__setitem__(name, reason))
    return keep, skipped


@unwinds_on_terminate  # SIGTERM/SIGHUP clean up like Ctrl-C
def make_report(output: str | Path, *, model: str = DEFAULT_MODEL, recipes: str | Sequence[str] | None = None,
                weights: str | Path | None = None, input_size: tuple[int, int] | None = None,
                calibration: str | Path | None = None, runs: int = 3, threads: int | None = None,
                providers: Sequence[str] | None = None, torch_device: str = "cpu",
                force: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`providers` (ONNX Runtime: "cpu", "cuda", "tensorrt"): validate and benchmark every ONNX
    artifact on each, side by side (on a Jetson: `["cpu", "cuda"]`); `torch_device` puts the torch
    row on "cuda"."""
    from .benchmarks import bench_output
    from .benchmarks.accuracy import validation_index
    from .benchmarks.bench import bench
    from .errors import require
    from .export.core import export
    from .export.recipes import RECIPES
    from .run import run_artifact
    from .runtime.preprocess import check_input_hw
    from .standin import write_standin_weights
    from .validation import validate
    from .zoo import get_model_info

    require("torch", "torch", "`sapiens-edge report` (export and the PyTorch reference)")
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(output)
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out} already exists. Choose another {option('--output', 'output')} or pass "
                                f"{option('--force', 'force=True')} to replace it.")
    info = get_model_info(model)
    input_hw = tuple(input_size) if input_size else info.input_hw
    check_input_hw(input_hw)
    names, skipped = resolve_recipes(recipes, info, input_hw)
    if not names:
        raise SapiensEdgeError("None of the recipes can be exported here: "
                               + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    for name, reason in skipped.items():
        say(f"skipping {name}: {reason}")
    if force:  # once the request is known good
        _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or os.cpu_count() or 1
    standin = weights is None
    steps = 2 * len(names) + 3
    step = 0

    def stage(msg: str) -> None:
        nonlocal step
        step += 1
        say(f"[{step}/{steps}] {msg}")

    if standin:
        weights = out / f"{model}-standin.safetensors"
        stage(f"no {option('--weights', 'weights')}: writing stand-in weights {weights} (seeded random, confident "
              f"classifier; pass {option('--weights', 'weights=...')} for real results)")
        write_standin_weights(model, Path(weights), input_hw)
    else:
        stage(f"weights: {weights}")
    t_start = time.perf_counter()
    exported: dict[str, dict[str, Any]] = {}
    for name in names:
        stage(f"export {model} -> {name}")
        art_dir = out / "artifacts" / name
        try:
            art = export(model, name, art_dir, weights=weights, input_size=input_hw, calibration=calibration,
                         force=force, progress=lambda m: say(f"    {m}"))
        except SapiensEdgeError as exc:
            skipped[name] = f"export failed: {exc}"
            say(f"    export failed: {exc}")
            continue
        exported[name] = {"path": art_dir, "export_s": art.seconds}
    providers = list(providers or [])
    for name, row in exported.items():
        stage(f"validate {name} against PyTorch fp32, run it on the photo")
        row["validations"], row["validation_errors"] = {}, {}
        # One validation per ONNX Runtime provider asked for: fp16 rounds differently on each.
        for provider in (providers if providers and RECIPES[name].target == "onnx" else [None]):
            label = f"{name}-{provider}" if provider else name
            options = {"provider": provider} if provider else {}
            try:
                report = validate(row["path"], weights=weights, report=out / "validation" / f"{label}.json",
                                  progress=lambda m: say(f"    {m}"), threads=threads, force=force, **options)
                row["validations"][provider or ""] = report.to_json()
            except SapiensEdgeError as exc:  # e.g. Core ML off Apple, a provider not installed: the row says why
                row["validation_errors"][provider or ""] = str(exc)
                say(f"    {exc}")
        try:
            run_artifact(row["path"], [bundled_photo()], out / "overlays" / name, threads=threads, force=True,
                         progress=lambda m: say(f"    {m}"))
        except SapiensEdgeError as exc:
            row["validation_errors"].setdefault("", str(exc))
            say(f"    {exc}")
    stage(f"benchmark: torch eager fp32 and {len(exported)} artifact(s), {runs} interleaved rounds")
    result = bench([row["path"] for row in exported.values()], threads=threads, runs=runs,
                   torch_baseline=(model, weights), torch_device=torch_device, providers=providers or None,
                   validation=validation_index([doc for r in exported.values() for doc in r["validations"].values()]),
                   json_path=out / "bench.json", force=force, progress=lambda m: say(f"    {m}"))
    stage("writing the report card")
    files = bench_output.write_all(result, out)
    summary = {"model": model, "input_hw": list(input_hw), "weights": str(weights), "standin_weights": standin,
               "threads": threads, "skipped": skipped, "seconds": round(time.perf_counter() - t_start, 1),
               "providers": providers, "torch_device": torch_device,
               "recipes": {name: _recipe_summary(r) for name, r in exported.items()},
               "bench": result.to_json()}
    atomic_write_json(out / "report.json", summary)
    md = render_markdown(summary, result, out, files)
    atomic_write_bytes(out / "report.md", md.encode("utf-8"))
    atomic_write_bytes(out / "report.html", render_html(summary, result, out, files).encode("utf-8"))
    bench_output.print_table(result)
    say(f"report card: {out / 'report.md'} and {out / 'report.html'}")
    return summary


def _clear_previous(out: Path) -> None:
    """A forced report removes what a previous one wrote at the top of `out` and its validation
    reports, so the card's folder holds no stale plot or verdict; nothing else (artifacts are
    replaced recipe by recipe by the export, the user's own files stay)."""
    from .benchmarks.bench_output import prepare_output
    from .export.recipes import RECIPES
    from .fileio import clear_outputs

    prepare_output(out, True)
    ours = [out / name for name in ("report.json", "report.md", "report.html")]
    validation = out / "validation"
    if validation.is_dir():
        ours += [p for p in validation.iterdir() if p.suffix in (".json", ".md")
                 and any(p.stem == r or p.stem.startswith(f"{r}-") for r in RECIPES)]
    clear_outputs(ours)


def _recipe_summary(row: dict[str, Any]) -> dict[str, Any]:
    """Export time and the verdict: passed only if every provider it was validated on passed (None if
    no validation ran); `by_provider` when providers were named."""
    verdicts = {p: {"passed": doc.get("passed"), "summary": doc.get("summary")}
                for p, doc in row["validations"].items()}
    verdicts.update({p: {"passed": None, "summary": err} for p, err in row["validation_errors"].items()
                     if p not in verdicts})
    ran = [v["passed"] for v in verdicts.values() if v["passed"] is not None]
    out = {"export_s": row["export_s"], "passed": all(ran) if ran else None,
           "summary": "; ".join(v["summary"] or "" for v in verdicts.values())}
    if any(verdicts) and "" not in verdicts:
        out["by_provider"] = verdicts
    return out


def _overlay(out: Path, name: str) -> Path | None:
    found = sorted((out / "overlays" / name).glob("*_overlay.png")) if (out / "overlays" / name).is_dir() else []
    return found[0] if found else None


def _gate_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name, r in summary["recipes"].items():
        if r.get("by_provider"):
            rows += [(f"{name} ({p})", v["summary"] or "") for p, v in r["by_provider"].items()]
        else:
            rows.append((name, r["summary"] or ""))
    rows += [(name, f"not exported: {reason}") for name, reason in summary["skipped"].items()]
    return rows


def _weights_line(summary: dict[str, Any]) -> str:
    if summary["standin_weights"]:
        return ("**Stand-in weights** (seeded random, classifier made confident): the numbers measure the "
                "exports, not the model's accuracy. Pass `--weights` for real results.")
    return f"Weights: `{summary['weights']}`"


def render_markdown(summary: dict[str, Any], result: Any, out: Path, files: dict[str, Path]) -> str:
    from .benchmarks.bench_output import to_markdown

    h, w = summary["input_hw"]
    lines = [f"# sapiens-edge report: {summary['model']} at {h}x{w}", "", _weights_line(summary), "",
             "## Latency, size, accuracy", "", to_markdown(result)]
    for key, title in (("latency", "Latency (p50 bars, p90 whiskers)"), ("accuracy", "Accuracy against latency")):
        if key in files:
            lines += [f"![{title}]({files[key].relative_to(out).as_posix()})", ""]
    lines += ["## Validation (against PyTorch fp32, the recipes' thresholds)", "", "| recipe | verdict |", "|---|---|"]
    lines += [f"| {name} | {text} |" for name, text in _gate_rows(summary)]
    details = "validation/<recipe>-<provider>.md" if summary.get("providers") else "validation/<recipe>.md"
    lines += ["", f"Details: `{details}`.", "", "## Overlays on the bundled photo", ""]
    for name in summary["recipes"]:
        img = _overlay(out, name)
        if img is not None:
            lines += [f"**{name}**", "", f"![{name}]({img.relative_to(out).as_posix()})", ""]
    lines += [f"Made in {summary['seconds']:.0f} s by `sapiens-edge report`."]
    return "\n".join(lines) + "\n"


def render_html(summary: dict[str, Any], result: Any, out: Path, files: dict[str, Path]) -> str:
    from .benchmarks.bench_output import HEADERS, table_rows
    from .benchmarks.sysinfo import describe

    e = html.escape
    h, w = summary["input_hw"]

    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        head = "".join(f"<th>{e(c)}</th>" for c in header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    weights = _weights_line(summary).replace("**", "")
    parts = [f"<h1>sapiens-edge report: {e(summary['model'])} at {h}x{w}</h1>", f"<p>{e(weights)}</p>",
             f"<p>Device: {e(describe(result.system))}. Every row at input {h}x{w}, batch 1. "
             f"Ratios against <b>{e(str(result.baseline))}</b> (p50).</p>",
             "<h2>Latency, size, accuracy</h2>", table(HEADERS, table_rows(result))]
    for key in ("latency", "accuracy"):
        if key in files:
            parts.append(f'<p><img src="{e(files[key].relative_to(out).as_posix())}" alt="{key}"></p>')
    parts += ["<h2>Validation</h2>", table(("recipe", "verdict"), _gate_rows(summary)), "<h2>Overlays</h2>"]
    for name in summary["recipes"]:
        img = _overlay(out, name)
        if img is not None:
            parts.append(f'<figure><img src="{e(img.relative_to(out).as_posix())}" width="384" alt="{e(name)}">'
                         f"<figcaption>{e(name)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}figure{display:inline-block;margin:6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sapiens-edge report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


__all__ = ["DEFAULT_MODEL", "DEFAULT_RECIPES", "make_report", "resolve_recipes"]
