"""Real photos, real weights: MobileNetV2_x1_0 (torchvision's ImageNet file) classifies correctly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from viewfinder.io import decode_image

# photo -> ImageNet labels that are a correct top-1 for what the photo shows
ACCEPTED = {
    "chelsea.png": {"tabby, tabby cat", "tiger cat", "Egyptian cat"},
    "coffee.png": {"espresso", "cup", "coffee mug"},
    "camera.png": {"tripod", "reflex camera", "Polaroid camera, Polaroid Land camera"},
    "china.jpg": {"palace", "monastery", "pagoda, pagoda tree", "bell cote, bell cot"},
    "dog.jpg": {"malamute, malemute, Alaskan malamute", "Eskimo dog, husky", "Siberian husky"},
    "eagle.jpg": {"bald eagle, American eagle, Haliaeetus leucocephalus", "kite"},
    # darknet's giraffe.jpg shows a giraffe (no ImageNet class) beside a zebra
    "giraffe.jpg": {"zebra"},
    "grace_hopper.jpg": {"bow tie, bow-tie, bowtie", "military uniform", "suit, suit of clothes"},
    "motorcycle_left.png": {"moped", "motor scooter, scooter"},
    "motorcycle_right.png": {"moped", "motor scooter, scooter"},
    "rocket.jpg": {"space shuttle", "missile", "projectile, missile"},
}


def test_real_photos_top1(mobilenet_v2, photos):
    paths = [str(photos / name) for name in ACCEPTED]
    results = list(mobilenet_v2.predict(paths, batch_size=4, topk=5))
    assert len(results) == len(ACCEPTED)
    wrong = {}
    for result in results:
        name = result["input_path"].rsplit("/", 1)[-1]
        if result["label_names"][0] not in ACCEPTED[name]:
            wrong[name] = result["label_names"][0]
        assert list(result["scores"]) == sorted(result["scores"], reverse=True)
    assert not wrong, f"wrong top-1: {wrong}"


def test_same_top1_as_torchvision_reference(mobilenet_v2, mobilenet_v2_weights, photos):
    """Key mapping check: torchvision's own MobileNetV2 on the same tensors gives the same logits."""
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(mobilenet_v2_weights, map_location="cpu", weights_only=True))
    reference.eval()
    images = [decode_image(str(photos / name)).rgb for name in ACCEPTED]
    batch = mobilenet_v2.preprocess(images)
    ours = mobilenet_v2.raw(batch)
    with torch.inference_mode():
        theirs = reference(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert (ours.argmax(1) == theirs.argmax(1)).all()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batching_does_not_change_results(mobilenet_v2, photos, batch_size):
    names = ["chelsea.png", "coffee.png", "dog.jpg", "rocket.jpg"]
    results = list(mobilenet_v2.predict([str(photos / n) for n in names], batch_size=batch_size, topk=1))
    assert [r["label_names"][0] for r in results][:2] == ["Egyptian cat", "espresso"]
    single = list(mobilenet_v2.predict(str(photos / "dog.jpg"), topk=1))[0]
    assert abs(float(results[2]["scores"][0]) - float(single["scores"][0])) < 1e-4
