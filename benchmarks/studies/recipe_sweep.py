"""Export recipes side by side (any target): export time and peak memory, file size, latency and
task parity against PyTorch eager fp32 (and bf16), in one run, as ratios.

    python -m sapiens_edge.benchmarks.studies.recipe_sweep --models 0.1b-seg \
        --recipes onnx-fp32,onnx-int8,onnx-int8:percentile
    python -m sapiens_edge.benchmarks.studies.recipe_sweep --threads 2 \
        --recipes executorch-xnnpack-fp32,executorch-xnnpack-int8

Weights: a seeded random model whose classifier is made confident (`models.synthetic`), written
to a .safetensors file that the exports load like a user's checkpoint. Each export runs in its
own process, so its peak RSS is its own. Latency: batch 1, --threads intra-op threads, the bundled
photo as input; every configuration (torch included) is loaded, warmed up once, then timed in
--runs interleaved rounds (one run of each per round, so machine noise hits all alike); median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...fileio import atomic_write_json
from ..bench import prepared_photo
from ..sysinfo import describe, system_info


def interleaved(fns: dict[str, Callable[[], object]], runs: int,
                progress: Callable[[str], None] = lambda _: None) -> dict[str, float]:
    """Median latency of each function over `runs` rounds; each round runs every function once, in
    turn, so that a slow spell of the machine hits all configurations alike. One warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        progress(f"  round {i + 1}/{runs}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    return {name: statistics.median(t) for name, t in times.items()}


# `sapiens-edge export ARGS...`, then its peak RSS (MiB) written to argv[1].
_EXPORT_CHILD = """
import sys
from pathlib import Path
from sapiens_edge.benchmarks.studies.load_and_latency import _peak_rss_mib
from sapiens_edge.cli import main
peak_file, args = Path(sys.argv[1]), sys.argv[2:]
try:
    rc = main(args)
finally:
    peak_file.write_text(str(_peak_rss_mib()))
sys.exit(rc)
"""


def export_in_child(name: str, recipe: str, weights: Path, out: Path, input_hw: tuple[int, int],
                    calibration_limit: int | None, keep_float: tuple[str, ...] = ()) -> dict:
    """`sapiens-edge export` in a subprocess; returns its wall time and peak RSS (the child's own
    VmHWM: wait4's ru_maxrss would also count the pages the child shared with this process before
    exec, i.e. every model this benchmark holds). `recipe` may name a calibration method after a
    colon: `onnx-int8:percentile`."""
    recipe, _, method = recipe.partition(":")
    peak_file = out.with_name(out.name + ".peak")
    cmd = [sys.executable, "-c", _EXPORT_CHILD, str(peak_file), "export", name, "--weights", str(weights),
           "--recipe", recipe, "--input-size", f"{input_hw[0]}x{input_hw[1]}", "--output", str(out), "--force"]
    if method:
        cmd += ["--calibration-method", method]
    from sapiens_edge.export.recipes import get_recipe

    if keep_float and get_recipe(recipe).needs_calibration:
        cmd += [arg for pattern in keep_float for arg in ("--keep-float", pattern)]
    if calibration_limit:
        cmd += ["--calibration-limit", str(calibration_limit)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # show the export's progress as it goes
        if "Warning" not in line and not line.startswith(("W1", "  ", "[torch.onnx]")):
            print(f"    {line.rstrip()}", file=sys.stderr, flush=True)
    if proc.wait() != 0:
        raise RuntimeError(f"export {name} {recipe} failed (exit {proc.returncode})")
    peak_mib = float(peak_file.read_text())
    peak_file.unlink()
    stats = {"export_s": time.perf_counter() - t0, "export_peak_rss_gib": peak_mib / 1024}
    _stats_file(out).write_text(json.dumps(stats))
    return stats


def standin(name: str, input_hw: tuple[int, int], workdir: Path) -> tuple[Path, Any, Any, np.ndarray]:
    """(weights file, model, prepared photo, its input array): the confident stand-in weights of
    `name` written to `workdir` and loaded like a user's checkpoint, and the bundled photo."""
    import sapiens_edge
    from sapiens_edge.standin import write_standin_weights

    weights = workdir / f"{name}.safetensors"
    print(f"{name}: writing confident random weights ...", file=sys.stderr, flush=True)
    write_standin_weights(name, weights, input_hw)
    model = sapiens_edge.load_model(name, weights)
    prepared, x = prepared_photo(model.sapiens_info.task, input_hw)
    return weights, model, prepared, x


def _stats_file(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".export.json")


def bench_model(name: str, recipes: list[str], input_hw: tuple[int, int], runs: int, threads: int, workdir: Path,
                calibration_limit: int | None, torch_bf16: bool, keep_float: tuple[str, ...] = (),
                reuse: bool = False,
                extra: Callable[[Any, np.ndarray, int], dict[str, Callable[[], list]]] | None = None) -> list[dict]:
    """Rows of `recipes` on `name` against torch eager. `extra(model, input, threads)`: more configurations
    timed in the same rounds (a study's peers), each a function returning the outputs."""
    import torch

    from sapiens_edge import runtime
    from sapiens_edge.validation import metrics as M
    from sapiens_edge.validation.validate import task_metrics

    torch.set_num_threads(threads)
    weights, model, prepared, x = standin(name, input_hw, workdir)
    task = model.sapiens_info.task
    proc = runtime.get_processor(task)
    xt = torch.from_numpy(x)

    def torch_fn():
        with torch.inference_mode():
            out = model(xt)
        return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]

    ref = torch_fn()
    fns: dict[str, Callable[[], object]] = {"torch eager fp32": torch_fn}
    rows = [{"model": name, "config": "torch eager fp32"}]
    if torch_bf16:
        def bf16_fn():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(xt)
            return [o.float().numpy() for o in (out if isinstance(out, tuple) else (out,))]

        fns["torch eager bf16 (autocast)"] = bf16_fn
        rows.append({"model": name, "config": "torch eager bf16 (autocast)",
                     **_parity(M, task_metrics, task, proc, prepared, ref, bf16_fn())})
    fp32_sizes: dict[str, int] = {}  # target -> its fp32 artifact's size
    predictors = []
    for recipe in recipes:
        out = workdir / f"{name}-{recipe.replace(':', '-')}"
        row = {"model": name, "config": recipe}
        if reuse and (out / "manifest.json").is_file() and _stats_file(out).is_file():
            print(f"  reusing {out} (export figures from its first run)", file=sys.stderr, flush=True)
            row.update(json.loads(_stats_file(out).read_text()))
        else:
            print(f"  export {recipe} ...", file=sys.stderr, flush=True)
            row.update(export_in_child(name, recipe, weights, out, input_hw, calibration_limit, keep_float))
        manifest = json.loads((out / "manifest.json").read_text())
        size = sum((out / f).stat().st_size for f in manifest["files"] if f != "README.md")
        row["target"] = manifest["target"]
        if manifest["precision"] == "fp32":
            fp32_sizes[manifest["target"]] = size
        row["file_mib"] = size / 2**20
        p = runtime.load(out, threads=threads)
        predictors.append(p)
        fns[recipe] = lambda p=p: p.run(x)
        row.update(_parity(M, task_metrics, task, proc, prepared, ref, p.run(x)))
        rows.append(row)
    for config, fn in (extra(model, x, threads) if extra else {}).items():
        fns[config] = fn
        rows.append({"model": name, "config": config, **_parity(M, task_metrics, task, proc, prepared, ref, fn())})
    print(f"  timing {len(fns)} configurations in {runs} interleaved rounds ...", file=sys.stderr, flush=True)
    latency = interleaved(fns, runs, progress=lambda m: print(m, file=sys.stderr, flush=True))
    for p in predictors:
        p.close()
    for row in rows:
        row["latency_s"] = latency[row["config"]]
    base = rows[0]["latency_s"]
    for r in rows:
        r["speedup_vs_torch_fp32"] = base / r["latency_s"]
        if r.get("target") in fp32_sizes:  # against the same target's fp32 artifact
            r["size_vs_fp32"] = r["file_mib"] * 2**20 / fp32_sizes[r["target"]]
    return rows


def _parity(M, task_metrics, task, proc, prepared, ref, cand) -> dict:
    t = M.tensor_metrics(ref[0], cand[0])
    row = {"cosine": t["cosine"], "snr_db": t["snr_db"]}
    row.update(task_metrics(task, proc, prepared, ref, cand))
    return row


COLUMNS = [("config", "config", "{}"), ("latency_s", "latency s", "{:.2f}"),
           ("speedup_vs_torch_fp32", "vs torch fp32", "{:.2f}x"), ("file_mib", "file MiB", "{:.0f}"),
           ("size_vs_fp32", "size vs fp32", "{:.2f}"), ("export_s", "export s", "{:.0f}"),
           ("export_peak_rss_gib", "export peak GiB", "{:.1f}"), ("cosine", "cosine", "{:.5f}"),
           ("snr_db", "SNR dB", "{:.1f}"), ("pixel_agreement", "pixel agree", "{:.4f}"), ("miou", "mIoU", "{:.4f}"),
           ("keypoint_err_px", "kp err (hm px)", "{:.3f}"), ("pck", "PCK@1px", "{:.3f}"),
           ("angle_mean_deg", "angle mean deg", "{:.3f}"), ("depth_rel_err", "depth rel err", "{:.4f}")]


def table(rows: list[dict], columns: list[tuple[str, str, str]] | None = None) -> str:
    """Markdown table per model of `columns` (key, header, format) that any row has."""
    cols = [c for c in (columns or COLUMNS) if any(c[0] in r for r in rows)]
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        lines += [f"\n{model}\n", "| " + " | ".join(c[1] for c in cols) + " |",
                  "|" + "|".join("---" if c[0] == "config" else "---:" for c in cols) + "|"]
        for r in (r for r in rows if r["model"] == model):
            cells = [c[2].format(r[c[0]]) if r.get(c[0]) is not None else "" for c in cols]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="0.1b-seg", help="comma-separated zoo names without 'sapiens2-'")
    p.add_argument("--recipes", default="onnx-fp32,onnx-int8,onnx-int8-dynamic",
                   help="comma-separated; RECIPE:METHOD picks a calibration method, e.g. onnx-int8:percentile")
    p.add_argument("--input-size", default="1024x768")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calibration-limit", type=int, help="calibration images for int8 (default: all 8 built-in)")
    p.add_argument("--no-bf16", action="store_true", help="skip the torch bf16 row")
    p.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                   help="passed to the calibrated int8 exports (layers left unquantized), e.g. decode_head.")
    p.add_argument("--workdir", help="keep checkpoints and artifacts here (default: a temp folder)")
    p.add_argument("--reuse", action="store_true",
                   help="time artifacts already in --workdir (from an earlier run with the same settings) "
                        "instead of exporting them again")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    rows, (h, w) = run_models(args.models, args.input_size, args.workdir, lambda name, hw, workdir: bench_model(
        name, args.recipes.split(","), hw, args.runs, args.threads, workdir, args.calibration_limit,
        not args.no_bf16, tuple(args.keep_float), args.reuse))
    print(f"machine: {describe(system_info())}")
    print(f"input {h}x{w}, batch 1, {args.threads} threads, median of {args.runs} runs; parity vs torch fp32")
    print(table(rows))
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


def run_models(models: str, input_size: str, workdir: str | None,
               bench: Callable[[str, tuple[int, int], Path], list[dict]]) -> tuple[list[dict], tuple[int, int]]:
    """`bench(zoo name, (h, w), workdir)` for each of the comma-separated `models` (without the
    'sapiens2-' prefix), in `workdir` or a temporary folder; (all rows, (h, w))."""
    h, w = (int(v) for v in input_size.lower().split("x"))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir) if workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for m in filter(None, models.split(",")):
            rows += bench(f"sapiens2-{m}", (h, w), folder)
    return rows, (h, w)


if __name__ == "__main__":
    sys.exit(main())
