"""The main job end to end: export -> validate -> run -> benchmark, on built-in defaults.

    sapiens-edge pipeline --output pipeline-output            # 0.1b seg, onnx-fp32 + onnx-int8, 1024x768

Without --weights it writes stand-in weights first (seeded random, classifier made confident by
`models.synthetic`, so the task metrics mean something) and says so. Everything lands in OUTPUT:
the weights, one artifact folder per recipe, a validation report (JSON + Markdown) per recipe,
the artifacts' overlays on the bundled photo, and `summary.md` with the side-by-side table.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputExistsError
from .fileio import atomic_write_bytes, atomic_write_json
from .metadata import bundled_photo

DEFAULT_MODEL = "sapiens2-0.1b-seg"
DEFAULT_RECIPES = ("onnx-fp32", "onnx-int8")


def write_standin_weights(model_name: str, path: Path, input_hw: tuple[int, int], seed: int = 0) -> None:
    """Seeded random weights, attention switched on (LayerScale 1) and a confident classifier
    (seg/pose), saved as .safetensors."""
    import torch
    from safetensors.torch import save_file

    from . import runtime
    from .loading import load_model
    from .models.synthetic import make_confident_, wake_layer_scale_

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(model_name, None, seed=seed)
    task = model.sapiens_info.task
    wake_layer_scale_(model)
    if task in ("seg", "pose"):
        prepared = runtime.get_processor(task).prepare(runtime.load_image(bundled_photo()), input_hw=input_hw)
        make_confident_(model, torch.from_numpy(np.ascontiguousarray(prepared.inputs, np.float32)))
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)


def _median_latency(fn: Callable[[], Any], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _torch_latency(model: Any, x: np.ndarray, runs: int) -> float:
    import torch

    xt = torch.from_numpy(x)
    with torch.inference_mode():
        return _median_latency(lambda: model(xt), runs)


def run_pipeline(output: str | Path, *, model: str = DEFAULT_MODEL, recipes: Sequence[str] = DEFAULT_RECIPES,
                 weights: str | Path | None = None, input_size: tuple[int, int] | None = None,
                 calibration: str | Path | None = None, runs: int = 3, threads: int | None = None,
                 force: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    import torch

    from . import runtime
    from .export.core import export
    from .export.recipes import get_recipe, require_available
    from .loading import load_model
    from .run import run_artifact
    from .runtime.preprocess import check_input_hw
    from .validation import validate
    from .zoo import get_model_info

    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(output)
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out} already exists. Choose another --output or pass --force to replace it.")
    info = get_model_info(model)
    input_hw = tuple(input_size) if input_size else info.input_hw
    check_input_hw(input_hw)
    for name in recipes:  # unknown or unsupported recipes fail before any work
        require_available(get_recipe(name), info, input_hw)
    out.mkdir(parents=True, exist_ok=True)
    # The same thread count for torch and ONNX Runtime (ORT's own default is one per physical core).
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    standin = weights is None
    if standin:
        weights = out / f"{model}-standin.safetensors"
        say(f"[1/4] no --weights: writing stand-in weights {weights} (seeded random, confident classifier; "
            f"pass --weights for real results)")
        write_standin_weights(model, Path(weights), input_hw)
    rows: list[dict[str, Any]] = []
    image = bundled_photo()
    for k, recipe in enumerate(recipes, 1):
        art_dir = out / recipe
        say(f"[2/4] export {k}/{len(recipes)}: {model} -> {recipe}")
        art = export(model, recipe, art_dir, weights=weights, input_size=input_hw, calibration=calibration,
                     force=force, progress=say)
        say(f"[3/4] validate {recipe} against PyTorch fp32")
        report = validate(art_dir, weights=weights, report=out / f"validation-{recipe}.json", progress=say,
                          threads=threads)
        run_artifact(art_dir, [image], out / f"run-{recipe}", threads=threads, force=True, progress=say)
        size = sum((art_dir / f).stat().st_size for f in art.manifest.files if f.startswith("model"))
        rows.append({"config": recipe, "export_s": art.seconds, "file_mib": size / 2**20, "passed": report.passed,
                     "summary": report.summary(), "checks": {c.name: c.value for c in report.checks}})
    say(f"[4/4] benchmark: torch eager fp32 vs {', '.join(recipes)} ({runs} runs each)")
    prepared = runtime.get_processor(info.task).prepare(runtime.load_image(image), input_hw=input_hw)
    x = np.ascontiguousarray(prepared.inputs, np.float32)
    base = _torch_latency(load_model(model, weights), x, runs)
    for row in rows:
        with runtime.load(out / row["config"], threads=threads) as p:
            row["latency_s"] = _median_latency(lambda p=p: p.run(x), runs)
        row["speedup"] = base / row["latency_s"]
    summary = _summary(model, input_hw, standin, weights, base, rows, threads)
    atomic_write_bytes(out / "summary.md", summary.encode("utf-8"))
    result = {"model": model, "input_hw": list(input_hw), "weights": str(weights), "standin_weights": standin,
              "torch_fp32_latency_s": base, "threads": threads, "recipes": rows}
    atomic_write_json(out / "summary.json", result)
    print(summary)
    return result


def _summary(model: str, input_hw: tuple[int, int], standin: bool, weights: Any, base: float,
             rows: list[dict[str, Any]], threads: int | None) -> str:
    lines = [f"# sapiens-edge pipeline: {model} at {input_hw[0]}x{input_hw[1]}", "",
             "Weights: " + ("stand-in (seeded random, confident classifier): the numbers test the export, "
                            "not the model's accuracy." if standin else f"`{weights}`"), "",
             f"Latency: batch 1, {threads} threads, median; torch eager fp32 = {base:.2f} s.", "",
             "| recipe | latency s | vs torch fp32 | model file MiB | export s | validation |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['latency_s']:.2f} | {r['speedup']:.2f}x | {r['file_mib']:.0f} | "
                     f"{r['export_s']:.0f} | {'PASSED' if r['passed'] else 'FAILED'} |")
    lines += ["", "Validation details: `validation-<recipe>.md`; overlays: `run-<recipe>/`."]
    return "\n".join(lines) + "\n"
