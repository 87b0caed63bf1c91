"""Fine-tuning on tiny real-photo datasets: losses, metrics, a step that learns, resume, export -> reload.

The networks run at 32 px on 48-px thumbnails, so every test takes seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from test_datasets import ANIMALS, OBJECTS, make_cls, make_ml, make_rec
from viewfinder import create_model
from viewfinder.cli import cli
from viewfinder.training import TrainConfig, Trainer, evaluate, train
from viewfinder.training.losses import AsymmetricLoss, TripletAngularMarginLoss
from viewfinder.training.metrics import multilabel_map, retrieval_metrics, topk_accuracy
from viewfinder.training.network import RecognitionHead
from viewfinder.training.samplers import PKSampler, shuffled_batches

FAST = {"model": "MobileNetV2_x1_0", "device": "cpu", "input_size": 32, "batch_size": 4, "epochs": 1,
        "learning_rate": 0.005, "warmup_epochs": 0.0, "export_onnx": False, "evaluate_start": False}


def config(root, kind, output, **changes) -> TrainConfig:
    return TrainConfig(dataset_dir=str(root), dataset_type=kind, output=str(output), **{**FAST, **changes})


# --------------------------------------------------------------------------- losses, samplers, metrics


def test_asymmetric_loss_matches_its_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.2, 1.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    p = torch.sigmoid(logits)
    shifted = (p - 0.05).clamp(min=0)  # negatives: probability shifted down by the clip margin
    expected = -(targets * torch.log(p) + (1 - targets) * shifted ** 4 * torch.log(1 - shifted)).sum() / 2
    assert torch.allclose(AsymmetricLoss(0.0, 4.0, 0.05)(logits, targets), expected, atol=1e-6)
    # easy negatives (p < clip) cost nothing
    assert AsymmetricLoss()(torch.tensor([[-4.0]]), torch.tensor([[0.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_triplet_angular_margin_loss():
    loss = TripletAngularMarginLoss(margin=0.5, ap_value=0.8, an_value=0.4, absolute_loss_weight=0.1)
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    assert loss(separated, labels).item() == pytest.approx(0.0, abs=1e-4)
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.0, 1.1]])
    # anchor 0: least similar positive cos 0, most similar negative ~0.995 -> hinge ~1.495
    value = loss(mixed, labels)
    normed = F.normalize(mixed, dim=1)
    sim = normed @ normed.T
    s_ap = torch.stack([sim[0, 1], sim[1, 0], sim[2, 3], sim[3, 2]])
    s_an = torch.stack([sim[0, 2:].max(), sim[1, 2:].max(), sim[2, :2].max(), sim[3, :2].max()])
    expected = F.relu(s_an - s_ap + 0.5).mean() + 0.1 * (F.relu(0.8 - s_ap).mean() + F.relu(s_an - 0.4).mean())
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    value.backward() if value.requires_grad else None
    assert loss(mixed, torch.tensor([0, 0, 0, 0])).item() == 0.0  # no negatives: nothing to learn


@pytest.mark.parametrize("kind", ["fc", "arcmargin", "cosmargin"])
def test_recognition_heads_margins_and_folding(kind):
    torch.manual_seed(0)
    head = RecognitionHead(16, 5, kind, margin=0.3, scale=10.0)
    embedding, targets = torch.randn(12, 16), torch.arange(12) % 5
    head.eval()
    plain = head(embedding)
    target = F.one_hot(targets, 5).bool()
    if kind == "fc":
        torch.testing.assert_close(head(embedding, targets), plain)
    else:
        # eval: scale * cosine to each identity's weight; training widens only the target's angle
        cosine = F.normalize(head.neck(embedding)) @ F.normalize(head.fc.weight).T
        torch.testing.assert_close(plain, 10.0 * cosine)
        head.train()
        logits = head(embedding, targets)
        head.eval()
        train_cosine = F.normalize(F.batch_norm(embedding, None, None, head.neck.weight, head.neck.bias,
                                                training=True)) @ F.normalize(head.fc.weight).T
        angle = torch.arccos(train_cosine[target])
        expected = torch.cos(angle + 0.3) if kind == "arcmargin" else train_cosine[target] - 0.3
        torch.testing.assert_close(logits[target], 10.0 * expected)
        torch.testing.assert_close(logits[~target], 10.0 * train_cosine[~target])
    # export folds the BNNeck and head into one Linear with the same decisions
    weight, bias = head.folded()
    assert torch.equal((embedding @ weight.T + bias).argmax(1), plain.argmax(1))


def test_pk_sampler_and_shuffled_batches():
    labels = [0] * 5 + [1] * 2 + [2] * 9
    sampler = PKSampler(labels, batch_size=4, sample_per_id=2)
    batches = sampler.batches(seed=0, epoch=0)
    assert len(batches) == 4 and all(len(b) == 4 for b in batches)
    for batch in batches:
        ids = [labels[i] for i in batch]
        assert len(set(ids)) == 2 and all(ids.count(x) == 2 for x in set(ids))
    assert sampler.batches(0, 0) == batches and sampler.batches(0, 1) != batches
    # images are dealt, not drawn with replacement: an epoch over a balanced set shows each one once
    balanced = [label for label in range(4) for _ in range(6)]
    dealt = PKSampler(balanced, batch_size=8, sample_per_id=2).batches(seed=3, epoch=1)
    assert sorted(sum(dealt, [])) == list(range(24))
    # fewer identities than batch_size / K: K grows (10 x 6 = 60 per batch) and the epoch still covers every image
    ten_classes = [label for label in range(10) for _ in range(60)]
    grown = PKSampler(ten_classes, batch_size=64, sample_per_id=4).batches(seed=0, epoch=0)
    assert {len(b) for b in grown} == {60} and sorted(sum(grown, [])) == list(range(600))
    plain = shuffled_batches(10, 4, seed=1, epoch=0)
    assert [len(b) for b in plain] == [4, 4] and len(set(sum(plain, []))) == 8


def test_metrics_by_hand():
    logits = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])
    assert topk_accuracy(logits, np.array([1, 2, 2]), ks=(1, 2)) == {"val.top1": 2 / 3, "val.top2": 2 / 3}
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.6]])
    targets = np.array([[1, 0], [0, 1], [1, 1]])
    # class 0 ranking: + - + -> AP (1 + 2/3) / 2; class 1: + + - -> AP 1
    assert multilabel_map(scores, targets)["MultiLabelMAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    gallery = np.eye(3, dtype=np.float32)
    query = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.9]], dtype=np.float32)
    result = retrieval_metrics(query, [0, 1], gallery, [0, 1, 2], topk=(1, 2))
    assert result == {"recall1": 0.5, "recall2": 1.0, "mAP": pytest.approx((1 + 0.5) / 2)}
    # a gallery entry that is the query's own image is ignored
    own = np.array([[0.8, 0.0, 0.6]], dtype=np.float32)
    assert retrieval_metrics(own, [0], gallery, [0, 0, 1], topk=(1,))["recall1"] == 1.0
    same = retrieval_metrics(own, [0], gallery, [0, 0, 1], topk=(1,), query_paths=["a"],
                             gallery_paths=["a", "b", "c"])
    assert same["recall1"] == 0.0 and same["mAP"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- training steps


@pytest.mark.parametrize("kind, maker, head", [("ClsDataset", make_cls, None), ("MLClsDataset", make_ml, None),
                                               ("ShiTuRecDataset", make_rec, "fc"),
                                               ("ShiTuRecDataset", make_rec, "arcmargin")])
def test_one_training_step_reduces_the_loss(tmp_path, photos, mobilenet_v2_weights, kind, maker, head):
    root = maker(tmp_path / "data", photos)
    changes = {"batch_size": 8, "sample_per_id": 2, "head": head} if head else {"batch_size": 8}
    trainer = prepared_trainer(config(root, kind, tmp_path / "out", learning_rate=0.005, hflip=False, crop="none",
                                      pad=0, **changes))
    before, after = losses_around_one_step(trainer)
    assert after < before, (before, after)


def prepared_trainer(train_config: TrainConfig) -> Trainer:
    """A trainer with model, data and optimiser built (its log open only while preparing)."""
    trainer = Trainer(train_config, progress=False)
    trainer._open_log()
    try:
        trainer.prepare()
    finally:
        trainer._close_log()
    return trainer


def losses_around_one_step(trainer: Trainer) -> tuple[float, float]:
    """The first batch's loss before and after one training step on it."""
    images, targets = next(iter(trainer._loader(trainer._batches(0)[:1])))
    trainer.model.train(True)
    # Dropout is random in train mode: compare both losses under the same masks.
    torch.manual_seed(0)
    with torch.no_grad():
        before = trainer._loss(images, targets).item()
    trainer.train_step(images, targets)
    torch.manual_seed(0)
    with torch.no_grad():
        after = trainer._loss(images, targets).item()
    return before, after


