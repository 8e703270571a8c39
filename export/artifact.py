"""Artifact folders: built in a temporary folder beside the target, hashed, then renamed into
place, so an interrupted export leaves nothing partial and nothing is replaced without force."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sapiens_edge.errors import DiskFullError, OutputExistsError, option
from sapiens_edge.fileio import atomic_write_bytes, atomic_write_json, disk_full_as_error, free_bytes
from sapiens_edge.manifest import MANIFEST_NAME, Manifest, sha256_file
from sapiens_edge.scratch import make_scratch_dir, sweep_stale


def check_output(output: Path, force: bool) -> None:
    if output.exists() and not force:
        raise OutputExistsError(f"{output} already exists. Choose another {option('--output', 'output')} or pass "
                                f"{option('--force', 'force=True')} to replace it.")
    if output.exists() and not (output / MANIFEST_NAME).is_file() and any(output.iterdir()):
        raise OutputExistsError(
            f"{output} exists and is not a sapiens-edge artifact; refusing to replace it even with "
            f"{option('--force', 'force=True')}.")


def check_disk(output: Path, weight_bytes: int, what: str) -> None:
    """Refuse, before any work, an export whose weights alone cannot fit beside `output`: a lower bound
    (the export writes more), so nothing that could succeed is refused."""
    free = free_bytes(output.parent)
    if free is not None and free < weight_bytes:
        raise DiskFullError(
            f"{what} writes at least {weight_bytes / 2**30:.2f} GiB of weights into {output.parent}, and "
            f"{free / 2**30:.2f} GiB is free there. Free space there, or choose {option('--output', 'an output')} "
            f"on another disk.", path=str(output.parent), free=free)


def write_artifact(output: str | Path, build: Callable[[Path], Manifest], *, force: bool = False,
                   progress: Callable[[str], None] = lambda _: None) -> Manifest:
    """`build(workdir)` writes the model files into `workdir` and returns the manifest (files empty);
    this fills in every file's sha256, writes manifest.json + README.md, and moves the folder in.
    Scratch folders that a killed run left beside `output` are removed first (or reported, when
    their process still runs)."""
    output = Path(output)
    check_output(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(output.parent, progress)
    # A full disk, however the converter reports it, becomes a DiskFullError about `output`'s folder.
    with disk_full_as_error(output.parent, f"choose {option('--output', 'an output')} on another disk"):
        work = make_scratch_dir(output.parent, f".{output.name}.tmp")
        try:
            manifest = build(work)
            atomic_write_bytes(work / "README.md", render_readme(manifest, work, output.name).encode("utf-8"))
            manifest.files = {str(p.relative_to(work)): sha256_file(p) for p in sorted(work.rglob("*"))
                              if p.is_file() and p.name != MANIFEST_NAME}
            atomic_write_json(work / MANIFEST_NAME, manifest.to_json())
            _swap_into_place(work, output, force)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return manifest


def _swap_into_place(work: Path, output: Path, force: bool) -> None:
    if not output.exists():
        os.rename(work, output)
        return
    check_output(output, force)
    old = make_scratch_dir(output.parent, f".{output.name}.old")
    os.rename(output, old / output.name)
    try:
        os.rename(work, output)
    except BaseException:
        os.rename(old / output.name, output)  # put the previous artifact back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


# pip extra that runs each target's artifacts, and what an app does with the model file.
RUNTIME_EXTRA = {"onnx": "onnx-runtime", "executorch": "executorch", "tflite": "tflite-runtime",
                 "openvino": "openvino-runtime"}
IN_AN_APP = {
    "executorch": """
## In an app
Android (`org.pytorch.executorch`): `Module.load(path)`, then
`module.forward(EValue.from(Tensor.fromBlob(pixels, longArrayOf(1, 3, H, W))))` with `pixels` the
normalized float32 image in NCHW order (planar RGB); outputs come back in the order listed above.
iOS: the same program through ExecuTorch's Swift/Obj-C `Module`. Models with the Core ML delegate
(`executorch-coreml-*`) run on Apple devices only.
""",
    "tflite": """
