"""Core ML recipes side by side: export time and peak memory, package size (and its ratio to the
fp16 package), and what each recipe's compression does to the task metrics, measured on its torch
twin (`quantize/coreml_twin.py`: Core ML itself runs on Apple platforms only).

    python -m sapiens_edge.benchmarks.studies.coreml_recipe_sweep --models 0.1b-seg
    python -m sapiens_edge.benchmarks.studies.coreml_recipe_sweep --models 0.1b-pose,0.4b-seg \
        --recipes coreml-fp16,coreml-int8

Weights: the confident stand-ins of every benchmark (`models.synthetic`); each export runs in its
own process (`benchmarks.studies.recipe_sweep.export_in_child`), the twins in this one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ...fileio import atomic_write_json
from ..sysinfo import describe, system_info

DEFAULT_RECIPES = ("coreml-fp32", "coreml-fp16", "coreml-int8", "coreml-w8a8", "coreml-palettized-6bit",
                   "coreml-palettized-4bit")


def package_bytes(artifact: Path) -> int:
    return sum(p.stat().st_size for p in (artifact / "model.mlpackage").rglob("*") if p.is_file())


def bench_model(name: str, recipes: list[str], input_hw: tuple[int, int], workdir: Path,
                calibration_limit: int | None, reuse: bool = False, twins: bool = True) -> list[dict]:
    import torch

    from sapiens_edge import runtime
    from sapiens_edge.export.calibration import calibration_data
    from sapiens_edge.export.recipes import get_recipe
    from sapiens_edge.quantize.coreml_twin import twin
    from sapiens_edge.validation import metrics as M
    from sapiens_edge.validation.validate import task_metrics

    from .recipe_sweep import _parity, _stats_file, export_in_child, standin

    weights, model, prepared, x = standin(name, input_hw, workdir)
    task = model.sapiens_info.task
    proc = runtime.get_processor(task)

    def run(module):
        with torch.inference_mode():
            out = module(torch.from_numpy(x))
        return [o.float().numpy() for o in (out if isinstance(out, tuple) else (out,))]

    ref = run(model)
    rows = []
    for recipe_name in recipes:
        recipe = get_recipe(recipe_name)
        out = workdir / f"{name}-{recipe_name}"
        row: dict = {"model": name, "config": recipe_name, "deployment_target": recipe.lowering.deployment_target}
        if reuse and (out / "manifest.json").is_file() and _stats_file(out).is_file():
            row.update(json.loads(_stats_file(out).read_text()))
        else:
            print(f"  export {recipe_name} ...", file=sys.stderr, flush=True)
            row.update(export_in_child(name, recipe_name, weights, out, input_hw, calibration_limit))
        row["file_mib"] = package_bytes(out) / 2**20
        if not twins:
            rows.append(row)
            continue
        print(f"  torch twin of {recipe_name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        calib = calibration_data(task, input_hw, None, calibration_limit) if recipe.needs_calibration else None
        row.update(_parity(M, task_metrics, task, proc, prepared, ref, run(twin(model, recipe, input_hw, calib))))
        row["twin_s"] = time.perf_counter() - t0
        rows.append(row)
    fp16 = next((r["file_mib"] for r in rows if r["config"] == "coreml-fp16"), None)
    for r in rows:
        if fp16:
            r["size_vs_fp16"] = r["file_mib"] / fp16
    return rows


COLUMNS = [("config", "recipe", "{}"), ("deployment_target", "min target", "{}"), ("export_s", "export s", "{:.0f}"),
           ("export_peak_rss_gib", "export peak GiB", "{:.1f}"), ("file_mib", "package MiB", "{:.0f}"),
           ("size_vs_fp16", "size vs fp16", "{:.2f}"), ("cosine", "twin cosine", "{:.5f}"),
           ("snr_db", "twin SNR dB", "{:.1f}"), ("pixel_agreement", "pixel agree", "{:.4f}"),
           ("miou", "mIoU", "{:.4f}"), ("keypoint_err_px", "kp err (hm px)", "{:.3f}"), ("pck", "PCK@1px", "{:.3f}"),
           ("angle_mean_deg", "angle mean deg", "{:.3f}"), ("depth_rel_err", "depth rel err", "{:.4f}")]


def table(rows: list[dict]) -> str:
    from .recipe_sweep import table as recipes_table

    return recipes_table(rows, COLUMNS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="0.1b-seg", help="comma-separated zoo names without 'sapiens2-'")
    p.add_argument("--recipes", default=",".join(DEFAULT_RECIPES))
    p.add_argument("--input-size", default="1024x768")
    p.add_argument("--calibration-limit", type=int, help="calibration images for coreml-w8a8 (default: all 8)")
    p.add_argument("--workdir", help="keep checkpoints and artifacts here (default: a temp folder)")
    p.add_argument("--reuse", action="store_true", help="reuse artifacts already in --workdir")
    p.add_argument("--no-twins", action="store_true", help="exports and sizes only (the twins of a large model "
                   "take long: fp16 torch on a CPU without fp16 arithmetic, k-means over every weight)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    from .recipe_sweep import run_models

    rows, (h, w) = run_models(args.models, args.input_size, args.workdir, lambda name, hw, workdir: bench_model(
        name, args.recipes.split(","), hw, workdir, args.calibration_limit, args.reuse, twins=not args.no_twins))
    print(f"machine: {describe(system_info())}")
    print(f"input {h}x{w}; task metrics of each recipe's torch twin vs torch fp32 (Core ML runs on Apple only)")
    print(table(rows))
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
