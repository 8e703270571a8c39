"""Segmentation, surface-normal and pointmap post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from sapiens_edge.runtime.dense import crop_pad, resize_to_hwc
from sapiens_edge.runtime.normal import postprocess_normal, unit_normals
from sapiens_edge.runtime.pointmap import focal_length, gaussian_blur3, postprocess_pointmap
from sapiens_edge.runtime.resample import bilinear_resize_float
from sapiens_edge.runtime.seg import class_fractions, seg_labels

from .runtime_testutils import make_rng


def test_seg_argmax_known_answer():
    logits = np.full((3, 4, 4), -10.0, dtype=np.float32)
    logits[1, :, :2] = 10.0  # class 1 on the left half
    logits[2, :, 2:] = 10.0  # class 2 on the right half
    labels = seg_labels(logits, (8, 8))
    assert labels.dtype == np.uint8 and labels.shape == (8, 8)
    # Output column 3 samples 0.75 * col 1 + 0.25 * col 2 -> still class 1; column 4 flips.
    assert (labels[:, :4] == 1).all() and (labels[:, 4:] == 2).all()
    np.testing.assert_allclose(class_fractions(labels, 3), [0.0, 0.5, 0.5])


def test_seg_chunked_equals_unchunked():
    logits = make_rng().standard_normal((29, 16, 12)).astype(np.float32)  # noise: dense path
    full = bilinear_resize_float(logits, (123, 77)).argmax(axis=0)
    chunked = seg_labels(logits, (123, 77), budget=29 * 77 * 4 * 5)  # 5 rows per chunk
    np.testing.assert_array_equal(chunked, full)
    np.testing.assert_array_equal(seg_labels(logits, (123, 77)), full)


def test_seg_boundary_only_path_equals_full_resize():
    # Smooth class regions: most output pixels take the shortcut, boundaries are blended.
    yy, xx = np.mgrid[0:48, 0:40]
    logits = np.stack([np.sin(xx / (5 + c) + c) + np.cos(yy / (6 + c) - c) for c in range(29)]).astype(np.float32)
    for out_hw in [(301, 257), (48, 40), (20, 17)]:
        full = bilinear_resize_float(logits, out_hw).argmax(axis=0)
        np.testing.assert_array_equal(seg_labels(logits, out_hw, budget=29 * out_hw[1] * 4 * 7), full)


def test_normals_are_unit_length_before_resize():
    raw = make_rng().standard_normal((3, 10, 8)).astype(np.float32) * 5
    raw[:, 0, 0] = 0  # zero vector: the clamped norm keeps it finite (0)
    n = unit_normals(raw)
    lengths = np.linalg.norm(n, axis=0)
    np.testing.assert_allclose(lengths[1:], 1.0, rtol=1e-5)
    assert lengths[0, 0] == 0


def test_normal_postprocess_crops_pad_and_resizes():
    raw = np.zeros((3, 16, 12), dtype=np.float32)
    raw[:, 2:14, :] = np.array([0, 0, 3.0], np.float32)[:, None, None]  # content rows 2..13
    raw[:, :2] = 100.0  # pad garbage must disappear
    raw[:, 14:] = -100.0
    out = postprocess_normal(raw, (0, 0, 2, 2), (30, 25))
    assert out.shape == (30, 25, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to([0, 0, 1.0], (30, 25, 3)), atol=1e-6)


def test_pointmap_divides_by_scale_and_crops_padding():
    raw = np.full((3, 16, 12), 1e6, dtype=np.float32)  # pad area: huge values
    raw[:, :, 3:9] = np.array([1.0, -2.0, 4.0], np.float32)[:, None, None]  # content cols 3..8
    out = postprocess_pointmap(raw, np.array([[2.0]]), (3, 3, 0, 0), (40, 15))
    assert out.shape == (40, 15, 3)
    np.testing.assert_allclose(out, np.broadcast_to([0.5, -1.0, 2.0], (40, 15, 3)), rtol=1e-5)
    assert focal_length(2.0) == pytest.approx(384.0)


def test_pointmap_blurs_only_when_upsampling():
    raw = np.zeros((3, 8, 8), dtype=np.float32)
    raw[:, 4, 4] = 1.0
    same = postprocess_pointmap(raw, 1.0, (0, 0, 0, 0), (8, 8))
    np.testing.assert_array_equal(same[..., 0], raw[0])  # same size: no blur, identity resize
    up = postprocess_pointmap(raw, 1.0, (0, 0, 0, 0), (16, 16))
    blurred = raw
    for _ in range(4):
        blurred = gaussian_blur3(blurred)
    np.testing.assert_allclose(up[..., 0], bilinear_resize_float(blurred, (16, 16))[0], atol=1e-7)


def test_gaussian_blur3_matches_torchvision_kernel():
    k = np.exp(-0.5 * (np.array([-1.0, 0.0, 1.0]) / 0.8) ** 2)
    k /= k.sum()  # [0.23899, 0.52202, 0.23899]
    x = np.zeros((1, 5, 5), dtype=np.float32)
    x[0, 2, 2] = 1.0
    y = gaussian_blur3(x)[0]
    assert y[2, 2] == pytest.approx(k[1] ** 2, rel=1e-5)
    assert y[1, 2] == pytest.approx(k[0] * k[1], rel=1e-5)
    edge = np.zeros((1, 4, 4), dtype=np.float32)
    edge[0, 0, 0] = 1.0  # reflect padding mirrors around the edge pixel (not replicate)
    assert gaussian_blur3(edge)[0, 0, 0] == pytest.approx(k[1] ** 2, rel=1e-5)


def test_crop_pad_and_chunked_hwc_resize():
    x = make_rng().standard_normal((3, 10, 9)).astype(np.float32)
    assert crop_pad(x, (1, 2, 3, 0)).shape == (3, 7, 6)
    with pytest.raises(ValueError):
        crop_pad(x, (5, 5, 0, 0))
    out = resize_to_hwc(x, (31, 17), budget=3 * 17 * 4 * 4)
    np.testing.assert_array_equal(out, np.moveaxis(bilinear_resize_float(x, (31, 17)), 0, -1))
