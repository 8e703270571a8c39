"""Where an OpenVINO artifact's time goes, per precision, under each inference precision asked for.

    python -m sapiens_edge.benchmarks.studies.openvino_profile ARTIFACT --precisions manifest,f32,bf16 \
        --threads 2 --csv results/openvino-profile-<model>_<machine>_openvino<version>.csv

For each setting (``manifest``: the artifact as shipped, with its manifest's hint and reduced ops; or an
``inference_precision`` applied to the whole model), the artifact is compiled with OpenVINO's per-op counters
and run on the bundled photo (one warm-up, then --runs runs); the last run is summarized as in `bench`'s
placement column (benchmarks.openvino_placement): per precision group, its ops, their time and share, and the
costliest op types. Same artifact, same input, one process: the settings compare side by side.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .. import sysinfo
from ..openvino_placement import requested_precision, summarize_ops
from .study_csv import STANDIN_WEIGHTS, write_study_csv

FIELDS = ("setting", "latency s", "precision", "ops", "op time s", "share", "op types (by time)")


def profile(artifact: Path, setting: str, threads: int, runs: int) -> tuple[dict[str, Any], float]:
    """(the precision summary of the last run, median latency) of `artifact` under `setting`."""
    from sapiens_edge import runtime

    from ..bench import prepared_photo

    options: dict[str, Any] = {"threads": threads, "profile": True}
    if setting != "manifest":
        options["inference_precision"] = setting
    with runtime.load(artifact, "openvino", **options) as p:
        _, x = prepared_photo(p.manifest.task, tuple(p.manifest.input_hw))
        p.run(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            p.run(x)
            times.append(time.perf_counter() - t0)
        return summarize_ops(p.session.op_profile(), requested_precision(p.describe())), statistics.median(times)


def rows_of(setting: str, summary: dict[str, Any], latency: float) -> list[list[str]]:
    label = f"{setting} ({summary['requested']})"
    return [[label, f"{latency:.3f}", name, str(g["ops"]), f"{g['time_us'] / 1e6:.3f}", f"{g['share']:.3f}",
             ", ".join(f"{t} x{n}" for t, n in list(g["op_types"].items())[:4])]
            for name, g in summary["precisions"].items()]


def write_csv(path: Path, rows: list[list[str]], artifact: Path, command: str, threads: int, notes: str) -> None:
    import openvino

    header = {"title": f"Where the time of {artifact.name} goes, per precision (OpenVINO per-op counters)",
              "machine": sysinfo.describe(sysinfo.system_info()), "threads": str(threads),
              "versions": f"openvino {openvino.get_version().split('-')[0]}, python {platform.python_version()}",
              "command": command, "weights": STANDIN_WEIGHTS, "notes": notes}
    write_study_csv(path, header, FIELDS, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an openvino-* artifact folder")
    p.add_argument("--precisions", default="manifest,f32,bf16",
                   help="comma-separated settings: manifest (as shipped) or an inference precision (f32, bf16, f16)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--csv", help="write the rows here (with the results/ header lines)")
    p.add_argument("--notes", default="", help="the CSV's notes line")
    args = p.parse_args(argv)
    artifact, rows = Path(args.artifact), []
    for setting in args.precisions.split(","):
        print(f"profiling {artifact.name} ({setting}) ...", file=sys.stderr, flush=True)
        summary, latency = profile(artifact, setting, args.threads, args.runs)
        rows += rows_of(setting, summary, latency)
    print(f"machine: {sysinfo.describe(sysinfo.system_info())}; {args.threads} threads, median of {args.runs} runs")
    print("| " + " | ".join(FIELDS) + " |\n|" + "---|" * len(FIELDS))
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    if args.csv:
        command = "python -m sapiens_edge.benchmarks.studies.openvino_profile " + shlex.join(argv or sys.argv[1:])
        write_csv(Path(args.csv), rows, artifact, command, args.threads, args.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
