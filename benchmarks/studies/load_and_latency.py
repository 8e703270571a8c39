"""Checkpoint load time / peak memory and eager PyTorch latency, measured side by side.

    python -m sapiens_edge.benchmarks.studies.load_and_latency --load 0.4b-seg,1b-seg --latency 0.1b-seg,0.4b-seg

Checkpoints are written here with random weights (no hub access needed). Each load runs in a fresh
subprocess so its peak RSS (ru_maxrss) belongs to that load alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...fileio import atomic_write_json


def _write_checkpoint(name: str, dtype: str, path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from sapiens_edge.models.build import build_model, random_init_
    from sapiens_edge.zoo import get_model_info

    model = random_init_(build_model(get_model_info(name)))
    cast = getattr(torch, dtype)
    sd = {k: (v.to(cast) if v.dtype == torch.float32 else v).contiguous() for k, v in model.state_dict().items()}
    del model
    save_file(sd, str(path))


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM (Linux) is reset at exec; ru_maxrss would also count the
    pages shared with the parent at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_child(name: str, path: str) -> None:
    """Runs in a subprocess: import torch first (its own footprint), then time the load."""
    import torch  # noqa: F401

    import sapiens_edge

    base = _peak_rss_mib()
    t0 = time.perf_counter()
    model = sapiens_edge.load_model(name, path)
    seconds = time.perf_counter() - t0
    params_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"seconds": seconds, "peak_rss_mib": _peak_rss_mib(), "rss_before_mib": base,
                      "fp32_weights_mib": params_bytes / 2**20}))


def measure_load(name: str, dtype: str, workdir: Path) -> dict:
    path = workdir / f"{name}-{dtype}.safetensors"
    if not path.exists():
        print(f"writing random {name} checkpoint ({dtype}) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "sapiens_edge.benchmarks.studies.load_and_latency", "--_write",
                        name, dtype, str(path)], check=True)
    out = subprocess.run([sys.executable, "-m", "sapiens_edge.benchmarks.studies.load_and_latency", "--_child",
                          name, str(path)], check=True, capture_output=True, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(model=name, file_dtype=dtype, file_mib=path.stat().st_size / 2**20)
    return row


def measure_latency(name: str, input_hw: tuple[int, int], runs: int, threads: int) -> dict:
    import warnings

    import torch

    import sapiens_edge

    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sapiens_edge.load_model(name)
    x = torch.randn(1, 3, *input_hw)
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return {"model": name, "input": f"{input_hw[0]}x{input_hw[1]}", "threads": threads, "runs": runs,
            "mean_s": statistics.mean(times), "median_s": statistics.median(times), "min_s": min(times)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", default="0.4b-seg,1b-seg", help="models whose checkpoint load is measured")
    p.add_argument("--dtypes", default="float32,bfloat16", help="stored dtypes of the written checkpoints")
    p.add_argument("--latency", default="0.1b-seg,0.4b-seg", help="models whose eager latency is measured")
    p.add_argument("--input-size", default="1024x768")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", help="where checkpoints are written (default: a temp folder)")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--_write", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._write:
        _write_checkpoint(args._write[0], args._write[1], Path(args._write[2]))
        return 0
    if args._child:
        _load_child(*args._child)
        return 0
    h, w = (int(v) for v in args.input_size.lower().split("x"))
    rows: dict[str, list[dict]] = {"load": [], "latency": []}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name in filter(None, args.load.split(",")):
            for dtype in args.dtypes.split(","):
                r = measure_load(f"sapiens2-{name}", dtype, Path(tmp))
                rows["load"].append(r)
                print(f"load {r['model']} ({dtype}): {r['seconds']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                      file=sys.stderr, flush=True)
    for name in filter(None, args.latency.split(",")):
        r = measure_latency(f"sapiens2-{name}", (h, w), args.runs, args.threads)
        rows["latency"].append(r)
        print(f"eager {r['model']}: median {r['median_s']:.2f} s", file=sys.stderr, flush=True)
    print("| model | file dtype | file MiB | load s | peak RSS MiB | RSS before load MiB | "
          "fp32 weights MiB | (peak - before) / weights |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows["load"]:
        grown = (r["peak_rss_mib"] - r["rss_before_mib"]) / r["fp32_weights_mib"]
        print(f"| {r['model']} | {r['file_dtype']} | {r['file_mib']:.0f} | {r['seconds']:.2f} | "
              f"{r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} | {r['fp32_weights_mib']:.0f} | {grown:.2f} |")
    print("\n| model | input | threads | median s | mean s | min s | ratio to first |")
    print("|---|---|---:|---:|---:|---:|---:|")
    base = rows["latency"][0]["median_s"] if rows["latency"] else 1.0
    for r in rows["latency"]:
        print(f"| {r['model']} | {r['input']} | {r['threads']} | {r['median_s']:.2f} | {r['mean_s']:.2f} | "
              f"{r['min_s']:.2f} | {r['median_s'] / base:.2f}x |")
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
