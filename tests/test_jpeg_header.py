"""The JPEG marker scan that the GPU decode path uses agrees with Pillow."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from viewfinder.models.gpu_decode import CudaJpegDecoder
from viewfinder.io import iter_inputs
from viewfinder.io.jpeg_header import read_jpeg_header
from viewfinder.models.preprocess import PreprocessConfig


def _pillow_facts(data: bytes) -> tuple[tuple[int, int], int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size, {"L": 1, "RGB": 3, "CMYK": 4}[img.mode], img.getexif().get(0x0112, 1)


def _jpeg(img: Image.Image, mode: str = "RGB", orientation: int | None = None, **options) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    out = io.BytesIO()
    img.convert(mode).save(out, "JPEG", exif=exif.tobytes() if orientation else b"", **options)
    return out.getvalue()


def test_agrees_with_pillow_on_real_photos(photos):
    jpegs = sorted(photos.glob("*.jpg"))
    assert jpegs
    for path in jpegs:
        data = path.read_bytes()
        header = read_jpeg_header(data)
        assert header is not None, path
        assert ((header.width, header.height), header.components, header.orientation) == _pillow_facts(data)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("orientation", [None, 3, 6, 8])
@pytest.mark.parametrize("progressive", [False, True])
def test_agrees_with_pillow_on_variants(photos, mode, orientation, progressive):
    with Image.open(photos / "chelsea.png") as img:
        data = _jpeg(img.resize((97, 61)), mode, orientation, progressive=progressive)
    header = read_jpeg_header(data)
    assert ((header.width, header.height), header.components, header.orientation) == _pillow_facts(data)


def test_big_endian_exif_orientation():
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    tiff = b"MM" + struct.pack(">HI", 42, 8) + ifd
    app1 = b"Exif\x00\x00" + tiff
    sof = bytes([8]) + struct.pack(">HH", 48, 64) + bytes([3]) + bytes(9)
    data = (b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
            + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9")
    header = read_jpeg_header(data)
    assert (header.width, header.height, header.components, header.orientation) == (64, 48, 3, 6)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"not a jpeg at all", b"\x89PNG\r\n\x1a\n" + bytes(64),
                                  b"\xff\xd8\xff\xe0\x00\x01", b"\xff\xd8\xff\xda\x00\x08" + bytes(8)])
def test_malformed_input_gives_none(data):
    assert read_jpeg_header(data) is None


def test_truncated_real_jpeg_still_reads_or_gives_none(photos):
    data = next(iter(sorted(photos.glob("*.jpg")))).read_bytes()
    for cut in (3, 20, 200, len(data) // 2):
        header = read_jpeg_header(data[:cut])  # never raises
        assert header is None or header.width > 0


def test_gpu_path_sends_rotated_and_cmyk_files_to_the_cpu(tmp_path, photos):
    decoder = CudaJpegDecoder(PreprocessConfig(), torch.device("cpu"))
    with Image.open(photos / "chelsea.png") as img:
        files = {"plain": _jpeg(img), "rotated": _jpeg(img, orientation=6), "cmyk": _jpeg(img, "CMYK"),
                 "grey": _jpeg(img, "L")}
    taken = {}
    for name, data in files.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(data)
        (item,) = iter_inputs(str(path))
        taken[name] = decoder.read(item, max_pixels=10**8) is not None
    assert taken == {"plain": True, "rotated": False, "cmyk": False, "grey": True}
    (item,) = iter_inputs(str(tmp_path / "plain.jpg"))
    assert decoder.read(item, max_pixels=100) is None  # over the pixel limit: the CPU path reports it
    pending = decoder.read(item, max_pixels=10**8)
    assert pending.size == Image.open(tmp_path / "plain.jpg").size
    assert np.array_equal(pending.data.numpy(), np.frombuffer(files["plain"], dtype=np.uint8))
