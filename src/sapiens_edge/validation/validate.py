"""`validate()`: the quantized-accuracy gate. Runs an exported artifact and the PyTorch reference
on the same pre-processed inputs, compares raw outputs (tensor metrics) and task results (task
metrics), and checks them against the recipe's thresholds.

Importing this module does not import torch; `validate()` does (it runs the reference).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge import runtime
from sapiens_edge.errors import OptionError, WeightsNotFoundError, option
from sapiens_edge.fileio import refuse_overwrite
from sapiens_edge.manifest import read_manifest, sha256_file
from sapiens_edge.runtime import backends as runtime_backends
from sapiens_edge.runtime.decoded import HEATMAP_STRIDE, decode_raw, is_decoded
from sapiens_edge.runtime.predictor import nchw_shape

from . import metrics as M
from .fit import fit_pieces
from .images import image_sources
from .reference_outputs import LiveReference, StoredReference, reference_bytes, too_big_together
from .report import ValidationReport, report_paths
from .thresholds import THRESHOLD_KEY as _KEY
from .thresholds import aggregate as _aggregate
from .thresholds import make_checks, resolve_thresholds


def load_model(name: str, weights: str | Path | None = None, *, seed: int = 0):
    """The torch reference (``sapiens_edge.loading.load_model``), imported lazily so that this
    module stays importable without torch. Tests monkeypatch this name."""
    from sapiens_edge.loading import load_reference

    return load_reference(name, weights, seed=seed)


def _load_predictor(artifact_dir: str | Path, backend: str | None, **options: Any):
    return runtime.load(artifact_dir, backend=backend, **options)


def validate(artifact_dir: str | Path, *, weights: str | Path | None = None,
             images: str | Path | Sequence[Any] | None = None, backend: str | None = None,
             report: str | Path | None = None, thresholds: dict[str, float | None] | None = None,
             progress: Callable[[str], None] | None = None, flip_test: bool = False, verify: bool = True,
             force: bool = False, reference_first: bool | None = None, **backend_options: Any) -> ValidationReport:
    """Compare the artifact in ``artifact_dir`` with the PyTorch reference and return the report.

    * ``weights``: the checkpoint the artifact was exported from. ``None``: the one recorded in
      the manifest (a random-init export is reproduced with its recorded seed and warns).
    * ``images``: a folder (searched recursively for jpg/jpeg/png/webp/bmp/tif), an image file,
      a list of files/arrays, or ``None`` for the bundled astronaut photo.
    * ``thresholds``: overrides merged over the recipe's (``{"cosine_min": 0.999}``; a value of
      ``None`` drops that check). Keys are ``<metric>_<min|max>``.
    * ``report``: write ``<name>.json`` and ``<name>.md`` there (atomically).
    * ``flip_test``: pose only; off by default (compares single passes, which is stricter and
      half the work).
    * ``verify``: check the artifact files' sha256 against the manifest first (``runtime.load``'s).
    * ``backend`` / ``**backend_options``: passed to ``runtime.load``.
    * ``reference_first``: run the reference on every image first, keep its outputs on disk and free it
      before the artifact opens (peak memory: the larger of the two, not their sum). ``None``: when the
      two would not fit in the memory available together (large models), said in the report's notes.

    The report is FATAL when the artifact's outputs differ from the reference in count, shape or
    dtype, or hold NaN or Inf (nothing is compared then), and when no threshold applies (nothing
    would be checked); otherwise every threshold is a pass/fail check on the mean over the images
    (the worst image is shown beside it), and a task metric a threshold names that was not computed
    is a failing check saying so.

    Args:
        artifact_dir: the artifact folder (from ``export()``).
        weights: the checkpoint the artifact was exported from (default: as recorded).
        images: test images: a folder, a file, a list of files/arrays, or None for the bundled photo.
        backend: runtime backend (default: the manifest target's).
        report: a path; the report is written there as .json and .md.
        force: replace an existing report (else OutputExistsError before any work).
        thresholds: overrides merged over the recipe's thresholds (None values drop a check).
        progress: called with one line per step (default: print to stderr).
        flip_test: pose only: compare flip-tested outputs.
        **backend_options: passed to ``runtime.load`` (provider, threads, compute_units, ...).

    Returns:
        A ``ValidationReport``: ``passed``, the checks with their values and limits, ``fatal`` when the
        outputs could not be compared, ``to_markdown()`` / ``to_json()``.

    Raises:
        OutputExistsError: the report's .json or .md exists and ``force`` is off (before any work).
        ImageError: an unreadable test image or folder (before any model loads).
        WeightsError: the weights cannot be found or do not match the artifact's model.
        ArtifactError: a missing, tampered or unreadable artifact.
        SapiensEdgeError: an unknown backend or option.
    """
    t0 = time.perf_counter()
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if report is not None:  # never overwritten silently; refused before any work
        refuse_overwrite(report_paths(report), force, where=("--report", "report"))
    sources = image_sources(images)  # bad image input fails before any model is loaded

    notes: list[str] = []
    if reference_first is None:
        reference_first = too_big_together(artifact_dir, weights)
    # beside a live reference the artifact has what the reference's weights leave
    reserve = 0 if reference_first else (reference_bytes(artifact_dir, weights) or 0)
    backend_options = fit_pieces(artifact_dir, backend, backend_options, notes, say, reserve=reserve)
    if reference_first:  # the artifact opens after the reference is freed; its files and backend are checked now
        manifest = read_manifest(artifact_dir, verify=verify)
        runtime_backends.check_target(runtime_backends.get_backend(
            backend or runtime_backends.default_backend(manifest)), manifest)
        predictor = None
        notes.append("Reference first: the PyTorch reference ran on every image and was freed before the artifact "
                     "opened (the two do not fit in this machine's memory together).")
    else:
        predictor = _load_predictor(artifact_dir, backend, verify=verify, **backend_options)
        manifest = predictor.manifest
    task = manifest.task
    limits = resolve_thresholds(manifest.recipe, task, thresholds)
    if flip_test and is_decoded(manifest):
        raise OptionError(f"{artifact_dir} decodes keypoints in its graph: the flip test needs raw heatmaps. "
                          f"Validate it without {option('--flip-test', 'flip_test=True')}.")
    if is_decoded(manifest):
        notes.append("Decoded outputs: the reference's raw outputs are decoded by the Python decoders "
                     "(runtime.decoded.decode_raw) and compared with the artifact's; integer class ids are "
                     "checked by the task metrics only.")
    input_hw = (int(manifest.input_hw[0]), int(manifest.input_hw[1]))

    ref_model, weights_info = _reference(manifest, weights, notes)
    from sapiens_edge.memory import release_memory
    from sapiens_edge.predict import torch_model_fn  # torch from here on
    from sapiens_edge.scratch import scratch_dir

    proc = runtime.get_processor(task if task in M.TASK_METRICS else "seg")  # backbone: seg pre-processing
    use_flip = bool(flip_test) and task == "pose"
    say(f"validating {artifact_dir} ({manifest.model}, {manifest.recipe}) against the PyTorch reference on "
        f"{len(sources)} image(s) at {input_hw[0]}x{input_hw[1]}" + (", reference first" if reference_first else ""))

    def inputs():
        for _, src in sources:
            x = np.ascontiguousarray(proc.prepare(runtime.load_image(src), input_hw=input_hw).inputs, np.float32)
            yield x
            if use_flip:
                yield np.ascontiguousarray(x[..., ::-1])

    with scratch_dir(tempfile.gettempdir(), "sapiens-gate") as tmp:
        if reference_first:
            reference = StoredReference(torch_model_fn(ref_model), inputs(), tmp, say)
            del ref_model
            release_memory()
            predictor = _load_predictor(artifact_dir, backend, verify=False, **backend_options)
        else:
            reference = LiveReference(torch_model_fn(ref_model))
        describe = predictor.describe() if hasattr(predictor, "describe") else {}
        backend_name = str(describe.get("backend") or backend or "default")
        names, hashes, per_image, fatal, out_names = _compare(sources, proc, input_hw, reference, predictor,
                                                              manifest, task, use_flip, limits, say)

    if fatal is not None:
        per_image, tensor_agg, task_agg, checks = [], {}, {}, []
    else:
        tensor_agg = {out: {m: _aggregate(m, [p["tensor"][out][m] for p in per_image], strict=True)
                            for m in M.TENSOR_METRICS} for out in out_names if out in per_image[0]["tensor"]}
        # Only metrics every image computed: a named one missing here fails its check (make_checks).
        task_agg = {m: _aggregate(m, [p["task"][m] for p in per_image], strict=False)
                    for m in M.TASK_METRICS.get(task, ()) if all(m in p["task"] for p in per_image)}
        for m, agg in task_agg.items():
            bad = [p["image"] for p in per_image if np.isnan(p["task"][m])]
            if bad and m in {_KEY.match(k)["metric"] for k in limits}:
                notes.append(f"{m} could not be computed on {len(bad)} image(s) ({_names(bad)})"
                             + (": no reference keypoint scores above 0.3 (no confident person)."
                                if task == "pose" else ": no valid pixels.")
                             + (" It fails the check." if np.isnan(agg["mean"]) else " They are left out."))
        checks = make_checks(limits, tensor_agg, task_agg)
        if not checks:  # a gate that checks nothing must not pass
            fatal = ("No metric was checked: no threshold applies to this artifact (the recipe names none for "
                     f"{task!r} or the overrides dropped them all). Give at least one threshold.")

    result = ValidationReport(
        artifact=str(artifact_dir), model=manifest.model, recipe=manifest.recipe, task=task,
        backend=backend_name, images=names, image_sha256=hashes,
        calibration=dict((getattr(manifest, "export_options", None) or {}).get("calibration") or {}),
        tensor_metrics=tensor_agg, task_metrics=task_agg, checks=checks,
        fatal=fatal, passed=ValidationReport.decide(checks, fatal), seconds=round(time.perf_counter() - t0, 3),
        thresholds=limits, weights=weights_info, backend_info=dict(describe), per_image=per_image, notes=notes,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if report is not None:
        json_path, md_path = result.write(report)
        say(f"wrote {json_path} and {md_path}")
    say(result.summary())
    return result


def _compare(sources: list[tuple[str, Any]], proc: Any, input_hw: tuple[int, int], reference: Any, predictor: Any,
             manifest: Any, task: str, use_flip: bool, limits: dict[str, float], say: Callable[[str], None]):
    """Run the artifact on each image beside the reference's outputs; returns (names, sha256s, per-image
    metrics, the FATAL reason or None, output names)."""
    out_names = [o.name for o in manifest.outputs] if manifest.outputs else []
    decoded = is_decoded(manifest)
    names: list[str] = []
    hashes: list[str] = []
    per_image: list[dict[str, Any]] = []
    fatal: str | None = None
    for i, (name, src) in enumerate(sources, 1):
        names.append(name)
        hashes.append(sha256_file(src) if isinstance(src, Path) else _array_sha256(src))
        prepared = proc.prepare(runtime.load_image(src), input_hw=input_hw)
        x = np.ascontiguousarray(prepared.inputs, dtype=np.float32)
        ref_out, t_ref = reference.run(x)
        if decoded:  # the reference in the artifact's form, by the Python decoders
            ref_out = decode_raw(task, ref_out, manifest.outputs[0].dtype)
        ts = time.perf_counter()
        cand_out = [np.asarray(o) for o in predictor.run(x)]
        t_cand = time.perf_counter() - ts
        fatal = structure_mismatch(ref_out, cand_out, manifest) or non_finite(cand_out, out_names)
        ref_flip = cand_flip = None
        if fatal is None and use_flip:
            xf = np.ascontiguousarray(x[..., ::-1])
            ref_flip, cand_flip = reference.run(xf)[0], [np.asarray(o) for o in predictor.run(xf)]
            fatal = (structure_mismatch(ref_flip, cand_flip, manifest, "flipped input: ")
                     or non_finite(cand_flip, out_names, "flipped input: "))
        if fatal is not None:
            say(f"[{i}/{len(sources)}] {Path(name).name}: FATAL: {fatal}")
            break
        if not out_names or len(out_names) != len(ref_out):
            out_names = [f"output{k}" for k in range(len(ref_out))]
        tensor = {out: M.tensor_metrics(r, c) for out, r, c in zip(out_names, ref_out, cand_out, strict=True)
                  if np.issubdtype(r.dtype, np.floating)}  # class ids: the task metrics compare them
        task_m = task_metrics(task, proc, prepared, ref_out, cand_out, ref_flip, cand_flip, decoded=decoded)
        per_image.append({"image": name, "sha256": hashes[-1], "tensor": tensor, "task": task_m,
                          "seconds_reference": round(t_ref, 4), "seconds_artifact": round(t_cand, 4)})
        say(f"[{i}/{len(sources)}] {Path(name).name}: " + ", ".join(_brief(tensor, task_m, limits))
            + f" (reference {t_ref:.2f} s, artifact {t_cand:.2f} s)")

    return names, hashes, per_image, fatal, out_names


# ---------------------------------------------------------------------------- per-image work

def structure_mismatch(ref: Sequence[np.ndarray], cand: Sequence[np.ndarray], manifest: Any,
                       prefix: str = "") -> str | None:
    """Why the artifact's outputs cannot be compared with the reference's (None if they can):
    count, shape or dtype differ, or an output disagrees with the artifact's own manifest."""
    problems = []
    specs = list(getattr(manifest, "outputs", []) or [])
    if len(cand) != len(ref):
        problems.append(f"the artifact returns {len(cand)} output(s), the reference {len(ref)}")
    if specs and len(specs) != len(cand):
        problems.append(f"the artifact returns {len(cand)} output(s) but its manifest declares {len(specs)}")
    for k, (r, c) in enumerate(zip(ref, cand, strict=False)):
        label = f"output {k}" + (f" ({specs[k].name})" if k < len(specs) else "")
        if tuple(c.shape) != tuple(r.shape):
            problems.append(f"{label}: shape {tuple(c.shape)} from the artifact vs {tuple(r.shape)} from the reference")
        if c.dtype != r.dtype:
            problems.append(f"{label}: dtype {c.dtype} from the artifact vs {r.dtype} from the reference")
        if k < len(specs):
            spec = specs[k]
            want = nchw_shape(spec)  # run() gives NCHW whatever the file's layout
            fixed = len(want) == c.ndim and all(not isinstance(d, int) or d <= 0 or d == s
                                                for d, s in zip(want, c.shape, strict=True))
            if not fixed:
                problems.append(f"{label}: shape {tuple(c.shape)} but the manifest declares {want}")
            if spec.dtype and str(c.dtype) != str(spec.dtype):
                problems.append(f"{label}: dtype {c.dtype} but the manifest declares {spec.dtype}")
    return (prefix + "; ".join(problems)) if problems else None


