"""Resampling against hand-computed OpenCV / PyTorch semantics and OpenCV golden values."""

from __future__ import annotations

import numpy as np
import pytest

from sapiens_edge.runtime.resample import bilinear_resize_float, resize, resize_chw, warp_scale_translate

from .runtime_testutils import make_rng, ramp_image

# Produced by OpenCV 5.0 (cv2.resize / cv2.warpAffine) on ramp_image(5, 6), channel 0 (resize) or 1 (warp).
CV_LINEAR_7x9 = [[11, 66, 140, 214, 160, 106, 180, 126, 54], [99, 81, 82, 156, 175, 170, 146, 141, 142],
                 [136, 100, 70, 95, 157, 201, 153, 160, 179], [63, 119, 150, 53, 85, 158, 233, 179, 106],
                 [173, 137, 107, 133, 103, 86, 159, 105, 33], [173, 156, 138, 139, 122, 104, 105, 87, 70],
                 [115, 170, 202, 105, 136, 168, 71, 102, 158]]
CV_CUBIC_7x9 = [[0, 54, 160, 242, 157, 83, 200, 137, 28], [117, 66, 61, 163, 205, 179, 130, 133, 157],
                [156, 98, 48, 67, 174, 233, 142, 157, 209], [53, 132, 161, 42, 60, 168, 250, 189, 93],
                [191, 130, 91, 148, 88, 59, 186, 116, 0], [196, 155, 126, 156, 127, 88, 97, 77, 55],
                [96, 188, 224, 88, 139, 190, 54, 89, 182]]
CV_AREA_3x4 = [[75, 155, 152, 130], [117, 94, 160, 137], [159, 136, 116, 94]]
CV_AREA_7x9 = [[11, 67, 122, 233, 161, 88, 199, 127, 54], [103, 82, 61, 172, 176, 180, 138, 142, 146],
               [144, 97, 51, 111, 166, 222, 128, 157, 187], [63, 119, 174, 29, 85, 140, 251, 179, 106],
               [186, 139, 92, 152, 105, 58, 169, 97, 24], [176, 155, 133, 142, 121, 100, 108, 87, 65],
               [115, 171, 226, 81, 137, 192, 47, 103, 158]]
CV_LINEAR_3x4 = [[69, 171, 146, 120], [91, 65, 168, 142], [155, 130, 126, 100]]
CV_WARP_LINEAR = [[60, 14, 37, 73, 108, 106, 60, 27], [106, 67, 78, 103, 169, 187, 148, 77],
                  [98, 152, 98, 43, 97, 156, 221, 133], [153, 91, 118, 144, 82, 77, 142, 89],
                  [152, 160, 138, 115, 123, 114, 87, 45], [106, 171, 158, 135, 143, 134, 107, 56],
                  [36, 92, 147, 183, 111, 96, 151, 92]]
CV_WARP_CUBIC = [[70, 0, 20, 88, 136, 121, 51, 8], [119, 68, 64, 114, 208, 237, 175, 76],
                 [86, 168, 99, 26, 72, 172, 252, 153], [164, 74, 117, 159, 61, 56, 162, 109],
                 [168, 170, 134, 106, 130, 119, 70, 23], [89, 199, 182, 136, 164, 161, 118, 50],
                 [7, 80, 176, 207, 102, 84, 180, 115]]


def test_linear_2x2_to_4x4_matches_opencv_formula():
    img = np.array([[0.0, 100.0], [200.0, 40.0]], dtype=np.float32)
    # src = (dst + 0.5) * 0.5 - 0.5 -> -0.25 (edge), 0.25, 0.75, 1.25 (edge): weights per output.
    w = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    expected = w @ img @ w.T
    np.testing.assert_allclose(resize(img, (4, 4), "linear"), expected, atol=1e-5)
    # One pixel by hand: row weights (0.75, 0.25), column weights (0.25, 0.75).
    hand = 0.75 * (0.25 * 0 + 0.75 * 100) + 0.25 * (0.25 * 200 + 0.75 * 40)
    assert resize(img, (4, 4), "linear")[1, 2] == pytest.approx(hand)
    u8 = resize(img.astype(np.uint8), (4, 4), "linear")
    assert u8.dtype == np.uint8
    assert np.abs(u8.astype(float) - expected).max() <= 1


@pytest.mark.parametrize(("method", "hw", "golden", "tol"), [
    ("linear", (7, 9), CV_LINEAR_7x9, 0), ("linear", (3, 4), CV_LINEAR_3x4, 0),
    ("cubic", (7, 9), CV_CUBIC_7x9, 1), ("area", (3, 4), CV_AREA_3x4, 0), ("area", (7, 9), CV_AREA_7x9, 0),
])
def test_uint8_resize_matches_opencv_golden(method, hw, golden, tol):
    out = resize(ramp_image(5, 6), hw, method)
    assert out.shape == (*hw, 3) and out.dtype == np.uint8
    assert np.abs(out[..., 0].astype(int) - np.array(golden)).max() <= tol


