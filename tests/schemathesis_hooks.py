"""Schemathesis hooks for tests/test_serving_schemathesis.py (loaded through $SCHEMATHESIS_HOOKS).

The spec marks ``image`` fields ``format: image``: a valid value is an image, which no JSON
Schema can say. Positive cases then carry real (small, generated) images, so the service's
success answers are checked against the spec too, not only its 400s.
"""
from __future__ import annotations

import base64
import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image


def encode_image(width: int, height: int, color: tuple[int, int, int], file_format: str, data_uri: bool) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=file_format)
    text = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{file_format.lower()};base64,{text}" if data_uri else text


IMAGES = st.builds(encode_image, st.integers(1, 80), st.integers(1, 80),
                   st.tuples(*[st.integers(0, 255)] * 3), st.sampled_from(["PNG", "JPEG"]), st.booleans())

schemathesis.openapi.format("image", IMAGES)
