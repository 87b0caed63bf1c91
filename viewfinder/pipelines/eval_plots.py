"""The pictures of an open-set evaluation: threshold curves (matplotlib, the ``[plots]`` extra) and a
contact sheet of the worst failures (Pillow only): query crop | wrong match, with labels and scores."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageOps

from ..visualize import drawable, font

#: side of one tile of the contact sheet, in pixels
TILE = 160
CAPTION = 34


def threshold_curves(report: dict[str, Any], path: Path) -> None:
    """Unknown precision/recall/F1 and known-accepted share against rec_threshold; raises ImportError
    without matplotlib."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = report["threshold_curve"]
    xs = [r["threshold"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=80)
    try:
        ax.plot(xs, [r["unknown_precision"] for r in rows], label="unknown precision", color="tab:blue")
        ax.plot(xs, [r["unknown_recall"] for r in rows], label="unknown recall", color="tab:orange")
        ax.plot(xs, [r["f1"] for r in rows], label="F1 (reject unknowns)", color="tab:green")
        ax.plot(xs, [r["known_accepted"] for r in rows], label="known accepted", color="tab:gray", linestyle="--")
        chosen = report.get("suggested_rec_threshold")
        if chosen is not None:
            ax.axvline(chosen, color="tab:red", linewidth=1)
            ax.annotate(f"{chosen:.3f}", (chosen, 0.02), color="tab:red", fontsize=8)
        ax.set_xlabel("rec_threshold" + (" (L2 distance)" if report.get("metric_type") == "L2" else ""))
        ax.set_ylim(-0.02, 1.05)
        if len(xs) > 2:  # the outermost cuts lie a whole unit past the scores: keep the plot on them
            ax.set_xlim(min(xs[1], xs[-2]) - 0.05, max(xs[1], xs[-2]) + 0.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        r1 = report.get("recall1")
        ax.set_title(f"recall@1 {r1:.2f}, best F1 {report.get('best_f1') or 0:.2f}" if r1 is not None else "",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _tile(path: str | None, box: list[float] | None) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE), (235, 235, 235))
    if not path or not Path(path).is_file():
        ImageDraw.Draw(tile).text((6, TILE // 2 - 8), "no image path" if not path else "missing file",
                                  fill=(120, 0, 0), font=font(12))
        return tile
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except OSError:
        ImageDraw.Draw(tile).text((6, TILE // 2 - 8), "unreadable", fill=(120, 0, 0), font=font(12))
        return tile
    if box:
        x1, y1, x2, y2 = (int(round(c)) for c in box)
        if x2 > x1 and y2 > y1:
            image = image.crop((max(0, x1), max(0, y1), min(image.width, x2), min(image.height, y2)))
    image.thumbnail((TILE, TILE))
    tile.paste(image, ((TILE - image.width) // 2, (TILE - image.height) // 2))
    return tile


def contact_sheet(failures: list[dict[str, Any]], path: Path) -> None:
    """One row per failure: the query's best box | the gallery image it matched, captions under each."""
    rows = len(failures)
    sheet = Image.new("RGB", (2 * TILE + 12, rows * (TILE + CAPTION) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    small = font(11)
    for n, failure in enumerate(failures):
        top = n * (TILE + CAPTION) + 2
        sheet.paste(_tile(failure["query"], failure.get("box")), (2, top))
        sheet.paste(_tile(failure.get("match_path"), None), (TILE + 10, top))
        truth = failure["truth"] if failure["truth"] is not None else "unknown"
        draw.text((2, top + TILE + 2), drawable(f"{Path(failure['query']).name}"), fill="black", font=small)
        draw.text((2, top + TILE + 16), drawable(f"truth: {truth}"), fill=(0, 90, 0), font=small)
        draw.text((TILE + 10, top + TILE + 2), drawable(f"matched: {failure['matched']}"), fill=(150, 0, 0),
                  font=small)
        draw.text((TILE + 10, top + TILE + 16), f"score {failure['score']:.3f}", fill=(150, 0, 0), font=small)
    # a palette keeps the sheet small enough to commit next to docs (photos dither fine at 128 colours)
    sheet.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