def test_pad_crop_and_flip_on_whole_batches_match_the_per_image_transforms(tmp_path, photos, mobilenet_v2_weights):
    root = make_rec(tmp_path / "data", photos)
    rec = {"batch_size": 8, "sample_per_id": 2, "crop": "pad_crop", "rotate_prob": 0.0}
    plain = prepared_trainer(config(root, "ShiTuRecDataset", tmp_path / "a", pad=0, hflip=False, **rec))
    assert plain.resized_batches is not None
    indices = plain._batches(0)[0]
    images, targets = plain.resized_batches.batch(indices)
    expected = torch.stack([plain.train_data[i][0] for i in indices])  # PIL + torchvision, one image at a time
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert targets.tolist() == [int(plain.train_data[i][1]) for i in indices]

    # padded and flipped: every image is a window of its zero-padded base image, mirrored or not
    padded = prepared_trainer(config(root, "ShiTuRecDataset", tmp_path / "b", pad=4, hflip=True, **rec))
    batched = padded.resized_batches
    torch.manual_seed(0)
    images, _ = batched.batch(indices * 4)
    black = batched.shift.view(3, 1, 1)  # what a zero pixel normalises to
    seen = set()
    for image, base in zip(images, torch.cat([expected] * 4)):
        canvas = black.expand(3, 40, 40).clone()
        canvas[:, 4:36, 4:36] = base
        found = [(flip, top, left) for flip in (False, True) for top in range(9) for left in range(9)
                 if torch.allclose(image.flip(-1) if flip else image, canvas[:, top:top + 32, left:left + 32],
                                   atol=1e-5)]
        assert found, "an augmented image is no window of its padded base image"
        seen.add(found[0])
    assert {flip for flip, _, _ in seen} == {False, True} and len(seen) > 10

    # a recipe with other random steps (rotation) keeps the per-image transforms
    rotating = prepared_trainer(config(root, "ShiTuRecDataset", tmp_path / "c", **{**rec, "rotate_prob": 0.5}))
    assert rotating.resized_batches is None
    images, _ = next(iter(rotating._loader(rotating._batches(0)[:1])))
    assert images.shape == (8, 3, 32, 32)


