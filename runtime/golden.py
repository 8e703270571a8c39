"""Golden vectors for app-side kits (android_demo/kit in Kotlin, later Swift): what `sapiens_edge.runtime`
computes on small synthetic inputs, written as `cases.json` + little-endian `.npy` arrays.

    python -m sapiens_edge.runtime.golden --write DIR

For every task: a synthetic frame -> the network input tensor; synthetic raw outputs (pose heatmaps with
sharp Gaussian peaks at known sub-pixel spots, seg logits, normals, pointmaps) -> the decoded result;
outputs in the decoded-output contract (issue 22) -> the result; and the seg and normal overlays. Arrays
are small (about 3 MB in all), so the kits' tests regenerate them in each run instead of checking them in.

The decoded-output contract (what an artifact exported with decoded outputs returns; the manifest's
export_options has "decoded": true):
- seg: `labels` [1, h, w] class ids at the model's output resolution; mapped to the image by nearest
  neighbour on pixel centres, src = floor((dst + 0.5) * in / out);
- pose: `keypoints` [N, K, 2] (x, y) in heatmap pixels, refined as `decode_udp_dark` does, and `scores`
  [N, K]; mapped to the image with each box's `heatmap_to_image` like raw heatmaps (no flip test);
- normal: `normals` [1, 3, h, w] unit vectors; cropped and resized like raw normals, not re-normalized;
- pointmap: unchanged (already dense geometry).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sapiens_edge import metadata
from sapiens_edge.fileio import atomic_write_bytes

from .decoded import decoded_normals, decoded_pose, decoded_seg_labels
from .tasks import get_processor
from .visualize import normal_to_rgb, overlay_seg

FRAME_HW = (37, 53)  # odd sizes: every resize is a real resample, never a copy
POSE_INPUT_HW = (64, 48)
# A box that shrinks (bilinear warp), one that is enlarged (bicubic) and one past the frame's edge.
POSE_BOXES = np.array([[5, 4, 30, 33], [10.5, 2.25, 12.5, 8.75], [30, 20, 60, 45]], dtype=np.float32)
SEG_INPUT_HWS = ((16, 32), (64, 80))  # area (width shrinks) and bicubic (width grows)
DENSE_INPUT_HW = (32, 48)


def synthetic_frame(h: int = FRAME_HW[0], w: int = FRAME_HW[1]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: gradients, a bright square and a ramp texture (edges and flat areas alike)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x * 37 + y * 11) % 256], axis=-1)
    img[h // 4:h // 2, w // 3:w // 2] = (250, 240, 10)
    return img.astype(np.uint8)


def to_argb(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> int32 0xAARRGGBB (opaque), the pixel ints an Android Bitmap gives."""
    p = img.astype(np.uint32)
    return ((0xFF << 24) | (p[..., 0] << 16) | (p[..., 1] << 8) | p[..., 2]).astype(np.uint32).view(np.int32)


