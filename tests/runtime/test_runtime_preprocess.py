"""Pre-processing: normalization, pose boxes and UDP warp, seg and dense resizing, input sizes."""

from __future__ import annotations

import numpy as np
import pytest

from sapiens_edge.errors import InputSizeError, SapiensEdgeError
from sapiens_edge.runtime.preprocess import (
    box_to_center_scale,
    check_input_hw,
    normalize,
    preprocess_dense,
    preprocess_pose,
    preprocess_seg,
    udp_warp_params,
)
from sapiens_edge.runtime.resample import resize, warp_scale_translate

from .runtime_testutils import ramp_image

PAD_VALUES = (-2.1179, -2.0357, -1.8044)


def test_normalize_is_rgb_chw_on_0_255_scale():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[..., 0] = 255  # pure red
    x = normalize(img)
    assert x.shape == (3, 2, 3) and x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx((255 - 123.675) / 58.395, abs=1e-5)
    assert x[1, 0, 0] == pytest.approx(-116.28 / 57.12, abs=1e-5)
    assert x[2, 0, 0] == pytest.approx(-103.53 / 57.375, abs=1e-5)


def test_pad_pixels_normalize_to_spec_values():
    img = np.full((100, 400, 3), 200, dtype=np.uint8)  # wide: padded top and bottom
    x, pad = preprocess_dense(img, (1024, 768))
    left, right, top, bottom = pad
    assert (left, right) == (0, 0) and top > 0 and bottom > 0
    for c, v in enumerate(PAD_VALUES):
        np.testing.assert_allclose(x[0, c, :top], v, atol=1e-4)
        np.testing.assert_allclose(x[0, c, 1024 - bottom:], v, atol=1e-4)
        np.testing.assert_allclose(x[0, c, top + 5, 10], (200 - [123.675, 116.28, 103.53][c]) /
                                   [58.395, 57.12, 57.375][c], atol=1e-5)


@pytest.mark.parametrize(("image_hw", "pad"), [
    ((100, 50), (8, 8, 0, 0)),  # r = min(48/50, 64/100) = 0.64 -> 64 x 32
    ((30, 90), (0, 0, 24, 24)),  # r = 48/90 -> 16 x 48
    ((7, 3), (10, 11, 0, 0)),  # r = 64/7 -> int(27.43) = 27 wide: odd padding goes right
    ((1000, 49), (22, 23, 0, 0)),  # int(3.136) = 3 wide
])
def test_dense_padding_split(image_hw, pad):
    _, got = preprocess_dense(ramp_image(*image_hw), (64, 48))
    assert got == pad


def test_dense_content_is_linear_resize():
    img = ramp_image(40, 20)
    x, (left, right, top, bottom) = preprocess_dense(img, (64, 48))
    content = resize(img, (64 - top - bottom, 48 - left - right), "linear")
    np.testing.assert_allclose(x[0, :, top:64 - bottom, left:48 - right], normalize(content), atol=1e-6)


def test_box_to_center_scale_spec_steps():
    c, s = box_to_center_scale(np.array([10, 20, 110, 220]))
    np.testing.assert_allclose(c, [60, 120])
    np.testing.assert_allclose(s, [0.75 * 250, 250])  # tall box: s_w = 0.75 * s_h
    c, s = box_to_center_scale(np.array([[0, 0, 400, 100]]))
    np.testing.assert_allclose(s, [[500, 500 / 0.75]], rtol=1e-6)  # wide box: s_h = s_w / 0.75


def test_udp_warp_maps_box_edges_to_input_edges():
    c, s = box_to_center_scale(np.array([30.0, 40.0, 330.0, 440.0]))
    (sx, sy), (ox, oy) = udp_warp_params(c, s, (1024, 768))
    assert sx * (c[0] - s[0] / 2) + ox == pytest.approx(0, abs=1e-3)
    assert sx * (c[0] + s[0] / 2) + ox == pytest.approx(767, abs=1e-3)  # the size - 1 numerator
    assert sy * (c[1] + s[1] / 2) + oy == pytest.approx(1023, abs=1e-3)


def test_pose_whole_image_box_and_interpolation_choice():
    img = ramp_image(120, 90)
    batch = preprocess_pose(img, None, (64, 48))
    assert batch.inputs.shape == (1, 3, 64, 48) and batch.inputs.dtype == np.float32
    np.testing.assert_array_equal(batch.boxes, [[0, 0, 89, 119]])
    (sx, sy), off = udp_warp_params(batch.centers[0], batch.scales[0], (64, 48))
    assert min(sx, sy) < 1  # shrinking -> bilinear
    expected = normalize(warp_scale_translate(img, (64, 48), (sx, sy), off, "linear"))
    np.testing.assert_array_equal(batch.inputs[0], expected)
    small = preprocess_pose(img, [[40, 50, 50, 64]], (64, 48))  # tiny box is enlarged -> bicubic
    (sx, sy), off = udp_warp_params(small.centers[0], small.scales[0], (64, 48))
    assert min(sx, sy) >= 1
    expected = normalize(warp_scale_translate(img, (64, 48), (sx, sy), off, "cubic"))
    np.testing.assert_array_equal(small.inputs[0], expected)


def test_pose_several_boxes_and_bad_boxes():
    img = ramp_image(60, 80)
    batch = preprocess_pose(img, [[0, 0, 20, 30], [10, 10, 70, 50]], (32, 32))
    assert batch.inputs.shape == (2, 3, 32, 32) and batch.centers.shape == (2, 2)
    for bad in ([[10, 10, 5, 20]], [[0, 0, 0, 0]], [[0, 0, np.nan, 5]], [[1, 2, 3]]):
        with pytest.raises(SapiensEdgeError):
            preprocess_pose(img, bad, (32, 32))


def test_seg_picks_area_when_narrower_else_cubic():
    wide = ramp_image(40, 100)
    np.testing.assert_array_equal(preprocess_seg(wide, (64, 48))[0], normalize(resize(wide, (64, 48), "area")))
    narrow = ramp_image(100, 20)  # width grows (height shrinks): cubic, decided on the width only
    np.testing.assert_array_equal(preprocess_seg(narrow, (64, 48))[0], normalize(resize(narrow, (64, 48), "cubic")))


@pytest.mark.parametrize("bad", [(1000, 768), (0, 16), (-16, 32), (16.5, 32), "abc", (16,)])
def test_input_size_validation(bad):
    with pytest.raises(InputSizeError):
        check_input_hw(bad)
    assert check_input_hw((512, 384)) == (512, 384)
    assert check_input_hw(None) == (1024, 768)


def test_non_rgb_image_rejected():
    with pytest.raises(SapiensEdgeError):
        preprocess_seg(np.zeros((10, 10), dtype=np.uint8))