def test_cls_training_outputs_resume_and_export_roundtrip(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    out = tmp_path / "out"
    trainer = Trainer(config(root, "ClsDataset", out), progress=False)
    first = trainer.run()
    assert first["done_flag"] is True and first["epochs_done"] == 1
    for name in ("train_result.json", "train.log", "config.yaml", "train_curve.png", "last_checkpoint.pt",
                 "epoch_1/checkpoint.pt", "best_model/model.safetensors", "best_model/config.yaml"):
        assert (out / name).is_file(), name
    assert json.loads((out / "train_result.json").read_text())["models"]["best"]["model_dir"] == "best_model"
    assert Image.open(out / "train_curve.png").format == "PNG"
    assert set(first["history"][0]["metrics"]) == {"val.top1", "val.top5"}

    # export -> reload: the saved model dir gives the trained network's logits exactly
    batch = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        trained = trainer.model.network.eval()(torch.from_numpy(batch)).numpy()
    predictor = create_model(model_dir=out / "best_model", device="cpu", engine="torch")
    np.testing.assert_allclose(predictor.raw(batch), trained, rtol=0, atol=1e-5)
    assert predictor.labels == ["animal", "object thing"] and predictor.params["topk"] == 2
    assert predictor.preprocess.config.input_size == (32, 32)
    top = next(iter(predictor.predict(str(root / "images" / "chelsea.png"))))
    assert top["label_names"][0] in ("animal", "object thing")

    # resume: a longer run continues after epoch 1 instead of starting over
    resumed = train(config(root, "ClsDataset", out, epochs=3, keep_checkpoints=1), resume=True, progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][0] == first["history"][0]
    assert "resuming from" in (out / "train.log").read_text()
    assert sorted(p.name for p in out.glob("epoch_*")) == ["epoch_3"]  # keep_checkpoints=1


def test_recognition_export_is_a_feature_extractor_and_onnx_matches(tmp_path, photos, mobilenet_v2_weights):
    root = make_rec(tmp_path / "rec", photos)
    out = tmp_path / "out"
    result = train(config(root, "ShiTuRecDataset", out, batch_size=8, sample_per_id=2, export_onnx=True),
                   progress=False)
    assert set(result["history"][0]["metrics"]) == {"recall1", "recall5", "mAP"}
    assert result["num_classes"] == 8 and result["models"]["best"]["onnx"] == "best_model/inference.onnx"
    saved = (out / "best_model" / "config.yaml").read_text()
    assert "task: image_feature" in saved and "model_name: MobileNetV2_x1_0" in saved
    # the model dir's config.yaml says task image_feature: no task= needed
    features = create_model(model_dir=out / "best_model", device="cpu", engine="torch")
    assert type(features).__name__ == "FeaturePredictor"
    images = [np.asarray(Image.open(root / "shitu" / "images" / f"{n.split('.')[0]}_q.png").convert("RGB"))
              for n in ANIMALS + OBJECTS]
    embedded = features.embed(images)
    assert embedded.shape == (8, 1280)
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)
    # the same embeddings as the trainer's evaluation path (the exported network, pooled features)
    metrics = evaluate(root, "ShiTuRecDataset", model_dir=out / "best_model", output=tmp_path / "eval",
                       device="cpu", progress=False)
    assert metrics == pytest.approx(result["models"]["best"]["metrics"], abs=1e-6)
    written = json.loads((tmp_path / "eval" / "evaluate_result.json").read_text())
    assert written["done_flag"] is True and set(written["metrics"]) == {"recall1", "recall5", "mAP"}
    # ONNX: the embedding graph, equal to torch
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "best_model" / "inference.onnx"),
                                           providers=["CPUExecutionProvider"])
    batch = features.preprocess(images[:3])
    onnx_out = session.run(None, {session.get_inputs()[0].name: batch})[0]
    onnx_normed = onnx_out / np.linalg.norm(onnx_out, axis=1, keepdims=True)
    np.testing.assert_allclose(onnx_normed, embedded[:3], atol=1e-4)


