"""Bar and line charts drawn with Pillow (matplotlib is not a dependency).

Enough of a chart to read: axes with "nice" ticks, rotated category labels when they
are long, a legend, a title. Used for the dataset-check histogram and training curves.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from ..visualize import font

SERIES_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP = 70, 20, 50


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 5 x 10^k steps; whole numbers when ``integer``)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, round(step))
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 0.5:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _format(value: float) -> str:
    if abs(value) >= 1000 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.3g}"


class _Axes:
    """Maps data coordinates onto a pixel box and draws the frame, grid and y ticks."""

    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], y_range: tuple[float, float],
                 integer: bool = False) -> None:
        self.draw = draw
        self.left, self.top, self.right, self.bottom = box
        self.ticks = nice_ticks(*y_range, integer=integer)
        self.y_low, self.y_high = self.ticks[0], self.ticks[-1]

    def y(self, value: float) -> float:
        span = (self.y_high - self.y_low) or 1.0
        return self.bottom - (value - self.y_low) / span * (self.bottom - self.top)

    def frame(self) -> None:
        face = font(12)
        for tick in self.ticks:
            y = self.y(tick)
            self.draw.line((self.left, y, self.right, y), fill=(225, 225, 225))
            label = _format(tick)
            width = self.draw.textlength(label, font=face)
            self.draw.text((self.left - 6 - width, y - 7), label, font=face, fill=(60, 60, 60))
        self.draw.line((self.left, self.top, self.left, self.bottom), fill=(0, 0, 0))
        self.draw.line((self.left, self.bottom, self.right, self.bottom), fill=(0, 0, 0))


def _legend(draw: ImageDraw.ImageDraw, names: Sequence[str], right: int, top: int) -> None:
    face = font(12)
    y = top
    for index, name in enumerate(names):
        width = draw.textlength(name, font=face)
        x = right - width - 22
        draw.rectangle((x, y + 2, x + 12, y + 12), fill=SERIES_COLOURS[index % len(SERIES_COLOURS)])
        draw.text((x + 16, y), name, font=face, fill=(0, 0, 0))
        y += 16


def _title(draw: ImageDraw.ImageDraw, title: str, width: int) -> None:
    face = font(16)
    draw.text(((width - draw.textlength(title, font=face)) / 2, 12), title, font=face, fill=(0, 0, 0))


def bar_chart(categories: Sequence[str], series: dict[str, Sequence[float]], title: str,
              y_label: str = "", width: int | None = None, height: int = 420) -> Image.Image:
    """Grouped bars: one group per category, one bar per series."""
    categories = [str(c) for c in categories]
    names = list(series)
    face = font(11)
    width = width or max(480, min(4000, 100 + len(categories) * max(14, 10 * len(names))))
    group = (width - _MARGIN_LEFT - _MARGIN_RIGHT) / max(1, len(categories))
    longest = max((face.getlength(c) for c in categories), default=0.0)
    rotate = longest > group * 0.95
    label_space = int(min(140, 12 + longest * 0.87)) if rotate else 24
    top = _MARGIN_TOP + (16 * len(names) if len(names) > 1 else 0)
    image = Image.new("RGB", (width, height + label_space), "white")
    draw = ImageDraw.Draw(image)
    values = [float(v) for vs in series.values() for v in vs]
    peak = max(values, default=0.0)
    integer = all(v.is_integer() for v in values)
    axes = _Axes(draw, (_MARGIN_LEFT, top, width - _MARGIN_RIGHT, height - 10), (0.0, peak or 1.0), integer)
    axes.frame()
    bar = max(1.0, group * 0.8 / max(1, len(names)))
    for index, category in enumerate(categories):
        start = axes.left + index * group + group * 0.1
        for s, name in enumerate(names):
            value = float(series[name][index])
            x0 = start + s * bar
            if value > 0:
                draw.rectangle((x0, axes.y(value), x0 + bar - 1, axes.bottom),
                               fill=SERIES_COLOURS[s % len(SERIES_COLOURS)])
        centre = axes.left + (index + 0.5) * group
        if rotate:
            # Rotated 60 degrees counter-clockwise, the label ends just below its bar group.
            text = Image.new("RGBA", (int(draw.textlength(category, font=face)) + 4, 16), (255, 255, 255, 0))
            ImageDraw.Draw(text).text((0, 0), category, font=face, fill=(40, 40, 40))
            text = text.rotate(60, expand=True, resample=Image.Resampling.BICUBIC)
            image.paste(text, (int(centre - text.width + 8), axes.bottom + 4), text)
        else:
            draw.text((centre - draw.textlength(category, font=face) / 2, axes.bottom + 4), category,
                      font=face, fill=(40, 40, 40))
    if y_label:
        draw.text((6, _MARGIN_TOP - 22), y_label, font=font(12), fill=(60, 60, 60))
    _title(draw, title, width)
    if len(names) > 1:
        _legend(draw, names, width - _MARGIN_RIGHT, _MARGIN_TOP - 8)
    return image


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, x_label: str = "",
               width: int = 640, height: int = 360) -> Image.Image:
    """One line (with point markers) per series of (xs, ys)."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if math.isfinite(y)]
    y_low = min((y for _, y in points), default=0.0)
    y_high = max((y for _, y in points), default=1.0)
    x_low = min((x for x, _ in points), default=0.0)
    x_high = max((x for x, _ in points), default=1.0)
    top = _MARGIN_TOP + 16 * len(series)
    axes = _Axes(draw, (_MARGIN_LEFT, top, width - _MARGIN_RIGHT, height - 40), (y_low, y_high))
    axes.frame()
    x_span = (x_high - x_low) or 1.0

    def x_pixel(x: float) -> float:
        return axes.left + (x - x_low) / x_span * (axes.right - axes.left)

    face = font(12)
    whole = all(float(x).is_integer() for x, _ in points)
    for tick in nice_ticks(x_low, x_high, integer=whole):
        if x_low - 1e-9 <= tick <= x_high + 1e-9:
            x = x_pixel(tick)
            draw.line((x, axes.bottom, x, axes.bottom + 4), fill=(0, 0, 0))
            label = _format(tick)
            draw.text((x - draw.textlength(label, font=face) / 2, axes.bottom + 6), label, font=face, fill=(60, 60, 60))
    for index, (xs, ys) in enumerate(series.values()):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        line = [(x_pixel(x), axes.y(y)) for x, y in zip(xs, ys) if math.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for x, y in line:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    if x_label:
        draw.text(((width - draw.textlength(x_label, font=face)) / 2, height - 18), x_label, font=face, fill=(60, 60, 60))
    _title(draw, title, width)
    _legend(draw, list(series), width - _MARGIN_RIGHT, _MARGIN_TOP - 8)
    return image


def stack(images: Sequence[Image.Image]) -> Image.Image:
    """Images one above the other on a white canvas."""
    width = max(image.width for image in images)
    canvas = Image.new("RGB", (width, sum(image.height for image in images)), "white")
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    return canvas


def save_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
