"""The large models (0.8b, 1b, 5b) exported and gated on this machine: per model and recipe, the export's
time and peak RSS against the memory goal (1.5x the artifact's weight bytes + 3 GiB), the artifact's size,
and the validation gate's result, time, peak RSS and per-image latencies (CPU, ONNX Runtime).

Each step is the user's own command (`sapiens-edge export`, `sapiens-edge validate --report`) in a child
process; peak RSS is that child's (`wait4`'s ru_maxrss). Weights: `--random-weights`, or with
`--standin-dtype bf16` a stand-in checkpoint written in bf16 first (`standin.write_standin_weights`): how
the 5b fits, its reference then held in bf16 and computed in fp32 (`loading.load_reference`).

    python -m sapiens_edge.benchmarks.studies.large_models --jobs sapiens2-1b-seg:onnx-fp16 \\
        --workdir /tmp/large --csv results/large-models_x86-64-2core_torch2.13.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from sapiens_edge.benchmarks import sysinfo
from sapiens_edge.zoo import get_model_info

GIB = 2**30
FIELDS = ["model", "recipe", "input", "params (M)", "weights", "export s", "export peak GiB", "memory goal GiB",
          "artifact MiB", "validate s", "validate peak GiB", "reference s/image", "artifact s/image", "gate",
          "metrics"]


def run_child(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS GiB) of `cmd`, its output appended to `log`."""
    t0 = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss * 1024 / GIB


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def measure(model: str, recipe: str, workdir: Path, input_size: str | None, standin_dtype: str | None,
            validate_options: list[str], export_options: list[str] = ()) -> dict:
    cli = [sys.executable, "-m", "sapiens_edge.cli"]
    log = workdir / "log.txt"
    info = get_model_info(model)
    weights: list[str] = ["--random-weights"]
    label = "random (fp32 draws)"
    if standin_dtype:
        path = workdir / f"{model}-standin-{standin_dtype}.safetensors"
        if not path.exists():  # in a child process: its 10 GB (5b) must not sit under the export's
            hw = tuple(int(v) for v in (input_size or "x".join(map(str, info.input_hw))).split("x"))
            print(f"{model}: writing a {standin_dtype} stand-in checkpoint ...", file=sys.stderr, flush=True)
            code, seconds, peak = run_child([sys.executable, "-c", "import sys; from pathlib import Path; "
                                             "from sapiens_edge.standin import write_standin_weights as w; "
                                             "w(sys.argv[1], Path(sys.argv[2]), (int(sys.argv[3]), int(sys.argv[4])), "
                                             "dtype=sys.argv[5])", model, str(path), str(hw[0]), str(hw[1]),
                                             standin_dtype], log)
            if code != 0:
                return {"model": model, "recipe": recipe, "gate": f"stand-in failed (exit {code}; see {log})"}
            print(f"{model}: stand-in written in {seconds:.0f} s, peak {peak:.1f} GiB", file=sys.stderr, flush=True)
        weights, label = ["--weights", str(path)], f"stand-in, {standin_dtype} file"
    art = workdir / (f"{model}-{recipe}" + ("" if input_size is None else f"-{input_size}"))
    size = [] if input_size is None else ["--input-size", input_size]
    print(f"{model} {recipe}: export ...", file=sys.stderr, flush=True)
    code, export_s, export_peak = run_child([*cli, "export", model, "--recipe", recipe, "-o", str(art), "--force",
                                             *weights, *size, *export_options], log)
    if code != 0:
        return {"model": model, "recipe": recipe, "gate": f"export failed (exit {code}; see {log})"}
    manifest = json.loads((art / "manifest.json").read_text())
    weight_bytes = sum((art / f).stat().st_size for f in manifest["files"] if f.startswith("model."))
    report = workdir / f"{art.name}-gate.json"
    print(f"{model} {recipe}: validate ...", file=sys.stderr, flush=True)
    code, validate_s, validate_peak = run_child([*cli, "validate", str(art), "--report", str(report), "--force",
                                                 *([w for w in weights if w != "--random-weights"]),
                                                 *validate_options], log)
    gate = json.loads(report.read_text()) if report.exists() else {}
    per_image = gate.get("per_image") or [{}]
    status = "FATAL" if gate.get("fatal") else ("PASSED" if gate.get("passed") else f"FAILED (exit {code})")
    metrics = "; ".join(f"{c['name']} {c['value']:.4g}" for c in gate.get("checks", []))
    return {"model": model, "recipe": recipe, "input": "x".join(map(str, manifest["input_hw"])),
            "params (M)": round(info.params / 1e6), "weights": label, "export s": round(export_s),
            "export peak GiB": round(export_peak, 1), "memory goal GiB": round((1.5 * weight_bytes + 3 * GIB) / GIB, 1),
            "artifact MiB": round(folder_mib(art)), "validate s": round(validate_s),
            "validate peak GiB": round(validate_peak, 1),
            "reference s/image": per_image[0].get("seconds_reference", ""),
            "artifact s/image": per_image[0].get("seconds_artifact", ""), "gate": status, "metrics": metrics}


def remove_job_files(workdir: Path, model: str, recipe: str, input_size: str | None) -> None:
    """The job's artifact folder and stand-in checkpoint, once measured (its gate report stays)."""
    shutil.rmtree(workdir / (f"{model}-{recipe}" + ("" if input_size is None else f"-{input_size}")),
                  ignore_errors=True)
    for standin in workdir.glob(f"{model}-standin-*.safetensors"):
        standin.unlink()


def write_csv(path: Path, rows: list[dict], command: str, notes: str) -> None:
    import onnxruntime
    import torch

    header = ["# title: Large models exported and gated on CPU (export peak RSS against 1.5x weights + 3 GiB)",
              f"# machine: {sysinfo.cpu_model()}, {os.cpu_count()} cores, {sysinfo.memory_gib() or '?'} GiB",
              f"# threads: {os.cpu_count()}",
              f"# versions: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"python {platform.python_version()}",
              f"# date: {date.today():%Y-%m}", f"# command: {command}", f"# notes: {notes}"]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write("\n".join(header) + "\n")
        writer = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", required=True, help="MODEL:RECIPE[:HxW][,MODEL:RECIPE[:HxW]...]")
    p.add_argument("--workdir", required=True, help="artifacts, reports and the log go here")
    p.add_argument("--csv", required=True, help="write the rows here (with the results/ header lines)")
    p.add_argument("--input-size", help="HxW (default: each model's)")
    p.add_argument("--standin-dtype", choices=["bf16"], help="gate against a stand-in checkpoint stored in bf16")
    p.add_argument("--validate-option", action="append", default=[], help="passed to `sapiens-edge validate`")
    p.add_argument("--export-option", action="append", default=[], help="passed to `sapiens-edge export`")
    p.add_argument("--notes", default="", help="the CSV's notes line")
    p.add_argument("--remove-files", action="store_true",
                   help="delete each job's artifact and stand-in once measured (a 5b job writes ~21 GB; reports kept)")
    args = p.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for job in args.jobs.split(","):
        model, recipe, *size = job.split(":")
        rows.append(measure(model, recipe, workdir, size[0] if size else args.input_size, args.standin_dtype,
                            args.validate_option, args.export_option))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if args.remove_files:
            remove_job_files(workdir, model, recipe, size[0] if size else args.input_size)
        write_csv(Path(args.csv), rows, "python -m sapiens_edge.benchmarks.studies.large_models "
                  + shlex.join(argv if argv is not None else sys.argv[1:]), args.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
