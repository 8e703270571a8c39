"""`export()`: zoo model + recipe -> artifact folder (model file(s), manifest.json, README.md).

Capture and lowering belong to the target module (one module per target); this module does
everything targets share: model loading, checks, calibration data, provenance, atomic writing.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sapiens_edge import __version__, metadata
from sapiens_edge.errors import RecipeError, SapiensEdgeError
from sapiens_edge.manifest import Manifest, sha256_file
from sapiens_edge.memory import process_rss, require_memory
from sapiens_edge.runtime.preprocess import check_input_hw
from sapiens_edge.signals import unwinds_on_terminate

from .artifact import check_disk, check_output, write_artifact
from .calibration import calibration_data
from .recipes import Recipe, get_recipe, require_available
from .target_table import TARGETS, check_request
from .targets import get_target


@dataclass
class Artifact:
    path: Path
    manifest: Manifest
    seconds: float


@unwinds_on_terminate  # SIGTERM/SIGHUP clean up like Ctrl-C
def export(model, recipe: str | Recipe, output: str | Path, *, weights: str | Path | None = None,
           input_size: tuple[int, int] | None = None, calibration: str | Path | None = None,
           calibration_limit: int | None = None, calibration_method: str | None = None,
           keep_float: tuple[str, ...] = (), target_options: dict[str, str] | None = None, force: bool = False,
           decode: bool = False, progress: Callable[[str], None] | None = None) -> Artifact:
    """Export `model` with `recipe` into the artifact folder `output` (model file(s), manifest.json, README.md).

    Everything that can fail on user input (names, sizes, the recipe against its target's declaration in
    `export.target_table`, calibration method, keep-float, target options, calibration images) is checked
    before the model's weights load.

    Args:
        model: a zoo name (e.g. "sapiens2-0.4b-seg") or a module returned by `sapiens_edge.load_model()`.
        recipe: a recipe name from `RECIPES` (`sapiens-edge recipes`) or a `Recipe`.
        output: the artifact folder to create (written atomically).
        weights: checkpoint for a zoo name: a local .safetensors or "hf://ORG/REPO[/FILE]".
        input_size: (H, W), multiples of 16 (default: the model's).
        calibration: folder of photos for recipes that calibrate (default: the built-in set).
        calibration_limit: use at most this many calibration images.
        calibration_method: one of the recipe's `calibration_methods` (default: its first).
        keep_float: parameter-name substrings whose layers stay unquantized (calibrating recipes only).
        target_options: the target's options (`--target-option`), e.g. {"input": "tensor"} for Core ML.
        force: replace an existing `output` folder.
        decode: put the task's decoding into the graph (`export.decode`): seg class ids, pose keypoints and
            scores, unit normals instead of logits, heatmaps and raw normals (pointmap: refused).
        progress: called with one line per step (default: print to stderr).

    Returns:
        The `Artifact`: its path, manifest and the seconds the export took.

    Raises:
        RecipeError: unknown recipe, or a request its target does not take (the message lists what it does).
        OptionError: `decode` for a task without decoded outputs (pointmap, backbone).
        UnknownModelError, InputSizeError, CalibrationError, WeightsError: bad model name, input size,
            calibration folder or weights.
        OutputExistsError: `output` exists and `force` is False.
        MissingDependencyError: the recipe's Python packages are not installed (names the pip extra).
    """
    progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
    output = Path(output)
    check_output(output, force)  # fail before minutes of work
    # Everything that can fail on user input is checked before the (slow) model load.
    from sapiens_edge.zoo import get_model_info

    info = get_model_info(model) if isinstance(model, str) else getattr(model, "sapiens_info", None)
    if info is None:
        raise SapiensEdgeError("export() needs a zoo name or a model returned by sapiens_edge.load_model().")
    input_hw = tuple(input_size) if input_size is not None else info.input_hw
    check_input_hw(input_hw)
    require_available(rec, info, input_hw)
    check_disk(output, int(info.params * rec.weights.bytes_per_weight), f"{rec.name} of {info.name}")
    target_options = check_request(rec, calibration_method, tuple(keep_float), target_options, decode)
    if decode:
        from .decode import check_decode

        check_decode(info.task)
    calib = None
    if rec.needs_calibration:
        calib = calibration_data(info.task, input_hw, calibration, calibration_limit)
        calib.method, calib.keep_float = calibration_method, tuple(keep_float)
        note = f" ({calib.note})" if calib.note else ""
        progress(f"calibration: {calib.count} image(s) from {calib.source}{note}")
    elif calibration is not None:
        progress(f"note: {rec.name} needs no calibration; ignoring {calibration}")
    target = get_target(rec.target)
    if isinstance(model, str):
        from sapiens_edge.loading import load_model

        dtype = target.load_dtype(rec, info.params, **target_options) if hasattr(target, "load_dtype") else None
        weight_bytes = int(info.params * (dtype.itemsize if dtype else 4) * 1.1)
        require_memory(f"loading {info.name}", process_rss() + weight_bytes, "use a smaller model")
        model = load_model(model, weights, **({"dtype": dtype} if dtype else {}))
        # Ours alone: a target may free its weights once it no longer needs them (memory.drop_weights).
        model.sapiens_disposable = True
    names = [n for n, _ in model.named_parameters()]
    unmatched = [k for k in keep_float if not any(k in n for n in names)]
    if unmatched:  # a typo would otherwise export a fully quantized model without a word
        raise RecipeError(f"--keep-float {', '.join(map(repr, unmatched))} matches no parameter of {info.name}; "
                          f"patterns are substrings of parameter names, e.g. 'decode_head.' or 'blocks.11.ffn.'.")
    source = _source_weights(model, progress)
    if decode:  # one wrapper for every target: the decoding is part of what gets captured
        from .decode import DecodedModel

        model = DecodedModel(model, TARGETS[rec.target].decode_labels)

    def build(workdir: Path) -> Manifest:
        progress(f"exporting {info.name} with {rec.name} at {input_hw[0]}x{input_hw[1]} ...")
        lowered = target.lower(model, rec, input_hw, workdir, calib, progress, **target_options)
        pins = target.app_runtime(workdir, lowered) if hasattr(target, "app_runtime") else None
        return Manifest(
            model=info.name, task=info.task, recipe=rec.name, target=rec.target, precision=rec.precision,
            input_hw=list(input_hw), files={}, model_file=lowered.model_file, inputs=lowered.inputs,
            outputs=lowered.outputs,
            normalization={"mean_rgb": metadata.MEAN_RGB.tolist(), "std_rgb": metadata.STD_RGB.tolist(),
                           "scale": "0-255", "channel_order": "RGB"},
            source_weights=source,
            tool_versions={"sapiens-edge": __version__, "python": platform.python_version(), **lowered.tool_versions},
            task_metadata=task_metadata(info.task),
            export_options={**lowered.options, **({"decoded": True} if decode else {}),
                            **({"app_runtime": pins} if pins else {}),
                            **({"calibration": {"source": calib.source, "count": calib.count,
                                                                 "note": calib.note}} if calib else {})},
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

    manifest = write_artifact(output, build, force=force, progress=progress)
    seconds = time.perf_counter() - t0
    progress(f"wrote {output} ({manifest.model_file}, {len(manifest.files)} files) in {seconds:.1f} s")
    return Artifact(output, manifest, seconds)



def _source_weights(model, progress: Callable[[str], None]) -> dict:
    path = getattr(model, "sapiens_weights_path", None)
    if path is None:
        return {"path": None, "sha256": None, "random": True, "seed": getattr(model, "sapiens_seed", 0)}
    progress(f"hashing source weights {path} ...")
    return {"path": getattr(model, "sapiens_weights", path), "sha256": sha256_file(path), "random": False}


def task_metadata(task: str) -> dict:
    """What the task's post-processing needs, so an artifact folder is self-contained."""
    pre = metadata.preprocessing()
    if task == "pose":
        k = metadata.raw()["keypoints308"]
        return {"keypoint_names": k["names"], "flip_indices": k["flip_indices"], "skeleton": k["skeleton_links"],
                "skeleton_colors": k["skeleton_link_colors_rgb"], "keypoint_colors": k["colors_rgb"],
                "heatmap_stride": 4, "codec": "UDP + DARK", **{f"pose_{k2}": v for k2, v in pre["pose"].items()}}
    if task == "seg":
        s = metadata.raw()["seg29"]
        return {"class_names": s["names"], "palette_rgb": s["palette_rgb"], "background_id": s["background_id"]}
    if task == "pointmap":
        return {"canonical_focal_length": pre["pointmap"]["canonical_focal_length"], "units": "metres (XYZ / scale)"}
    if task == "normal":
        return {"frame": "camera", "channels": ["x", "y", "z"]}
    return {}