def test_ema_evaluates_and_exports_the_averaged_weights_and_resumes(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    out = tmp_path / "out"
    trainer = Trainer(config(root, "ClsDataset", out, ema_decay=0.9, eval_interval=1), progress=False)
    result = trainer.run()
    averaged = trainer.ema.module[0].eval()
    live = trainer.model.network.eval()
    batch = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        from_average = averaged(torch.from_numpy(batch)).numpy()
        from_live = live(torch.from_numpy(batch)).numpy()
    assert np.abs(from_average - from_live).max() > 1e-4  # the average lags the last step
    # the exported model is the average; the live weights are back in place after export
    saved = create_model(model_dir=out / "best_model", device="cpu", engine="torch")
    np.testing.assert_allclose(saved.raw(batch), from_average, rtol=0, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(live(torch.from_numpy(batch)).numpy(), from_live, rtol=0, atol=0)
    # its validation metric was measured on the average too: evaluate() of the export agrees
    metrics = evaluate(root, "ClsDataset", model_dir=out / "best_model", output=tmp_path / "eval", device="cpu",
                       progress=False)
    assert metrics == pytest.approx(result["history"][0]["metrics"], abs=1e-6)
    # the checkpoint carries the average, and a resumed run starts from it
    state = torch.load(out / "last_checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["ema"] is not None
    resumed = Trainer(config(root, "ClsDataset", out, ema_decay=0.9, epochs=2), resume=True, progress=False)
    resumed.prepare()
    resumed._load_checkpoint()
    for name, value in resumed.ema.module.state_dict().items():
        torch.testing.assert_close(value, trainer.ema.module.state_dict()[name])


def test_multilabel_training_and_evaluate_cli(tmp_path, photos, mobilenet_v2_weights):
    root = make_ml(tmp_path / "ml", photos)
    out = tmp_path / "out"
    result = train(config(root, "MLClsDataset", out), progress=False)
    assert set(result["history"][0]["metrics"]) == {"MultiLabelMAP"}
    assert "task: image_multilabel_classification" in (out / "best_model" / "config.yaml").read_text()
    model = create_model(model_dir=out / "best_model", device="cpu", engine="torch")  # task from config.yaml
    assert type(model).__name__ == "MultiLabelPredictor"
    assert model.labels == ["animal", "object", "sky"] and model.params["threshold"] == 0.5
    cli_result = CliRunner().invoke(cli, ["evaluate", "--model_dir", str(out / "best_model"), "--dataset", str(root),
                                          "--type", "MLClsDataset", "--output", str(tmp_path / "eval"), "--quiet"])
    assert cli_result.exit_code == 0, cli_result.output
    written = json.loads((tmp_path / "eval" / "evaluate_result.json").read_text())
    assert written["done_flag"] is True
    assert written["metrics"]["MultiLabelMAP"] == pytest.approx(result["history"][0]["metrics"]["MultiLabelMAP"],
                                                                abs=1e-6)


def test_without_validation_the_last_epoch_is_exported(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    result = train(config(root, "ClsDataset", tmp_path / "out", eval_interval=0), progress=False)
    assert result["history"][0]["metrics"] == {}
    assert result["models"]["best"]["epoch"] == 1 and result["models"]["best"]["score"] is None
    assert (tmp_path / "out" / "best_model" / "model.safetensors").is_file()


def test_fractional_epochs_end_with_part_of_a_pass(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    trainer = Trainer(config(root, "ClsDataset", tmp_path / "out", epochs=1.5, eval_interval=0, batch_size=2),
                      progress=False)
    result = trainer.run()
    per_epoch = trainer.steps_per_epoch
    assert per_epoch >= 2 and trainer.total_steps == round(1.5 * per_epoch)
    assert [h["steps"] for h in result["history"]] == [per_epoch, trainer.total_steps - per_epoch]
    assert trainer.scheduler.last_epoch == trainer.total_steps  # the cosine schedule ends with the last step
    assert result["epochs_done"] == 2 and result["models"]["best"]["epoch"] == 2
    assert TrainConfig.load(tmp_path / "out" / "config.yaml").epochs == 1.5
    assert config(root, "ClsDataset", tmp_path, epochs=2.0).resolved().epochs == 2  # 2.0 from the CLI is 2


def test_train_cli_and_corrupt_images_are_skipped(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    (root / "images" / "kite.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "train", "--model", "MobileNetV2_x1_0", "--dataset", str(root), "--type", "ClsDataset", "--output", str(out),
        "--epochs", "1", "--batch_size", "4", "--lr", "0.005", "--device", "cpu", "--input_size", "32",
        "--no_onnx", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "best val.top1" in result.output and str(out / "best_model") in result.output
    record = json.loads((out / "train_result.json").read_text())
    assert record["skipped_images"]["count"] == 2  # kite.png is listed in train.txt and val.txt
    assert record["skipped_images"]["examples"][0].startswith("images/kite.png:")
    assert record["train_samples"] == 7
    assert "skipped 1 unreadable training image(s)" in (out / "train.log").read_text()
    saved = TrainConfig.load(out / "config.yaml")
    assert saved.input_size == 32 and saved.learning_rate == 0.005 and saved.crop == "random_resized"
    assert saved.label_smoothing == 0.1


def test_recognition_from_a_feature_model_keeps_its_embedding_size(tmp_path, photos):
    root = make_rec(tmp_path / "rec", photos)
    out = tmp_path / "out"
    train(config(root, "ShiTuRecDataset", out, model="PP-ShiTuV2_rec", pretrained=False, batch_size=8,
                 sample_per_id=2), progress=False)
    saved = (out / "best_model" / "config.yaml").read_text()
    assert "num_classes: 512" in saved and "task: image_feature" in saved
    features = create_model(model_dir=out / "best_model", device="cpu", engine="torch")
    assert features.embed([np.zeros((40, 40, 3), dtype=np.uint8)]).shape == (1, 512)