def test_area_downscale_by_two_is_block_mean():
    img = ramp_image(8, 10).astype(np.float32)
    expected = img.reshape(4, 2, 5, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize(img, (4, 5), "area"), expected, rtol=1e-6)
    u8 = resize(ramp_image(8, 10), (4, 5), "area")
    sums = ramp_image(8, 10).astype(int).reshape(4, 2, 5, 2, 3).sum(axis=(1, 3))
    np.testing.assert_array_equal(u8, (sums + 2) >> 2)  # OpenCV's 2x2 fast path rounds halves up


def test_area_non_integer_downscale_uses_box_overlap_weights():
    img = np.arange(5, dtype=np.float32)[None, :].repeat(2, axis=0)  # 1 x 5 -> 1 x 2, scale 2.5
    out = resize(img, (2, 2), "area")
    # First output covers [0, 2.5): (0 + 1 + 0.5 * 2) / 2.5; second [2.5, 5): (0.5 * 2 + 3 + 4) / 2.5.
    np.testing.assert_allclose(out[0], [2 / 2.5, 8 / 2.5], rtol=1e-6)


def test_cubic_constant_image_stays_constant():
    img = np.full((13, 17, 3), 173, dtype=np.uint8)
    for hw in [(29, 31), (5, 7), (13, 40)]:
        assert (resize(img, hw, "cubic") == 173).all()
        np.testing.assert_allclose(resize(img.astype(np.float32), hw, "cubic"), 173.0, rtol=1e-6)


def test_cubic_weights_at_half_pixel():
    # 8 -> 4: src = 2 * dst + 0.5, so fx = 0.5 and the taps are [-0.09375, 0.59375, 0.59375, -0.09375].
    img = np.zeros((1, 8), dtype=np.float32)
    img[0, 3] = 1.0
    out = resize(img, (1, 4), "cubic")[0]
    assert out[1] == pytest.approx(0.59375)  # taps 1..4, impulse at tap 2
    assert out[2] == pytest.approx(-0.09375)  # taps 3..6, impulse at tap 0


def test_resize_chw_matches_hwc():
    img = ramp_image(6, 9).astype(np.float32)
    chw = np.transpose(img, (2, 0, 1))
    expected = np.transpose(resize(img, (11, 4), "cubic"), (2, 0, 1))
    np.testing.assert_allclose(resize_chw(chw, (11, 4), "cubic"), expected)


def test_bilinear_resize_float_matches_torch_align_corners_false():
    x = np.array([[[1.0, 3.0]]], dtype=np.float32)
    # 2 -> 4: src = (d + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (index 1 twice)
    np.testing.assert_allclose(bilinear_resize_float(x, (1, 4))[0, 0], [1.0, 1.5, 2.5, 3.0])
    y = np.array([[[0.0, 10.0, 20.0]]], dtype=np.float32)
    # 3 -> 2: scale 1.5, src = 0.25 and 1.75
    np.testing.assert_allclose(bilinear_resize_float(y, (1, 2))[0, 0], [2.5, 17.5], rtol=1e-6)


def test_bilinear_resize_float_row_chunks_equal_full():
    rng = make_rng()
    x = rng.standard_normal((3, 17, 11)).astype(np.float32)
    full = bilinear_resize_float(x, (40, 23))
    parts = [bilinear_resize_float(x, (40, 23), rows=(r, r + 7)) for r in range(0, 40, 7)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), full)
    np.testing.assert_array_equal(bilinear_resize_float(x[0], (40, 23)), full[0])


def test_warp_identity_and_integer_shift():
    img = ramp_image(9, 7)
    for method in ("linear", "cubic"):
        np.testing.assert_array_equal(warp_scale_translate(img, (9, 7), (1.0, 1.0), (0.0, 0.0), method), img)
    shifted = warp_scale_translate(img, (9, 7), (1.0, 1.0), (2.0, 1.0), "linear")
    np.testing.assert_array_equal(shifted[1:, 2:], img[:-1, :-2])
    assert (shifted[0] == 0).all() and (shifted[:, :2] == 0).all()  # constant 0 border


@pytest.mark.parametrize(("method", "golden"), [("linear", CV_WARP_LINEAR), ("cubic", CV_WARP_CUBIC)])
def test_warp_matches_opencv_golden(method, golden):
    out = warp_scale_translate(ramp_image(5, 6), (7, 8), (1.7, 1.3), (-2.25, 0.6), method)
    diff = np.abs(out[..., 1].astype(int) - np.array(golden))
    assert diff.max() <= 1 and (diff > 0).sum() <= 1  # one exact .5 tie may round the other way


def test_large_photo_resize_is_fast_enough():
    import time

    big = np.zeros((3000, 4000, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    out = resize(big, (1024, 768), "area")
    assert out.shape == (1024, 768, 3)
    assert time.perf_counter() - t0 < 5.0  # ~0.3 s on a laptop core; gather-based, not dense matrices


def test_warp_constant_border_value():
    img = np.full((4, 4), 100, dtype=np.uint8)
    out = warp_scale_translate(img, (6, 6), (1.0, 1.0), (1.5, 0.0), "linear", border_value=20)
    # Columns: x = 0 is all border, x = 1 half border / half image, x = 2..4 image, x = 5 half.
    np.testing.assert_array_equal(out[0], [20, 60, 100, 100, 100, 60])
    assert (out[4:] == 20).all()
