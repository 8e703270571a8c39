"""Raw vs decoded outputs (`export --decode`): output bytes per frame and inference latency, side by side.

    python -m sapiens_edge.benchmarks.studies.decoded_outputs --models 0.1b-seg,0.1b-pose --input-size 512x384 \\
        --runs 10 --threads 2 --write results/decoded-outputs-0.1b-512x384_x86-64-2core_torch2.13.csv

Exports each model with onnx-fp32 twice (raw and decoded; seeded random weights: latency and sizes do not
depend on the values) into a temporary folder, then times all of them in ONE `sapiens-edge bench` run
(interleaved rounds, so a slow spell of a shared machine hits every configuration alike), and writes the CSV
(results/, rendered into docs/results.md). The artifacts are deleted afterwards.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sapiens_edge.fileio import atomic_write_bytes
from sapiens_edge.manifest import Manifest

RECIPE = "onnx-fp32"


def output_bytes(manifest: Manifest) -> int:
    """Bytes of all outputs of one frame (batch 1), from the manifest's specs."""
    return sum(int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize for t in manifest.outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="0.1b-seg,0.1b-pose", help="zoo names without 'sapiens2-'")
    parser.add_argument("--input-size", default="1024x768", help="HxW")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", type=Path, required=True, help="the results CSV to write")
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.input_size.split("x"))

    import warnings

    from sapiens_edge import __version__
    from sapiens_edge.benchmarks.bench import bench
    from sapiens_edge.benchmarks.sysinfo import cpu_model, versions
    from sapiens_edge.export.core import export

    with tempfile.TemporaryDirectory(prefix="sapiens-decoded-") as tmp:
        arts = []
        for short in args.models.split(","):
            for decode in (False, True):
                out = Path(tmp) / f"{short}-{'decoded' if decode else 'raw'}"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # RandomWeightsWarning: on purpose here
                    arts.append(export(f"sapiens2-{short}", RECIPE, out, input_size=(h, w), decode=decode,
                                       progress=lambda m: print(m, file=sys.stderr)))
        result = bench([a.path for a in arts], threads=args.threads, runs=args.runs,
                       progress=lambda m: print(m, file=sys.stderr))
        rows = {Path(r.artifact).name: r for r in result.rows if r.artifact}
        lines = ["model,outputs,output names,output bytes per frame,output MB per frame,p50 ms,mean ms,p90 ms"]
        for art in arts:
            m, row = art.manifest, rows[art.path.name]
            names = " ".join(f"{t.name} {t.dtype} {'x'.join(map(str, t.shape))}" for t in m.outputs)
            kind = "decoded" if m.export_options.get("decoded") else "raw"
            size = output_bytes(m)
            lines.append(f"{m.model},{kind},{names},{size},{size / 1e6:.3f},{row.stats['p50_s'] * 1e3:.1f},"
                         f"{row.stats['mean_s'] * 1e3:.1f},{row.stats['p90_s'] * 1e3:.1f}")
    v = versions()
    head = {
        "title": f"Raw vs decoded outputs (`--decode`), {RECIPE}, {h}x{w}: output size per frame and inference "
                 f"latency",
        "machine": f"{cpu_model()}, {platform.machine()}",
        "threads": str(args.threads),
        "versions": f"sapiens-edge {__version__}, onnxruntime {v.get('onnxruntime')}, torch {v.get('torch')}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m"),
        "command": "python -m sapiens_edge.benchmarks.studies.decoded_outputs " + " ".join(argv or sys.argv[1:]),
        "weights": "seeded random (--random-weights): sizes and latency do not depend on the values",
        "notes": f"one `sapiens-edge bench` run, {args.runs} interleaved rounds, batch 1; latency of the graph only "
                 f"(the app-side decoding a raw output still needs is not included); a shared machine",
    }
    text = "".join(f"# {k}: {val}\n" for k, val in head.items()) + "\n".join(lines) + "\n"
    atomic_write_bytes(args.write, text.encode("utf-8"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
