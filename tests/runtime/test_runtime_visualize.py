"""Visualisations: sizes, colours, and that pixels change exactly where results are."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sapiens_edge import metadata
from sapiens_edge.runtime.visualize import depth_to_rgb, draw_pose, normal_to_rgb, overlay_seg, turbo


def test_draw_pose_marks_confident_keypoints_only():
    img = np.zeros((200, 300, 3), dtype=np.uint8)
    kp = np.full((1, 308, 2), -100.0, dtype=np.float32)  # off-image by default
    scores = np.zeros((1, 308), dtype=np.float32)
    kp[0, 0], scores[0, 0] = (50, 60), 0.9  # nose, confident
    kp[0, 5], scores[0, 5] = (250, 150), 0.1  # left shoulder, below threshold
    out = draw_pose(img, kp, scores, thr=0.3)
    assert isinstance(out, Image.Image) and out.size == (300, 200)
    a = np.asarray(out)
    assert tuple(a[60, 50]) == tuple(metadata.keypoints().colors[0])
    assert (a[150, 250] == 0).all()
    assert (a[:, 150:] == 0).all()  # nothing else drawn


def test_draw_pose_links_between_confident_ends():
    info = metadata.keypoints()
    a, b = info.skeleton[0]
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    kp = np.zeros((1, 308, 2), dtype=np.float32)
    kp[0, a], kp[0, b] = (10, 50), (90, 50)
    scores = np.zeros((1, 308), dtype=np.float32)
    scores[0, [a, b]] = 1.0
    out = np.asarray(draw_pose(img, kp, scores))
    assert tuple(out[50, 50]) == tuple(info.skeleton_colors[0])  # mid-link pixel


def test_overlay_seg_blends_palette():
    img = np.full((4, 6, 3), 100, dtype=np.uint8)
    labels = np.zeros((4, 6), dtype=np.uint8)
    labels[:, 3:] = 3
    out = np.asarray(overlay_seg(img, labels, alpha=0.5))
    pal = metadata.seg().palette.astype(float)
    np.testing.assert_array_equal(out[0, 0], np.rint(0.5 * 100 + 0.5 * pal[0]))
    np.testing.assert_array_equal(out[0, 5], np.rint(0.5 * 100 + 0.5 * pal[3]))
    assert out.shape == (4, 6, 3)
    with pytest.raises(ValueError):
        overlay_seg(img, labels[:2])


def test_normal_to_rgb_spec_mapping():
    n = np.zeros((2, 2, 3), dtype=np.float32)
    n[..., 2] = 1.0  # facing the camera
    n[0, 1] = (1.0, 0.0, 0.0)
    out = np.asarray(normal_to_rgb(n, mask=np.array([[1, 1], [1, 0]])))
    assert tuple(out[0, 0]) == (127, 127, 255)  # uint8((n + 1) / 2 * 255): truncation
    assert tuple(out[0, 1]) == (255, 127, 127)
    assert tuple(out[1, 1]) == (0, 0, 0)  # background set to -1


def test_turbo_endpoints():
    np.testing.assert_allclose(turbo(np.array([0.0, 1.0])), [[0.1357, 0.0914, 0.1067], [0.5659, 0.0504, 0.0]],
                               atol=1e-3)


def test_depth_to_rgb_near_and_far_differ_and_background_black():
    pm = np.zeros((10, 10, 3), dtype=np.float32)
    pm[..., 2] = np.linspace(1.0, 5.0, 10)[None, :]
    mask = np.ones((10, 10), dtype=np.uint8)
    mask[:, 0] = 0
    out = np.asarray(depth_to_rgb(pm, mask))
    assert out.shape == (10, 10, 3)
    assert (out[:, 0] == 0).all()
    assert np.abs(out[5, 1].astype(int) - out[5, 9]).sum() > 100  # nearest vs farthest
    assert depth_to_rgb(np.zeros((3, 3, 3), np.float32)).size == (3, 3)  # nothing valid: all black
