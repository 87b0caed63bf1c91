"""Drawing helpers shared by the result classes. Uses a bundled CJK-capable font."""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FILE = "wqy-microhei.ttc"

# A fixed, readable palette; labels map onto it by hash so a label keeps its colour.
PALETTE = [
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128),
    (170, 110, 40), (128, 0, 0), (128, 128, 0), (0, 0, 128), (255, 225, 25),
]


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    path = resources.files("viewfinder") / "fonts" / FONT_FILE
    with resources.as_file(path) as real_path:
        return ImageFont.truetype(str(real_path), max(8, int(size)))


#: characters text layout refuses or breaks lines at (Unicode Cc, Zl, Zp): drawn as escapes instead
_UNDRAWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: the most characters of one text drawn (a longer one is cut, with an ellipsis): text layout time
#: grows with the length, and no picture is wide enough for more
MAX_DRAWN_CHARS = 200


def drawable(text: str) -> str:
    """``text`` as it is drawn: control characters and line separators shown as ``\\xNN`` / ``\\uNNNN``
    escapes, and cut to :data:`MAX_DRAWN_CHARS` characters."""
    if len(text) > MAX_DRAWN_CHARS:
        text = text[:MAX_DRAWN_CHARS - 1] + "\u2026"
    return _UNDRAWABLE.sub(lambda m: repr(m.group())[1:-1], text)


def color_for(label: str) -> tuple[int, int, int]:
    return PALETTE[sum(label.encode("utf-8")) % len(PALETTE)]


def _to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")


def draw_label_lines(image: np.ndarray | Image.Image, lines: list[str]) -> Image.Image:
    """Write ``lines`` top-left on a copy of ``image``, each on a dark band (PaddleX's classification look)."""
    canvas = _to_pil(image).copy()
    draw = ImageDraw.Draw(canvas)
    size = max(10, int(0.03 * min(canvas.size) + 6))
    face = font(size)
    y = 2
    for line in lines or ["(no label above threshold)"]:
        line = drawable(line)
        left, top, right, bottom = draw.textbbox((4, y), line, font=face)
        draw.rectangle((0, y, right + 4, bottom + 2), fill=(0, 0, 0))
        draw.text((4, y), line, font=face, fill=color_for(line.rsplit(" ", 1)[0]))
        y = bottom + 4
        if y > canvas.size[1]:
            break
    return canvas


def draw_boxes(image: np.ndarray | Image.Image, boxes: list[tuple[list[float], str]]) -> Image.Image:
    """Draw ``(coordinate [x1,y1,x2,y2], text)`` boxes with the text above each box."""
    canvas = _to_pil(image).copy()
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    face = font(int(0.018 * width + 2))
    thickness = max(1, int(0.002 * max(width, height)))
    for coordinate, text in boxes:
        text = drawable(text)
        x1, y1, x2, y2 = (float(c) for c in coordinate)
        colour = color_for(text.rsplit(" ", 1)[0])
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=thickness)
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=face)
        text_h = bottom - top
        ty = y1 - text_h - 4 if y1 - text_h - 4 >= 0 else y1
        draw.rectangle((x1, ty, x1 + (right - left) + 4, ty + text_h + 4), fill=colour)
        draw.text((x1 + 2, ty - (top - y1) + 1), text, font=face, fill=(255, 255, 255))
    return canvas
