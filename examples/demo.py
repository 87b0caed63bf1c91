#!/usr/bin/env python3
"""The quick-start demo (`make demo`): classify the seeded sample photos with real weights.

Writes `<stem>_res.json` and `<stem>_res.<ext>` (labels drawn on the photo) per image.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from viewfinder import ViewfinderError, create_pipeline  # noqa: E402

PHOTOS = ROOT / ".assets" / "photos"
CONFIG = ROOT / "examples" / "configs" / "image_classification_mobilenetv2.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="output/demo", help="where to write the results")
    args = parser.parse_args()
    out = Path(args.output) / "classification"
    try:
        pipeline = create_pipeline(str(CONFIG), device="cpu")
        count = 0
        for result in pipeline.predict(str(PHOTOS), topk=3):
            if not result.ok:
                print(f"skipped: {result['error']}")
                continue
            result.save_to_json(out)
            result.save_to_img(out)
            top = result["label_names"][0]
            print(f"{Path(result['input_path']).name:24s} -> {top} ({result['scores'][0]:.3f})")
            count += 1
    except ViewfinderError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 2
    print(f"\n{count} photos classified; visualised results and JSON in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
