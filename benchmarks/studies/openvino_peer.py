"""The OpenVINO recipes against OpenVINO's plain conversion (issue 24's peer) and our other recipes, in one run.

    python -m sapiens_edge.benchmarks.studies.openvino_peer --models 0.1b-seg --input-size 512x384 \
        --csv results/openvino-0.1b-seg-512x384_<machine>_openvino2026.4.csv

The peer is what a user who skips this toolkit does: `openvino.convert_model(model, example_input=x)` of the
PyTorch module and `compile_model(..., "CPU")` with OpenVINO's default settings (on a CPU with bf16 arithmetic
its default inference precision is bf16), plus the same conversion with the f32 hint; and openvino-int8 with the
bf16 hint (= openvino-int8-mixed on a bf16 CPU). Everything else is `recipe_sweep.bench_model`: stand-in
weights, each export in its own process, interleaved rounds, parity with torch eager fp32 on the bundled photo.
Threads: --threads for every engine, the peer included. --reuse times the artifacts of an earlier run in
--workdir without exporting.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import sysinfo
from .recipe_sweep import bench_model, run_models, table
from .study_csv import STANDIN_WEIGHTS, write_study_csv

DEFAULT_RECIPES = "onnx-int8,openvino-fp32,openvino-fp16,openvino-int8,openvino-int8-hybrid"
# row key -> CSV column, as in the other results/ tables
FIELDS = {"config": "config", "latency_s": "latency s", "speedup_vs_torch_fp32": "vs torch fp32",
          "file_mib": "file MiB", "export_s": "export s", "export_peak_rss_gib": "export peak GiB", "snr_db": "SNR dB",
          "pixel_agreement": "pixel agreement", "miou": "mIoU", "keypoint_err_px": "kp err (hm px)", "pck": "PCK"}


def int8_bf16(artifact: Path, x: np.ndarray, threads: int) -> dict[str, Callable[[], list[np.ndarray]]]:
    """The openvino-int8 artifact with the bf16 hint (`--inference-precision bf16`): its float parts in bf16
    but the pinned output layer. That is what `openvino-int8-mixed` exports (the same IR, only the manifest's hint
    differs) on a CPU with bf16, timed without a second GPTQ export."""
    from sapiens_edge import runtime

    if not (artifact / "manifest.json").is_file():
        return {}
    p = runtime.load(artifact, threads=threads, inference_precision="bf16")
    return {"openvino-int8-mixed (openvino-int8's IR, bf16 hint)": lambda: p.run(x)}


def peers(model: Any, x: np.ndarray, threads: int) -> dict[str, Callable[[], list[np.ndarray]]]:
    """OpenVINO's plain conversion of the torch module, compiled with its defaults and with the f32 hint."""
    import openvino as ov
    import torch

    with torch.no_grad():
        converted = ov.convert_model(model.eval(), example_input=torch.from_numpy(x))
    core = ov.Core()
    out: dict[str, Callable[[], list[np.ndarray]]] = {}
    for label, config in (("default", {}), ("f32", {"INFERENCE_PRECISION_HINT": "f32"})):
        compiled = core.compile_model(converted, "CPU", {**config, "INFERENCE_NUM_THREADS": threads})
        used = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        request = compiled.create_infer_request()
        name = f"peer: openvino.convert_model, {label} hint ({used})"
        out[name] = lambda request=request: [np.array(v) for v in request.infer([x]).values()]
    return out


def write_csv(path: Path, rows: list[dict], command: str, threads: int, notes: str) -> None:
    import openvino
    import torch

    header = {"title": "OpenVINO recipes against OpenVINO's plain conversion and onnx-int8 (issue 24)",
              "machine": sysinfo.describe(sysinfo.system_info()), "threads": str(threads),
              "versions": f"torch {torch.__version__}, openvino {openvino.get_version().split('-')[0]}, "
                          f"python {platform.python_version()}",
              "command": command, "weights": STANDIN_WEIGHTS, "notes": notes}
    write_study_csv(path, header, list(FIELDS.values()),
                    ([f"{row[k]:.4g}" if isinstance(row.get(k), float) else row.get(k, "") for k in FIELDS]
                     for row in rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="0.1b-seg", help="comma-separated zoo names without 'sapiens2-'")
    p.add_argument("--recipes", default=DEFAULT_RECIPES, help="comma-separated recipes timed beside the peer")
    p.add_argument("--input-size", default="1024x768")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calibration-limit", type=int, help="calibration images for int8 (default: all built-in)")
    p.add_argument("--workdir", help="keep checkpoints and artifacts here (default: a temp folder)")
    p.add_argument("--reuse", action="store_true", help="time artifacts already in --workdir instead of exporting")
    p.add_argument("--csv", help="write the rows here (with the results/ header lines)")
    p.add_argument("--notes", default="", help="the CSV's notes line")
    args = p.parse_args(argv)
    rows, (h, w) = run_models(args.models, args.input_size, args.workdir, lambda name, hw, workdir: bench_model(
        name, args.recipes.split(","), hw, args.runs, args.threads, workdir, args.calibration_limit, False,
        reuse=args.reuse, extra=lambda model, x, threads: {
            **int8_bf16(workdir / f"{name}-openvino-int8", x, threads), **peers(model, x, threads)}))
    print(f"machine: {sysinfo.describe(sysinfo.system_info())}")
    print(f"input {h}x{w}, batch 1, {args.threads} threads, median of {args.runs} runs; parity vs torch fp32")
    print(table(rows))
    if args.csv:
        command = "python -m sapiens_edge.benchmarks.studies.openvino_peer " + shlex.join(argv or sys.argv[1:])
        write_csv(Path(args.csv), rows, command, args.threads, args.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