def pose_heatmaps(n: int, k: int, hw: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k, h, w) maps, each one sharp Gaussian peak at a known sub-pixel spot, plus the spots (n, k, 2).

    Some maps are all zero (score 0: not refined), some tiny (blurred values below DARK's 1e-3 clip),
    some above 50 (the other clip), some peaks on the border."""
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    spots = np.stack([rng.uniform(0, w - 1, (n, k)), rng.uniform(0, h - 1, (n, k))], axis=-1)
    spots[:, ::17, 0] = 0.2  # left border
    sigma = rng.uniform(0.8, 2.0, (n, k))
    amp = rng.uniform(0.2, 1.0, (n, k))
    amp[:, 5::41] = 0.0005
    amp[:, 7::43] = 80.0
    amp[:, 3::29] = 0.0
    r2 = (xx - spots[..., 0, None, None]) ** 2 + (yy - spots[..., 1, None, None]) ** 2
    maps = amp[..., None, None] * np.exp(-r2 / (2 * sigma[..., None, None] ** 2))
    return maps.astype(np.float32), spots.astype(np.float32)


def smooth_logits(c: int, hw: tuple[int, int], seed: int) -> np.ndarray:
    """(1, c, h, w) logits with class regions (smooth fields, so boundaries are lines, not noise)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.normal(size=(c, 3))
    logits = f[:, 0, None, None] * np.sin(3 * xx + f[:, 1, None, None]) + f[:, 2, None, None] * np.cos(4 * yy)
    return logits[None].astype(np.float32)


# ----------------------------------------------------------------------------- writer
class _Writer:
    def __init__(self, folder: Path):
        self.folder = folder
        self.cases: list[dict[str, Any]] = []

    def array(self, name: str, a: np.ndarray) -> str:
        a = np.ascontiguousarray(a)
        np.save(self.folder / f"{name}.npy", a.astype(a.dtype.newbyteorder("<")))
        return f"{name}.npy"

    def case(self, name: str, task: str, kind: str, inputs: dict[str, np.ndarray], expected: dict[str, np.ndarray],
             **params: Any) -> None:
        self.cases.append({"name": name, "task": task, "kind": kind, **params,
                           "inputs": {k: self.array(f"{name}.in.{k}", v) for k, v in inputs.items()},
                           "expected": {k: self.array(f"{name}.out.{k}", v) for k, v in expected.items()}})


def write(folder: str | Path) -> Path:
    """Write every golden case into `folder` (created); returns the path of its cases.json."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    wr = _Writer(out)
    frame = synthetic_frame()
    image_hw = frame.shape[:2]
    wr.array("frame", to_argb(frame))
    procs = {t: get_processor(t) for t in ("pose", "seg", "normal", "pointmap")}

    # Frame -> input tensor (NCHW), per task and resampling path.
    pose_prep = procs["pose"].prepare(frame, POSE_BOXES, POSE_INPUT_HW)
    ctx = pose_prep.context
    cs = np.concatenate([ctx.centers, ctx.scales], axis=1)
    wr.case("pre_pose", "pose", "preprocess", {"boxes": POSE_BOXES}, {"input": pose_prep.inputs, "center_scale": cs},
            input_hw=list(POSE_INPUT_HW))
    for hw in SEG_INPUT_HWS:
        prep = procs["seg"].prepare(frame, None, hw)
        wr.case(f"pre_seg_{hw[0]}x{hw[1]}", "seg", "preprocess", {}, {"input": prep.inputs}, input_hw=list(hw))
    dense_prep = procs["normal"].prepare(frame, None, DENSE_INPUT_HW)
    pad = dense_prep.context.pad
    wr.case("pre_dense", "normal", "preprocess", {}, {"input": dense_prep.inputs}, input_hw=list(DENSE_INPUT_HW),
            pad=list(pad))

    # Raw outputs -> results.
    k = len(metadata.keypoints().flip_indices)
    hm_hw = (POSE_INPUT_HW[0] // 4, POSE_INPUT_HW[1] // 4)
    heat, _ = pose_heatmaps(len(POSE_BOXES), k, hm_hw, seed=1)
    flipped, _ = pose_heatmaps(len(POSE_BOXES), k, hm_hw, seed=2)
    for flip in (False, True):
        res = procs["pose"].finish([heat], pose_prep, [flipped] if flip else None)
        ins = {"heatmaps": heat, **({"flipped": flipped} if flip else {})}
        wr.case(f"raw_pose{'_flip' if flip else ''}", "pose", "raw", {"boxes": POSE_BOXES, **ins},
                {"keypoints": res.keypoints, "scores": res.scores}, input_hw=list(POSE_INPUT_HW))
    for name, hw in (("up", (12, 16)), ("down", (48, 64))):
        logits = smooth_logits(29, hw, seed=3)
        res = procs["seg"].finish([logits], procs["seg"].prepare(frame, None, (16, 32)))
        wr.case(f"raw_seg_{name}", "seg", "raw", {"logits": logits}, {"labels": res.labels.astype(np.int32)},
                input_hw=[16, 32])
    rng = np.random.default_rng(4)
    normals = rng.normal(size=(1, 3, *DENSE_INPUT_HW)).astype(np.float32)
    res = procs["normal"].finish([normals], dense_prep)
    wr.case("raw_normal", "normal", "raw", {"normals": normals}, {"normals": res.normals},
            input_hw=list(DENSE_INPUT_HW), pad=list(pad))
    points = np.concatenate([rng.normal(size=(1, 2, *DENSE_INPUT_HW)), rng.uniform(1, 5, (1, 1, *DENSE_INPUT_HW))],
                            axis=1).astype(np.float32)
    scale = np.array([[1.7]], dtype=np.float32)
    res = procs["pointmap"].finish([points, scale], procs["pointmap"].prepare(frame, None, DENSE_INPUT_HW))
    wr.case("raw_pointmap", "pointmap", "raw", {"pointmap": points, "scale": scale},
            {"pointmap": res.pointmap, "focal_length": np.array([res.focal_length])},
            input_hw=list(DENSE_INPUT_HW), pad=list(pad))

    # Decoded-contract outputs -> results.
    labels = smooth_logits(29, (16, 32), seed=5)[0].argmax(axis=0).astype(np.int32)
    labels_img = decoded_seg_labels(labels, image_hw).astype(np.int32)
    wr.case("decoded_seg", "seg", "decoded", {"labels": labels[None]}, {"labels": labels_img}, input_hw=[16, 32])
    _, spots = pose_heatmaps(len(POSE_BOXES), k, hm_hw, seed=6)
    scores = np.random.default_rng(7).uniform(0, 1, spots.shape[:2]).astype(np.float32)
    wr.case("decoded_pose", "pose", "decoded", {"boxes": POSE_BOXES, "keypoints": spots, "scores": scores},
            {"keypoints": decoded_pose(spots, ctx, hm_hw), "scores": scores}, input_hw=list(POSE_INPUT_HW))
    unit = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), np.float32(1e-8))
    wr.case("decoded_normal", "normal", "decoded", {"normals": unit.astype(np.float32)},
            {"normals": decoded_normals(unit[0], pad, image_hw)}, input_hw=list(DENSE_INPUT_HW), pad=list(pad))

    # Overlays (visualize.py): the seg blend and the normal colouring, exact in integers.
    wr.case("overlay_seg", "seg", "overlay", {"labels": labels_img},
            {"rgb": np.asarray(overlay_seg(frame, labels_img)).astype(np.int32)})
    normals_img = procs["normal"].finish([normals], dense_prep).normals
    wr.case("overlay_normal", "normal", "overlay", {"normals": normals_img},
            {"rgb": np.asarray(normal_to_rgb(normals_img)).astype(np.int32)})

    doc = {"frame": "frame.npy", "frame_hw": list(image_hw), "pixel_format": "ARGB",
           "mean_rgb": metadata.MEAN_RGB.tolist(), "std_rgb": metadata.STD_RGB.tolist(),
           "flip_indices": [int(i) for i in metadata.keypoints().flip_indices],
           "palette_rgb": metadata.seg().palette.tolist(), "cases": wr.cases}
    path = out / "cases.json"
    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sapiens_edge.runtime.golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", metavar="DIR", required=True, type=Path,
                        help="folder to write cases.json + .npy into")
    args = parser.parse_args(argv)
    path = write(args.write)
    print(f"wrote {path} ({len(json.loads(path.read_text())['cases'])} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
