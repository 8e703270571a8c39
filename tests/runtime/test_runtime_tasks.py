"""Task registry and run_task end to end with fake numpy models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sapiens_edge.errors import InputSizeError, SapiensEdgeError
from sapiens_edge.runtime import (
    NormalResult,
    PointmapResult,
    PoseResult,
    SegResult,
    get_processor,
    run_task,
)

from .runtime_testutils import gaussian_map


def test_unknown_task_lists_known_ones():
    with pytest.raises(SapiensEdgeError, match="pose, seg, normal, pointmap"):
        get_processor("depth")
    assert get_processor("pose").uses_flip_test and not get_processor("seg").uses_flip_test


class DotPoseModel:
    """Finds the bright dot in the normalized input and puts a Gaussian there in every heatmap
    (UDP mapping x_hm = x_in * (w_hm - 1) / (W_in - 1)). Equivariant, so flip test is a no-op."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.calls += 1
        n, _, h, w = x.shape
        hh, ww = h // 4, w // 4
        out = np.zeros((n, 308, hh, ww), dtype=np.float32)
        for i in range(n):
            wgt = np.clip(x[i, 0] - x[i, 0].min(), 0, None)
            wgt = np.where(wgt > 0.5 * wgt.max(), wgt, 0)
            yy, xx = np.mgrid[0:h, 0:w]
            cx, cy = (wgt * xx).sum() / wgt.sum(), (wgt * yy).sum() / wgt.sum()
            out[i] = gaussian_map(hh, ww, cx * (ww - 1) / (w - 1), cy * (hh - 1) / (h - 1), 1.5)
        return [out]


def test_pose_end_to_end_recovers_dot_with_and_without_flip():
    img = np.zeros((240, 180, 3), dtype=np.uint8)
    img[119:122, 69:72] = 255  # 3x3 dot centred on (x=70, y=120)
    for flip, calls in ((True, 2), (False, 1)):
        model = DotPoseModel()
        res = run_task(model, img, "pose", flip_test=flip, input_hw=(256, 192))
        assert model.calls == calls
        assert isinstance(res, PoseResult) and res.keypoints.shape == (1, 308, 2)
        assert np.abs(res.keypoints[0] - [70, 120]).max() < 1.0
        assert res.flip_test is flip
    boxes = [[40, 80, 100, 160], [0, 0, 179, 239]]
    res = run_task(DotPoseModel(), img, "pose", boxes=boxes, input_hw=(256, 192))
    assert res.keypoints.shape == (2, 308, 2) and res.scores.shape == (2, 308)
    assert np.abs(res.keypoints - [70, 120]).max() < 1.0
    doc = json.loads(json.dumps(res.to_json()))
    assert doc["task"] == "pose" and doc["num_persons"] == 2 and len(doc["keypoint_names"]) == 308
    assert doc["image_size"] == {"height": 240, "width": 180}
    assert len(doc["persons"][0]["keypoints"]) == 308 and doc["persons"][1]["box"] == [0, 0, 179, 239]
    assert set(res.arrays()) == {"keypoints", "scores", "boxes"}
    assert res.overlay(img).size == (180, 240)


def test_seg_end_to_end():
    img = np.zeros((50, 80, 3), dtype=np.uint8)
    img[:, :40] = 255

    def model(x):  # class 5 where the input is bright, background elsewhere
        logits = np.zeros((x.shape[0], 29, *x.shape[2:]), dtype=np.float32)
        logits[:, 5] = x[:, 0]
        return [logits]

    res = run_task(model, img, "seg", input_hw=(64, 48))
    assert isinstance(res, SegResult) and res.labels.shape == (50, 80) and res.labels.dtype == np.uint8
    assert (res.labels[:, :38] == 5).all() and (res.labels[:, 42:] == 0).all()
    doc = json.loads(json.dumps(res.to_json()))
    assert doc["foreground_fraction"] == pytest.approx(0.5, abs=0.03)
    assert doc["class_names"][5] == "Left_Foot" and set(doc["class_fractions"]) == {"Background", "Left_Foot"}
    assert res.arrays()["seg"] is res.labels
    assert res.overlay(img).size == (80, 50)


def test_normal_end_to_end():
    def model(x):
        raw = np.zeros((x.shape[0], 3, *x.shape[2:]), dtype=np.float32)
        raw[:, 2] = 2.0
        raw[:, 0] = np.where(x[:, 0] < -2.1, 50.0, 0.0)  # pad pixels point sideways: must be cropped
        return [raw]

    img = np.full((30, 90, 3), 128, dtype=np.uint8)
    res = run_task(model, img, "normal", input_hw=(64, 48))
    assert isinstance(res, NormalResult) and res.normals.shape == (30, 90, 3)
    np.testing.assert_allclose(res.normals, np.broadcast_to([0, 0, 1.0], (30, 90, 3)), atol=1e-6)
    assert json.loads(json.dumps(res.to_json()))["mean_normal"] == [0.0, 0.0, 1.0]
    assert np.asarray(res.overlay(img)).shape == (30, 90, 3)


def test_pointmap_end_to_end():
    def model(x):
        pm = np.empty((x.shape[0], 3, *x.shape[2:]), dtype=np.float32)
        pm[:, 0], pm[:, 1], pm[:, 2] = 1.0, 2.0, 4.0
        return [pm, np.full((x.shape[0], 1), 2.0, dtype=np.float32)]

    img = np.full((60, 40, 3), 90, dtype=np.uint8)
    res = run_task(model, img, "pointmap")
    assert isinstance(res, PointmapResult) and res.pointmap.shape == (60, 40, 3)
    np.testing.assert_allclose(res.pointmap, np.broadcast_to([0.5, 1.0, 2.0], (60, 40, 3)), rtol=1e-5)
    assert res.scale == 2.0 and res.focal_length == pytest.approx(384.0)
    doc = json.loads(json.dumps(res.to_json()))
    assert doc["depth"]["median"] == pytest.approx(2.0) and doc["focal_length_px"] == pytest.approx(384.0)
    assert isinstance(res.overlay(img), Image.Image)
    small = run_task(model, img, "pointmap", input_hw=(256, 192))  # e.g. a tiny test model
    np.testing.assert_allclose(small.pointmap, res.pointmap, rtol=1e-5)
    with pytest.raises(InputSizeError):
        run_task(model, img, "pointmap", input_hw=(250, 192))


def test_misuse_is_reported():
    img = np.zeros((20, 20, 3), dtype=np.uint8)
    with pytest.raises(SapiensEdgeError, match="only supported for pose"):
        run_task(lambda x: [x], img, "seg", flip_test=True, input_hw=(32, 32))
    with pytest.raises(SapiensEdgeError, match="boxes"):
        run_task(lambda x: [x], img, "seg", boxes=[[0, 0, 5, 5]], input_hw=(32, 32))
    with pytest.raises(SapiensEdgeError, match="output"):
        run_task(lambda x: [], img, "normal", input_hw=(32, 32))
    with pytest.raises(SapiensEdgeError, match="shape"):
        run_task(lambda x: [np.zeros((2, 308, 8, 8), np.float32)], img, "pose", input_hw=(32, 32))
