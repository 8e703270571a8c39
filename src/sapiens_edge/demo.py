"""The README's first command: the reference pipeline end to end on the bundled photo.

    python -m sapiens_edge.demo --output demo-output [--size 0.1b] [--tasks pose,seg,normal,pointmap]

Without --weights-dir the models are randomly initialised (Meta released no 0.1b task heads),
so the overlays show the pipeline working, not meaningful predictions; every output says so.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from .errors import RandomWeightsWarning, SapiensEdgeError

ASTRONAUT = Path(__file__).resolve().parent / "assets" / "astronaut.jpg"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="demo-output")
    p.add_argument("--size", default="0.1b")
    p.add_argument("--tasks", default="pose,seg,normal,pointmap")
    p.add_argument("--weights-dir", help="folder with sapiens2_<size>_<task>.safetensors files")
    p.add_argument("--image", default=str(ASTRONAUT))
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)

    import torch

    from .predict import predict

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    try:
        for task in args.tasks.split(","):
            name = f"sapiens2-{args.size}-{task}"
            weights = None
            if args.weights_dir:
                weights = Path(args.weights_dir) / f"sapiens2_{args.size}_{task}.safetensors"
            print(f"== {name} ({'random weights' if weights is None else weights})", file=sys.stderr)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RandomWeightsWarning)  # reported once per row instead
                rec = predict(name, [args.image], Path(args.output) / task, weights=weights, force=args.force)[0]
            rows.append((name, f"{rec.seconds:.1f}", f"{time.perf_counter() - t0:.1f}", str(rec.overlay_path)))
    except SapiensEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n| model | inference s | total s (load included) | overlay |\n|---|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if not args.weights_dir:
        print("\nRandom weights: the overlays show the pipeline, not real predictions. Pass --weights-dir "
              "with official checkpoints (0.4b and up) for meaningful results.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