def non_finite(cand: Sequence[np.ndarray], names: Sequence[str], prefix: str = "") -> str | None:
    """Why the artifact's outputs are unusable (None if every value is finite): NaN or Inf in any
    output, named, with how many values. A metric over them would be NaN and only fail; this says why."""
    problems = []
    for k, c in enumerate(cand):
        if not np.issubdtype(c.dtype, np.floating):
            continue
        nan, inf = int(np.isnan(c).sum()), int(np.isinf(c).sum())
        if nan or inf:
            label = f"output {k}" + (f" ({names[k]})" if k < len(names) else "")
            problems.append(f"{label}: {nan + inf} of {c.size} values are not finite ({nan} NaN, {inf} Inf)")
    return (prefix + "; ".join(problems)) if problems else None


def task_metrics(task: str, proc: Any, prepared: Any, ref_out: list[np.ndarray], cand_out: list[np.ndarray],
                 ref_flip: list[np.ndarray] | None = None,
                 cand_flip: list[np.ndarray] | None = None, decoded: bool = False) -> dict[str, float]:
    """Finish both output sets (raw, or both `decoded`) through the same task post-processing and compare
    the results."""
    if task not in M.TASK_METRICS:
        return {}
    ref = proc.finish(ref_out, prepared, ref_flip, decoded=decoded)
    cand = proc.finish(cand_out, prepared, cand_flip, decoded=decoded)
    if task == "pose":
        input_h, input_w = prepared.context.input_hw
        hm_h, hm_w = (input_h // HEATMAP_STRIDE, input_w // HEATMAP_STRIDE) if decoded else ref_out[0].shape[2:]
        scales = np.asarray(prepared.context.scales, dtype=np.float64).reshape(-1, 2)  # (P, 2): s_w, s_h
        units = np.stack([(hm_w - 1) / scales[:, 0], (hm_h - 1) / scales[:, 1]], axis=1)  # heatmap px per image px
        return M.pose_metrics(ref.keypoints, cand.keypoints, ref.scores, units_per_px=units)
    if task == "seg":
        return M.seg_metrics(ref.labels, cand.labels)
    if task == "normal":
        return M.normal_metrics(ref.normals, cand.normals)
    return M.pointmap_metrics(ref.pointmap, cand.pointmap, ref.scale, cand.scale)


def _brief(tensor: dict[str, dict[str, float]], task_m: dict[str, float], limits: dict[str, float]) -> list[str]:
    checked = {_KEY.match(k)["metric"] for k in limits}
    parts = [f"{m}[{out}] {ms[m]:.6g}" for out, ms in tensor.items() for m in ("cosine", "rel_l2")]
    parts += [f"{m} {v:.6g}" for m, v in task_m.items() if m in checked]
    return parts


def _array_sha256(image: Any) -> str:
    """sha256 of an in-memory image (its shape and dtype, then its bytes)."""
    import hashlib

    a = np.ascontiguousarray(image)
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


def _names(items: list[str], n: int = 3) -> str:
    return ", ".join(Path(i).name for i in items[:n]) + (" ..." if len(items) > n else "")


def _reference(manifest: Any, weights: str | Path | None, notes: list[str]):
    """Load the torch reference and describe its weights; warn when they may not be the export's."""
    src = dict(getattr(manifest, "source_weights", None) or {})
    recorded_sha = src.get("sha256")
    if weights is None and (src.get("random") or not src.get("path")):
        seed = int(src.get("seed") or 0)
        model = load_model(manifest.model, None, seed=seed)  # warns RandomWeightsWarning
        notes.append(f"Reference and artifact use a seeded random initialisation (seed {seed}): the numbers "
                     f"test the export's numerics only; validate exports of real weights before shipping.")
        return model, {"path": None, "sha256": None, "random": True, "seed": seed, "artifact_sha256": recorded_sha,
                       "matches_artifact": None}
    if weights is None:
        weights = src["path"]
        notes.append(f"Reference weights: {weights}, as recorded in the artifact's manifest.")
    try:
        model = load_model(manifest.model, weights)
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(f"{exc} The artifact was exported from {weights}; pass the same checkpoint "
                                   f"with {option('--weights', 'weights=...')}.") from exc
    stored = next((p.dtype for p in model.parameters()), None)
    if stored is not None and str(stored) != "torch.float32":
        notes.append(f"Reference weights stored as {str(stored)[6:]}, as in the checkpoint, and computed in fp32: "
                     f"the numbers of their fp32 copy in half the memory.")
    path = getattr(model, "sapiens_weights_path", None) or (weights if Path(str(weights)).is_file() else None)
    sha = sha256_file(path) if path is not None and Path(path).is_file() else None
    match = None
    if src.get("random"):
        _warn(notes, f"The artifact was exported from a random initialisation but the reference uses {weights}: "
                     f"the comparison is meaningless.")
    elif recorded_sha is None or sha is None:
        _warn(notes, "Cannot confirm that the reference weights are the ones the artifact was exported from "
                     "(no sha256 " + ("in the manifest" if recorded_sha is None else f"for {weights}") + ").")
    else:
        match = sha == recorded_sha
        if not match:
            _warn(notes, f"The reference weights {weights} (sha256 {sha[:16]}...) differ from the file the artifact "
                         f"was exported from ({src.get('path')}, sha256 {recorded_sha[:16]}...). Fine for the same "
                         f"weights in another dtype/file; otherwise expect failures.")
    return model, {"path": str(weights), "sha256": sha, "random": False, "artifact_sha256": recorded_sha,
                   "matches_artifact": match}


def _warn(notes: list[str], msg: str) -> None:
    notes.append(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)
