"""Image loading (modes, EXIF orientation, errors) and atomic PNG writing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sapiens_edge.errors import ImageError
from sapiens_edge.runtime.image import load_image, save_png_atomic

RED, WHITE = (255, 0, 0), (255, 255, 255)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_rgb_png_path_bytes_and_pil(tmp_path):
    arr = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    for src in (path, str(path), path.read_bytes(), Image.open(path), arr):
        out = load_image(src)
        assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
        np.testing.assert_array_equal(out, arr)


def test_grayscale_modes_expand_to_three_equal_channels():
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    for img in (Image.fromarray(gray, "L"), Image.fromarray(gray, "L").convert("LA")):
        out = load_image(_png(img))
        assert out.shape == (2, 2, 3)
        np.testing.assert_array_equal(out[..., 1], gray)
        assert (out[..., 0] == out[..., 2]).all()
    bw = load_image(_png(Image.fromarray(gray > 128)))  # mode "1"
    np.testing.assert_array_equal(bw[..., 0], [[0, 0], [255, 255]])


def test_rgba_drops_alpha_without_compositing():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[0, 0, 3] = 0  # fully transparent pixel keeps its colour, like cv2.imread
    rgba[1, 1, 3] = 255
    out = load_image(_png(Image.fromarray(rgba, "RGBA")))
    assert (out == (10, 20, 30)).all()


def test_palette_image_uses_palette_colours():
    p = Image.new("P", (3, 1))
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    p.putdata([0, 1, 2])
    out = load_image(_png(p))
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [255, 0, 0], [0, 0, 255]])


def test_16bit_png_keeps_high_byte(tmp_path):
    a = np.array([[0x1234, 65535], [300, 255]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[..., 0], [[0x12, 255], [1, 0]])


def test_float_and_cmyk_modes():
    f = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32), "F")
    np.testing.assert_array_equal(load_image(f)[..., 0], [[0, 128], [255, 64]])
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in naive CMYK
    assert tuple(load_image(cmyk)[0, 0]) == RED


@pytest.mark.parametrize(("orientation", "shape", "red_at", "white_at"), [
    (6, (40, 20, 3), (2, 18), (2, 2)),  # rotate 90 deg clockwise: top-left goes top-right
    (8, (40, 20, 3), (37, 2), (2, 2)),  # rotate 90 deg counter-clockwise: top-left goes bottom-left
])
def test_exif_orientation_applied(tmp_path, orientation, shape, red_at, white_at):
    img = Image.new("RGB", (40, 20), WHITE)
    img.paste(RED, (0, 0, 10, 5))  # stored: red block at the top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    img.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.shape == shape
    assert np.abs(out[red_at].astype(int) - RED).max() < 40
    assert np.abs(out[white_at].astype(int) - WHITE).max() < 40


def test_errors_name_the_file_and_say_what_to_do(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match=r"nope\.jpg") as e:
        load_image(missing)
    assert "Check the path" in str(e.value)
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"definitely not an image")
    with pytest.raises(ImageError, match=r"junk\.png"):
        load_image(junk)
    with pytest.raises(ImageError):
        load_image(b"\x89PNG garbage")


def test_truncated_jpeg_is_an_image_error(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg"):
        load_image(path)


def test_bad_arrays_rejected():
    with pytest.raises(ImageError):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageError):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))


def test_save_png_atomic_round_trip(tmp_path):
    arr = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    out = save_png_atomic(tmp_path / "sub" / "x.png", arr)
    np.testing.assert_array_equal(load_image(out), arr)
    save_png_atomic(out, Image.fromarray(arr[..., 0]))  # replaces in place
    assert np.asarray(Image.open(out)).shape == (6, 7)
    mask = save_png_atomic(tmp_path / "m.png", np.eye(3, dtype=bool))
    np.testing.assert_array_equal(np.asarray(Image.open(mask)), np.eye(3) * 255)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["m.png", "x.png"]  # no temp files
    with pytest.raises(ValueError):
        save_png_atomic(tmp_path / "bad.png", np.zeros((2, 2), dtype=np.float32))
    assert not (tmp_path / "bad.png").exists()
