"""Task registry: one prepare/finish interface per task, shared by every backend.

A backend only supplies ``model_fn(x) -> list[np.ndarray]`` (raw network outputs for a float32
(N, 3, H, W) batch); pre- and post-processing live here, so the torch reference pipeline and the
exported runtimes (ONNX, ...) produce comparable results by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sapiens_edge import metadata
from sapiens_edge.errors import OptionError, SapiensEdgeError

from .decoded import HEATMAP_STRIDE, decoded_normals, decoded_pose, decoded_seg_labels
from .image import ImageSource, load_image
from .normal import postprocess_normal
from .pointmap import focal_length, postprocess_pointmap
from .pose import decode_udp_dark, heatmap_to_image, merge_flip
from .preprocess import check_input_hw, preprocess_dense, preprocess_pose, preprocess_seg
from .results import NormalResult, PointmapResult, PoseResult, SegResult, TaskResult
from .seg import class_fractions, seg_labels

ModelFn = Callable[[np.ndarray], Sequence[np.ndarray]]


@dataclass
class Prepared:
    inputs: np.ndarray  # (N, 3, H, W) float32, normalized
    context: Any  # whatever finish() needs (original size, boxes/centres/scales, pad)


@dataclass(frozen=True)
class PoseContext:
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    centers: np.ndarray  # (N, 2)
    scales: np.ndarray  # (N, 2)
    boxes: np.ndarray  # (N, 4)


@dataclass(frozen=True)
class DenseContext:
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom (normal/pointmap)


class TaskProcessor(Protocol):
    task: str
    uses_flip_test: bool

    def prepare(self, image: np.ndarray, boxes: Any = None,
                input_hw: tuple[int, int] = metadata.INPUT_HW) -> Prepared: ...

    def finish(self, outputs: Sequence[np.ndarray], prepared: Prepared,
               flipped_outputs: Sequence[np.ndarray] | None = None, *, decoded: bool = False) -> TaskResult:
        """Raw outputs (or, `decoded`, the outputs of an artifact exported with decoded outputs:
        runtime.decoded) -> the task's result."""


def _output(outputs: Sequence[np.ndarray], i: int, task: str, ndim: int, n: int,
            dtype: Any = np.float32) -> np.ndarray:
    """Fetch output ``i`` as `dtype` and check its rank and batch size (backend bugs show here)."""
    if len(outputs) <= i:
        raise SapiensEdgeError(f"The {task} model returned {len(outputs)} output(s); expected at least {i + 1}.")
    a = np.asarray(outputs[i], dtype=dtype)
    if a.ndim != ndim or a.shape[0] != n:
        raise SapiensEdgeError(f"The {task} model's output {i} has shape {a.shape}; expected {ndim} "
                               f"dimensions with batch size {n}.")
    return a


def _no_boxes(task: str, boxes: Any) -> None:
    if boxes is not None and len(boxes) > 0:
        raise SapiensEdgeError(f"Person boxes only apply to the pose task, not to '{task}'.")


