"""Input expansion and decoding: arrays are BGR, folders recurse sorted, draft decode keeps enough pixels."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from viewfinder.io import decode_image, iter_inputs


def test_bgr_array_becomes_rgb():
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    decoded = decode_image(bgr)
    assert decoded.rgb[0, 0].tolist() == [255, 0, 0]
    gray = decode_image(np.full((4, 5), 7, np.uint8))
    assert gray.rgb.shape == (4, 5, 3)
    bgra = decode_image(np.zeros((3, 3, 4), np.uint8))
    assert bgra.rgb.shape == (3, 3, 3)


def test_pil_bytes_and_modes():
    rgba = Image.new("RGBA", (5, 5), (0, 0, 0, 0))
    assert decode_image(rgba).rgb[0, 0].tolist() == [255, 255, 255]  # transparent -> white
    buffer = io.BytesIO()
    Image.new("L", (6, 3), 100).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue())
    assert decoded.rgb.shape == (3, 6, 3) and decoded.input_path is None


def test_folder_recursion_sorted_and_filtered(tmp_path):
    for rel in ["b/2.jpg", "a/1.PNG", "c.txt", "a/z.bmp", "0.webp"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = [item.input_path for item in iter_inputs(str(tmp_path))]
    names = [p.replace(str(tmp_path) + "/", "") for p in found]
    assert names == ["0.webp", "a/1.PNG", "a/z.bmp", "b/2.jpg"]


def test_lists_and_dicts(photos):
    items = list(iter_inputs({"first": str(photos / "dog.jpg"), "array": np.zeros((2, 2, 3), np.uint8)}))
    assert items[0].input_path.endswith("dog.jpg") and items[1].input_path == "array"
    assert len(list(iter_inputs([str(photos / "dog.jpg"), [str(photos / "kite.jpg")]]))) == 2


def test_draft_decode_keeps_short_side(tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1200), (10, 200, 30)).save(big, quality=90)
    decoded = decode_image(str(big), min_short_side=256)
    assert min(decoded.rgb.shape[:2]) >= 256 and decoded.rgb.shape[1] < 2000
    assert decoded.original_size == (2000, 1200) and decoded.reduced
    full = decode_image(str(big))
    assert full.rgb.shape == (1200, 2000, 3) and not full.reduced


def test_exif_rotation_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (40, 20), (255, 0, 0)).save(path, exif=exif)
    decoded = decode_image(str(path))
    assert decoded.rgb.shape[:2] == (40, 20) and decoded.original_size == (20, 40)


def test_keep_pil_holds_the_same_pixels_without_an_array(tmp_path):
    # The classification path resizes straight from the Pillow image; the array for drawing
    # is made on first use and must be the one the plain decode gives.
    png = tmp_path / "alpha.png"
    Image.new("RGBA", (7, 5), (10, 20, 30, 0)).save(png)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (255, 0, 0)).save(rotated, exif=exif)
    for source in (str(png), str(rotated), rotated.read_bytes()):
        kept = decode_image(source, keep_pil=True)
        plain = decode_image(source)
        assert kept.rgb is None and kept.pil.mode == "RGB"
        assert kept.decoded_size == plain.decoded_size and kept.original_size == plain.original_size
        assert np.array_equal(np.asarray(kept.pil), plain.rgb) and not kept.reduced
