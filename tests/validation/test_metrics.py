"""Metrics on constructed arrays with known answers (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sapiens_edge.validation import metrics as M
from tests.runtime.runtime_testutils import gaussian_map


def test_tensor_metrics_identical_are_perfect():
    a = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    m = M.tensor_metrics(a, a.copy())
    assert m["max_abs"] == 0 and m["mean_abs"] == 0 and m["rel_l2"] == 0
    assert m["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert m["snr_db"] == math.inf


def test_tensor_metrics_known_values():
    a = np.ones(100, np.float32)
    b = 1.1 * a
    assert M.max_abs(a, b) == pytest.approx(0.1, rel=1e-6)
    assert M.mean_abs(a, b) == pytest.approx(0.1, rel=1e-6)
    assert M.rel_l2(a, b) == pytest.approx(0.1, rel=1e-6)
    assert M.cosine(a, b) == pytest.approx(1.0)  # same direction
    assert M.snr_db(a, b) == pytest.approx(20.0, rel=1e-5)  # noise power 1 % of the signal
    assert M.cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert M.cosine(np.array([1.0, 2.0]), np.array([-1.0, -2.0])) == pytest.approx(-1.0)
    # zero reference: 0 if the candidate is zero too, else inf
    z = np.zeros(4)
    assert M.rel_l2(z, z) == 0 and M.rel_l2(z, z + 1) == math.inf and M.cosine(z, z) == 1.0
    with pytest.raises(ValueError, match="shape"):
        M.rel_l2(np.zeros(3), np.zeros(4))


def test_tensor_metrics_nan_candidate_is_nan():
    a = np.ones(10)
    b = a.copy()
    b[3] = np.nan
    m = M.tensor_metrics(a, b)
    assert math.isnan(m["cosine"]) and math.isnan(m["rel_l2"])


def _rot_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def test_normal_known_rotation():
    rng = np.random.default_rng(1)
    n = rng.normal(size=(16, 12, 3))
    n[..., 2] = 0  # in the xy plane, so a z rotation turns every vector by exactly the angle
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    rot = n @ _rot_z(10.0).T
    m = M.normal_metrics(n, 2.5 * rot)  # lengths do not matter
    assert m["angle_mean_deg"] == pytest.approx(10.0, abs=1e-6)
    assert m["angle_median_deg"] == pytest.approx(10.0, abs=1e-6)
    ident = M.normal_metrics(n, n)
    assert ident["angle_mean_deg"] == pytest.approx(0.0, abs=1e-5)


def test_normal_ignores_zero_length_and_channel_axis():
    ref = np.zeros((4, 4, 3))
    ref[..., 2] = 1.0
    cand = ref.copy()
    cand[0, 0] = 0  # zero-length candidate: ignored
    ref[1, 1] = 0  # zero-length reference: ignored
    cand[2, 2] = [1.0, 0, 0]  # 90 degrees
    a = M.angular_errors_deg(ref, cand)
    assert a.size == 14 and a.max() == pytest.approx(90.0)
    chw = M.normal_metrics(np.moveaxis(ref, -1, 0), np.moveaxis(cand, -1, 0), channel_axis=0)
    assert chw["angle_mean_deg"] == pytest.approx(90.0 / 14)
    assert chw["angle_median_deg"] == pytest.approx(0.0)
    assert math.isnan(M.normal_metrics(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)))["angle_mean_deg"])


def test_seg_known_label_swap():
    ref = np.zeros((8, 8), np.uint8)
    ref[:, 4:] = 1  # 32 px of class 0, 32 of class 1
    cand = ref.copy()
    cand[:2, 4:] = 2  # 8 px of class 1 become class 2
    assert M.pixel_agreement(ref, cand) == pytest.approx(56 / 64)
    # IoU: class 0 -> 1, class 1 -> 24/32, class 2 -> 0/8 (present in the candidate only)
    assert M.miou(ref, cand) == pytest.approx((1 + 0.75 + 0) / 3)
    swapped = 1 - ref  # every label swapped
    assert M.seg_metrics(ref, swapped) == {"pixel_agreement": 0.0, "miou": 0.0}
    assert M.seg_metrics(ref, ref) == {"pixel_agreement": 1.0, "miou": 1.0}


def _heatmaps(points, h=32, w=24, amps=None) -> np.ndarray:
    amps = amps or [1.0] * len(points)
    return np.stack([gaussian_map(h, w, x, y, 2.0, a) for (x, y), a in zip(points, amps, strict=True)])


def test_pose_one_px_shift_is_one_heatmap_px():
    pts = [(10.3, 12.7), (5.6, 20.2), (15.0, 8.5)]
    ref = _heatmaps(pts)
    cand = _heatmaps([(x + 1.0, y) for x, y in pts])
    m = M.pose_heatmap_metrics(ref, cand)
    assert m["keypoint_err_px"] == pytest.approx(1.0, abs=0.05)
    assert m["keypoints_compared"] == 3
    assert M.pose_heatmap_metrics(ref, cand, threshold_px=0.5)["pck"] == 0.0
    assert M.pose_heatmap_metrics(ref, cand, threshold_px=1.5)["pck"] == 1.0
    same = M.pose_heatmap_metrics(ref, ref.copy())
    assert same["keypoint_err_px"] == 0.0 and same["pck"] == 1.0


def test_pose_low_score_keypoints_do_not_count():
    pts = [(10.0, 12.0), (5.0, 20.0)]
    ref = _heatmaps(pts, amps=[1.0, 0.2])  # second keypoint below the 0.3 score threshold
    cand = _heatmaps([(10.0, 12.0), (15.0, 5.0)], amps=[1.0, 0.2])
    m = M.pose_heatmap_metrics(ref, cand)
    assert m["keypoints_compared"] == 1 and m["keypoint_err_px"] == pytest.approx(0.0, abs=1e-3)
    none = M.pose_heatmap_metrics(ref * 0.1, cand * 0.1)  # nothing confident: not computable
    assert math.isnan(none["keypoint_err_px"]) and math.isnan(none["pck"]) and none["keypoints_compared"] == 0


def test_pose_image_px_converted_with_box_scale():
    # heatmap 32x24 for a box of scale (s_w, s_h) = (230, 306.67): 1 heatmap px = s_w / 23 image px in x
    scale = np.array([[230.0, 310.0]])
    units = np.stack([23 / scale[:, 0], 31 / scale[:, 1]], axis=1)
    ref = np.zeros((1, 2, 2))
    cand = ref.copy()
    cand[0, 0, 0] = 230.0 / 23  # 1 heatmap px in x
    cand[0, 1, 1] = 2 * 310.0 / 31  # 2 heatmap px in y
    d = M.keypoint_distances(ref, cand, units)
    np.testing.assert_allclose(d, [[1.0, 2.0]])
    scores = np.ones((1, 2))
    assert M.keypoint_err_px(ref, cand, scores, units_per_px=units) == pytest.approx(1.5)
    assert M.pck(ref, cand, scores, units_per_px=units, threshold_px=1.0) == pytest.approx(0.5)


def test_pointmap_depth_and_scale_error():
    rng = np.random.default_rng(2)
    ref = rng.uniform(1, 5, size=(10, 8, 3))
    cand = ref.copy()
    cand[..., 2] *= 1.02
    cand[..., :2] += 9  # X, Y do not enter the depth error
    ref[0, 0, 2] = 0.0  # invalid reference depth: ignored
    cand[1, 1, 2] = 1e6
    ref[1, 1, 2] = np.nan  # non-finite reference: ignored
    assert M.depth_rel_err(ref, cand) == pytest.approx(0.02, rel=1e-9)
    assert M.scale_rel_err(2.0, 2.1) == pytest.approx(0.05)
    m = M.pointmap_metrics(ref, ref.copy(), 3.0, 3.0)
    assert m == {"depth_rel_err": 0.0, "scale_rel_err": 0.0}
    chw = M.depth_rel_err(np.moveaxis(ref, -1, 0), np.moveaxis(cand, -1, 0), channel_axis=0)
    assert chw == pytest.approx(0.02, rel=1e-9)