## In an app
The model is channels-last: input `image` is the normalized float32 image as (1, H, W, 3) (HWC
pixels, as Android bitmaps and camera frames come), outputs are (1, H', W', C) where the layout says
NHWC. Android: LiteRT `Interpreter` / `CompiledModel` with the XNNPACK delegate (on by default),
signature `serving_default`. Raspberry Pi / Linux: `pip install 'sapiens-edge[tflite-runtime]'`
(ai-edge-litert; no torch), or `tflite_runtime.interpreter.Interpreter` where a device has it.
`sapiens-edge run` and `runtime.load` take NCHW like every artifact and transpose for you.
""",
    "openvino": """
## In an app
OpenVINO Runtime (C++, Python, or its C API): `core.compile_model("model.xml", "CPU", {"INFERENCE_PRECISION_HINT":
...})` with the hint in `manifest.json` (`export_options.inference_precision`: "f32", or "reduced": bf16 on CPUs
with bf16 arithmetic, f16 on GPU/NPU); `model.bin` must sit next to `model.xml`. Input `image` NCHW float32.
""",
}


def render_readme(m: Manifest, folder: Path, name: str) -> str:
    def spec(t) -> str:  # a layout names image axes: 4-D tensors only
        return f"`{t.name}` {t.dtype} {list(t.shape)} {t.layout if len(t.shape) == 4 else ''}".rstrip()

    sizes = "\n".join(f"| `{p.relative_to(folder)}` | {p.stat().st_size / 2**20:,.1f} MiB |"
                      for p in sorted(folder.rglob("*")) if p.is_file())
    weights = "random initialisation (meaningless outputs)" if m.source_weights.get("random") else (
        f"`{m.source_weights.get('path')}` (sha256 {str(m.source_weights.get('sha256'))[:16]}...)")
    h, w = m.input_hw
    extra = RUNTIME_EXTRA.get(m.target, m.target)
    torch_free = m.target in ("onnx", "tflite", "openvino")
    note = "       # numpy + Pillow + the runtime; no torch" if torch_free else "  # brings torch"
    pins = (m.export_options or {}).get("app_runtime") or {}
    app = f"\n## App-side runtime to pin\n{pins['pin']}\n" if pins.get("pin") else ""
    decoded = ("\nDecoded outputs (`--decode`): the task's decoding runs in the graph (docs/decoded-outputs.md); "
               "pose artifacts take no flip test.\n") if (m.export_options or {}).get("decoded") else ""
    return f"""# {m.model} — {m.recipe}

Sapiens2 **{m.task}** model exported by sapiens-edge ({m.target}, {m.precision}).
Source weights: {weights}.

## Input
{chr(10).join('- ' + spec(t) for t in m.inputs)}: an RGB image resized/padded to {h}×{w} as the task's
pre-processing does, then normalized per channel on the 0–255 scale:
`(x - mean) / std`, mean = {m.normalization.get('mean_rgb')}, std = {m.normalization.get('std_rgb')}.

## Outputs
{chr(10).join('- ' + spec(t) for t in m.outputs)}
{decoded}{app}
## Run it
```bash
pip install 'sapiens-edge[{extra}]'{note}
sapiens-edge run {name} photo.jpg --output out/
```
```python
from sapiens_edge import runtime
predictor = runtime.load("{name}")        # verifies the sha256 of every file and of the manifest
result = predictor.predict("photo.jpg")         # pre-processing, inference, post-processing
result.overlay(runtime.load_image("photo.jpg")).save("overlay.png")
```
`manifest.json` holds everything else: shapes, normalization, task metadata (keypoint names,
flip table, classes, palette), tool versions, the sha256 of each file and its own (`manifest_sha256`):
edit it and the artifact is refused; re-export instead.
{IN_AN_APP.get(m.target, "")}
## Files
| file | size |
|---|---:|
{sizes}
"""
