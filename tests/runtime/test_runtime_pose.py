"""Pose: flip table, flip test, UDP/DARK decoding (vs. mmpose golden values), image coordinates."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sapiens_edge import metadata
from sapiens_edge.runtime.pose import decode_udp_dark, flip_back, heatmap_to_image, merge_flip

from .runtime_testutils import gaussian_map, make_rng

FLIP = metadata.keypoints().flip_indices

# mmpose UDPHeatmap.decode (with cv2.GaussianBlur) on the four maps built in _golden_maps().
MMPOSE_COORDS = [[80.30004119873047, 120.69995880126953], [-0.49999967217445374, 255.5],
                 [150.25, 10.749998092651367], [60.0, 60.0]]
MMPOSE_SCORES = [0.9777507185935974, 0.7859036922454834, 0.4991327226161957, 0.0020000000949949026]


def _golden_maps() -> np.ndarray:
    params = [(80.3, 120.7, 2.0, 1.0), (0.4, 254.6, 3.0, 0.8), (150.25, 10.75, 6.0, 0.5), (60.0, 60.0, 1.0, 0.002)]
    yy, xx = np.mgrid[0:256, 0:192].astype(np.float32)
    hm = np.stack([a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) for x, y, s, a in params])
    hm = hm.astype(np.float32)
    # A faint broad second bump: low values get clipped at 0.001, so the blurred max matters here.
    hm[3] += 0.0015 * np.exp(-((xx - 120) ** 2 + (yy - 200) ** 2) / (2 * 9.0 ** 2)).astype(np.float32)
    return hm


def test_flip_table_properties():
    assert FLIP.shape == (308,)
    np.testing.assert_array_equal(FLIP[FLIP], np.arange(308))  # involution
    fixed = np.flatnonzero(np.arange(308) == FLIP)
    assert len(fixed) == 16
    assert (308 - len(fixed)) // 2 == 146
    names = metadata.keypoints().names
    assert names[FLIP[names.index("left_wrist")]] == "right_wrist"
    assert names.index("nose") in fixed and names.index("neck") in fixed


def test_flip_back_twice_is_identity():
    x = make_rng().standard_normal((2, 308, 8, 6)).astype(np.float32)
    np.testing.assert_array_equal(flip_back(flip_back(x, FLIP), FLIP), x)
    once = flip_back(x, FLIP)
    k = int(np.flatnonzero(np.arange(308) != FLIP)[0])
    np.testing.assert_array_equal(once[:, k], x[:, FLIP[k], :, ::-1])  # mirror width, then permute


def test_flip_test_of_symmetric_prediction_is_unchanged():
    # A perfectly equivariant model: the flipped input yields mirrored maps with swapped channels.
    x = make_rng().random((1, 308, 16, 12), dtype=np.float32)
    flipped = x[..., ::-1][:, FLIP]
    np.testing.assert_allclose(merge_flip(x, flipped, FLIP), x, rtol=1e-7)


def test_decode_recovers_subpixel_gaussian():
    hm = gaussian_map(256, 192, 80.3, 120.7, 2.0)[None]
    coords, scores = decode_udp_dark(hm)
    assert coords.shape == (1, 2) and coords.dtype == np.float32
    assert abs(coords[0, 0] - 80.3) < 0.05 and abs(coords[0, 1] - 120.7) < 0.05
    assert scores[0] == pytest.approx(hm[0].max())


def test_decode_matches_mmpose_golden():
    coords, scores = decode_udp_dark(_golden_maps())
    np.testing.assert_allclose(coords, MMPOSE_COORDS, atol=1e-3)
    np.testing.assert_allclose(scores, MMPOSE_SCORES, rtol=1e-6)


def test_decode_many_keypoints_vectorised_and_fast():
    rng = make_rng()
    truth = np.stack([rng.uniform(10, 181, 308), rng.uniform(10, 245, 308)], axis=1)
    hm = np.stack([gaussian_map(256, 192, x, y, 2.0) for x, y in truth])
    for _ in range(2):  # warm-up, then time three persons
        t0 = time.perf_counter()
        for _ in range(3):
            coords, _ = decode_udp_dark(hm)
        elapsed = time.perf_counter() - t0
    assert np.abs(coords - truth).max() < 0.05
    assert elapsed < 0.5  # ~10 ms on a laptop core


def test_nonpositive_scores_give_minus_one():
    hm = np.zeros((3, 16, 12), dtype=np.float32)
    hm[1] = -1.0
    hm[2, 5, 7] = 0.5
    coords, scores = decode_udp_dark(hm)
    np.testing.assert_array_equal(coords[:2], [[-1, -1], [-1, -1]])
    assert scores[2] == pytest.approx(0.5)
    assert np.abs(coords[2] - [7, 5]).max() < 0.5


def test_first_maximum_wins_ties():
    hm = np.zeros((1, 16, 12), dtype=np.float32)
    hm[0, 3, 9] = hm[0, 10, 2] = 1.0  # row-major order: (y=3, x=9) comes first
    coords, _ = decode_udp_dark(hm)
    assert np.abs(coords[0] - [9, 3]).max() < 0.5


def test_heatmap_to_image_net_formula():
    coords = np.array([[0.0, 0.0], [191.0, 255.0], [80.3, 120.7]], dtype=np.float32)
    c, s = np.array([300.0, 400.0]), np.array([240.0, 320.0])
    out = heatmap_to_image(coords, c, s, (256, 192))
    expected = coords * s / np.array([191.0, 255.0]) + c - s / 2
    np.testing.assert_allclose(out, expected, atol=1e-3)
    np.testing.assert_allclose(out[0], c - s / 2, atol=1e-3)  # heatmap corners map to box corners
    np.testing.assert_allclose(out[1], c + s / 2, atol=1e-3)


def test_full_chain_to_image_coordinates():
    hm = gaussian_map(256, 192, 50.25, 200.5, 2.0)[None]
    coords, _ = decode_udp_dark(hm)
    c, s = np.array([512.0, 384.0]), np.array([600.0, 800.0])
    img_xy = heatmap_to_image(coords, c, s, (256, 192))[0]
    assert img_xy[0] == pytest.approx(50.25 * 600 / 191 + 512 - 300, abs=0.05 * 600 / 191)
    assert img_xy[1] == pytest.approx(200.5 * 800 / 255 + 384 - 400, abs=0.05 * 800 / 255)