class PoseProcessor:
    task = "pose"
    uses_flip_test = True

    def prepare(self, image: np.ndarray, boxes: Any = None,
                input_hw: tuple[int, int] = metadata.INPUT_HW) -> Prepared:
        batch = preprocess_pose(image, boxes, input_hw)
        ctx = PoseContext(image.shape[:2], check_input_hw(input_hw), batch.centers, batch.scales, batch.boxes)
        return Prepared(batch.inputs, ctx)

    def finish(self, outputs: Sequence[np.ndarray], prepared: Prepared,
               flipped_outputs: Sequence[np.ndarray] | None = None, *, decoded: bool = False) -> PoseResult:
        ctx: PoseContext = prepared.context
        n = len(ctx.boxes)
        if decoded:  # keypoints in heatmap pixels + scores; no flip test (run_task refuses it)
            coords = _output(outputs, 0, self.task, 3, n)
            hm_hw = (ctx.input_hw[0] // HEATMAP_STRIDE, ctx.input_hw[1] // HEATMAP_STRIDE)
            return PoseResult(self.task, ctx.image_hw, ctx.input_hw, keypoints=decoded_pose(coords, ctx, hm_hw),
                              scores=_output(outputs, 1, self.task, 2, n), boxes=ctx.boxes, flip_test=False)
        heatmaps = _output(outputs, 0, self.task, 4, n)
        if flipped_outputs is not None:
            flip = metadata.keypoints().flip_indices
            flipped = _output(flipped_outputs, 0, self.task, 4, n)
            if heatmaps.shape[1] != len(flip) or flipped.shape != heatmaps.shape:
                raise SapiensEdgeError(f"Flip test needs two heatmap batches of {len(flip)} channels; got "
                                       f"{heatmaps.shape} and {flipped.shape}.")
            heatmaps = merge_flip(heatmaps, flipped, flip)
        k, hm_hw = heatmaps.shape[1], heatmaps.shape[2:]
        keypoints = np.empty((n, k, 2), dtype=np.float32)
        scores = np.empty((n, k), dtype=np.float32)
        for i in range(n):
            coords, scores[i] = decode_udp_dark(heatmaps[i])
            keypoints[i] = heatmap_to_image(coords, ctx.centers[i], ctx.scales[i], hm_hw, ctx.input_hw)
        return PoseResult(self.task, ctx.image_hw, ctx.input_hw, keypoints=keypoints, scores=scores,
                          boxes=ctx.boxes, flip_test=flipped_outputs is not None)


class SegProcessor:
    task = "seg"
    uses_flip_test = False

    def prepare(self, image: np.ndarray, boxes: Any = None,
                input_hw: tuple[int, int] = metadata.INPUT_HW) -> Prepared:
        _no_boxes(self.task, boxes)
        return Prepared(preprocess_seg(image, input_hw), DenseContext(image.shape[:2], check_input_hw(input_hw)))

    def finish(self, outputs: Sequence[np.ndarray], prepared: Prepared,
               flipped_outputs: Sequence[np.ndarray] | None = None, *, decoded: bool = False) -> SegResult:
        ctx: DenseContext = prepared.context
        if decoded:  # class ids at the model's resolution, to the image by nearest neighbour
            ids = _output(outputs, 0, self.task, 3, 1, dtype=None)[0]
            labels = decoded_seg_labels(ids, ctx.image_hw).astype(np.uint8)
            return SegResult(self.task, ctx.image_hw, ctx.input_hw, labels=labels,
                             fractions=class_fractions(labels, len(metadata.seg().names)))
        logits = _output(outputs, 0, self.task, 4, 1)[0]
        labels = seg_labels(logits, ctx.image_hw)
        return SegResult(self.task, ctx.image_hw, ctx.input_hw, labels=labels,
                         fractions=class_fractions(labels, logits.shape[0]))


class _DenseProcessor:
    task = ""
    uses_flip_test = False

    def prepare(self, image: np.ndarray, boxes: Any = None,
                input_hw: tuple[int, int] = metadata.INPUT_HW) -> Prepared:
        _no_boxes(self.task, boxes)
        inputs, pad = preprocess_dense(image, input_hw)
        return Prepared(inputs, DenseContext(image.shape[:2], check_input_hw(input_hw), pad))


class NormalProcessor(_DenseProcessor):
    task = "normal"

    def finish(self, outputs: Sequence[np.ndarray], prepared: Prepared,
               flipped_outputs: Sequence[np.ndarray] | None = None, *, decoded: bool = False) -> NormalResult:
        ctx: DenseContext = prepared.context
        out = _output(outputs, 0, self.task, 4, 1)[0]
        normals = decoded_normals(out, ctx.pad, ctx.image_hw) if decoded else postprocess_normal(out, ctx.pad,
                                                                                                  ctx.image_hw)
        return NormalResult(self.task, ctx.image_hw, ctx.input_hw, normals=normals)


class PointmapProcessor(_DenseProcessor):
    """The scale branch (Flatten -> Linear) ties a pointmap model to the input size it was built
    for (1024x768 for the released ones, spec 8.10); the caller passes that size as input_hw."""

    task = "pointmap"

    def finish(self, outputs: Sequence[np.ndarray], prepared: Prepared,
               flipped_outputs: Sequence[np.ndarray] | None = None, *, decoded: bool = False) -> PointmapResult:
        if decoded:
            raise SapiensEdgeError("Pointmap artifacts have no decoded outputs (export refuses --decode for them).")
        ctx: DenseContext = prepared.context
        raw = _output(outputs, 0, self.task, 4, 1)[0]
        scale = float(_output(outputs, 1, self.task, 2, 1).reshape(-1)[0])
        return PointmapResult(self.task, ctx.image_hw, ctx.input_hw,
                              pointmap=postprocess_pointmap(raw, scale, ctx.pad, ctx.image_hw),
                              scale=scale, focal_length=focal_length(scale))


PROCESSORS: dict[str, TaskProcessor] = {
    p.task: p for p in (PoseProcessor(), SegProcessor(), NormalProcessor(), PointmapProcessor())
}


def get_processor(task: str) -> TaskProcessor:
    """The processor of ``task`` ('pose', 'seg', 'normal', 'pointmap')."""
    try:
        return PROCESSORS[task]
    except (KeyError, TypeError):
        raise SapiensEdgeError(f"Unknown task {task!r}. Known tasks: {', '.join(PROCESSORS)}.") from None


def run_task(model_fn: ModelFn, image: ImageSource, task: str, boxes: Any = None,
             flip_test: bool | None = None, input_hw: tuple[int, int] = metadata.INPUT_HW,
             decoded: bool = False) -> TaskResult:
    """Pre-process ``image``, run ``model_fn`` (and its flipped twin for pose), post-process.

    ``flip_test`` defaults to the processor's choice (on for pose, as upstream); only pose
    supports it, and only with raw outputs. ``decoded``: ``model_fn`` returns decoded outputs
    (runtime.decoded)."""
    proc = get_processor(task)
    if decoded and flip_test:
        raise OptionError("The flip test averages two raw heatmap batches; this artifact decodes keypoints in its "
                          "graph. Leave the flip test off, or export without --decode to use it.")
    use_flip = (proc.uses_flip_test and not decoded) if flip_test is None else bool(flip_test)
    if use_flip and not proc.uses_flip_test:
        raise SapiensEdgeError(f"Flip test is only supported for pose, not for '{task}'.")
    prepared = proc.prepare(load_image(image), boxes, input_hw)
    outputs = list(model_fn(prepared.inputs))
    flipped = None
    if use_flip:
        flipped = list(model_fn(np.ascontiguousarray(prepared.inputs[..., ::-1])))
    return proc.finish(outputs, prepared, flipped, decoded=decoded)
