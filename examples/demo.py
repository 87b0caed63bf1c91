#!/usr/bin/env python3
"""The quick-start demo (`make demo`), offline with real weights and real photos.

1. Recognition (PP-ShiTuV2): build a gallery index from OpenCV sample photos (one photo
   of each of 10 objects + 19 unrelated photos), then recognise *other* photos of the
   same objects, and darknet's dog/person photos. Mainbody detection: the real COCO
   CenterNet in ../shared/assets (used class-agnostically) when present; features:
   MobileNetV2_x1_0 with torchvision's ImageNet weights.
2. Classification: the sample photos with MobileNetV2_x1_0.

Everything lands in --output: the index folder, `<name>_res.json` and `<name>_res.<ext>`
(boxes and labels drawn) per photo.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from viewfinder import ViewfinderError, create_pipeline  # noqa: E402

ASSETS = ROOT / ".assets"
OPENCV = ASSETS / "opencv"
PHOTOS = ASSETS / "photos"
CENTERNET = Path(os.environ.get("VIEWFINDER_CENTERNET", ROOT.parent / "shared" / "assets" / "centernet.onnx"))
CLASSIFY_CONFIG = ROOT / "examples" / "configs" / "image_classification_mobilenetv2.yaml"
SHITU_CONFIG = ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml"

PAIRS = (("aloeL.jpg", "aloeR.jpg"), ("leuvenA.jpg", "leuvenB.jpg"), ("graf1.png", "graf3.png"),
         ("box.png", "box_in_scene.png"), ("basketball1.png", "basketball2.png"),
         ("rubberwhale1.png", "rubberwhale2.png"), ("aero1.jpg", "aero3.jpg"),
         ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"), ("ela_original.jpg", "ela_modified.jpg"),
         ("left.jpg", "right.jpg"))


def recognition(out: Path, device: str) -> None:
    override: dict = {}
    if CENTERNET.is_file():
        override = {"SubModules": {"Detection": {"spec": {"onnx": str(CENTERNET)}}}}
        print(f"mainbody detector: {CENTERNET}")
    else:
        override = {"SubModules": {"Detection": None}}
        print("mainbody detector: none (../shared/assets/centernet.onnx not found): whole images only")
    pipeline = create_pipeline(str(SHITU_CONFIG), config=override, device=device)

    gallery_dir = out / "gallery"
    gallery_dir.mkdir(parents=True, exist_ok=True)
    partners = {b for _, b in PAIRS}
    lines = [f"{a}\t{Path(a).stem}" for a, _ in PAIRS]
    lines += [f"{p.name}\t{p.stem}" for p in sorted(OPENCV.iterdir()) if p.name not in partners
              and p.name not in {a for a, _ in PAIRS}]
    (gallery_dir / "gallery.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    index = pipeline.build_index(str(OPENCV), str(gallery_dir / "gallery.txt"), show_progress=False)
    index.save(out / "index")
    print(f"gallery index: {len(index)} photos -> {out / 'index'}")

    queries = [str(OPENCV / b) for _, b in PAIRS] + [str(PHOTOS / "dog.jpg"), str(PHOTOS / "person.jpg")]
    expected = {b: Path(a).stem for a, b in PAIRS}
    hits = 0
    for result in pipeline.predict(queries, index=index, rec_threshold=0.0):
        name = Path(result["input_path"]).name
        result.save_to_json(out / "recognition")
        result.save_to_img(out / "recognition")
        best = max((box for box in result["boxes"] if box["labels"]), key=lambda b: b["rec_scores"][0], default=None)
        label = best["labels"][0] if best else "-"
        score = best["rec_scores"][0] if best else None
        mark = ""
        if name in expected:
            hits += label == expected[name]
            mark = "ok" if label == expected[name] else f"expected {expected[name]}"
        # rec_threshold (the config's, proposed by `viewfinder index evaluate`, examples/evaluate_demo.py)
        # is what tells a known object from an unknown one; the recall line above ignores it
        verdict = "" if score is None else \
            ("known" if score >= pipeline.rec_threshold else f"unknown (< rec_threshold {pipeline.rec_threshold})")
        print(f"  {name:22s} {len(result['boxes'])} box(es), best match {label} "
              f"{'' if score is None else f'{score:.3f} '}{verdict} {mark}".rstrip())
    print(f"recall@1 on the {len(PAIRS)} same-object pairs: {hits}/{len(PAIRS)}")


def classification(out: Path, device: str) -> None:
    pipeline = create_pipeline(str(CLASSIFY_CONFIG), device=device)
    for result in pipeline.predict(str(PHOTOS), topk=3):
        if not result.ok:
            print(f"  skipped: {result['error']}")
            continue
        result.save_to_json(out)
        result.save_to_img(out)
        print(f"  {Path(result['input_path']).name:22s} -> {result['label_names'][0]} ({result['scores'][0]:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/demo", help="where to write the results")
    parser.add_argument("--device", default="cpu", help="cpu or gpu:N")
    args = parser.parse_args()
    out = Path(args.output).resolve()
    try:
        print("== PP-ShiTuV2 recognition ==")
        recognition(out, args.device)
        print("\n== image classification ==")
        classification(out / "classification", args.device)
    except ViewfinderError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 2
    print(f"\nOutputs:\n  {out / 'recognition'}  (recognised photos: *_res.jpg/png + *_res.json)\n"
          f"  {out / 'index'}  (the gallery index)\n  {out / 'classification'}  (classified photos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
