"""``PP-ShiTuV2``: mainbody detection -> one embedding per box -> search in a gallery index.

Differences from PaddleX, on purpose:

* a box whose best match fails ``rec_threshold`` gets ``labels: []`` and
  ``rec_scores: []`` (PaddleX writes ``[None]``, which breaks its own serving);
* ``rec_threshold`` follows the index metric: IP similarities must be ``>=`` it, L2
  distances ``<=`` it (PaddleX compares L2 distances as if they were similarities);
* ``always_add_whole_image`` (PaddleClas behaviour) recognises the whole image too, and
  ``dedup_threshold`` drops a box that overlaps (IoU >) a better-scored box of the same label;
* gallery files accept tab-delimited lines (labels with spaces), report missing images
  instead of failing, and ``build_index`` shows progress.

Synthetic whole-image boxes have ``det_score`` 0.0. Without any detection (PaddleX) the
whole image is used, so every input yields at least one box.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms

from ..errors import ConfigError, InputError, ViewfinderError
from ..io import DecodedImage, InputItem, decode_image, full_image_loader
from ..models.feature import FEATURE_TASK, FeaturePredictor
from ..models.predictor import BasePredictor, expand_inputs
from ..results import BaseResult, ErrorResult, ShiTuResult
from .base import BasePipeline
from .config import default_config, submodule
from .gallery import read_gallery_file, read_id_file

log = logging.getLogger(__name__)

ONNX_DETECTOR = "ONNXDetector"
WHOLE_IMAGE_LABEL = "full_img"


@dataclass
class GalleryReport:
    """What ``build_index`` / ``append_index`` skipped and why."""

    added: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass
class GalleryEmbedding:
    """Gallery images turned into features by :meth:`ShiTuV2Pipeline.embed_gallery`.

    ``append_embedding`` adds it to an index; the split lets a service embed outside its
    index lock (the slow half) and hold the lock only to append and save.
    """

    features: np.ndarray
    labels: list[str]
    metadata: list[dict[str, Any]]
    skipped: list[str]
    feature_model: dict[str, Any]
    #: the ids ``append_embedding`` gave these features (None before)
    ids: np.ndarray | None = None


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))


def _first_given(*values: Any) -> Any:
    """The first value that is not None (a predict() keyword, then the config's value)."""
    return next((value for value in values if value is not None), None)


class ShiTuV2Pipeline(BasePipeline):
    name = "PP-ShiTuV2"
    predict_params = ("index", "det_threshold", "rec_threshold", "rec_topk", "topk", "hamming_radius")

    def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config_dir = Path(config.get("_config_dir", "."))
        shipped = default_config(self.name)  # what a YAML file leaves out takes the shipped YAML's value
        self.det_threshold = config.get("det_threshold", shipped["det_threshold"])
        self.rec_threshold = config.get("rec_threshold", shipped["rec_threshold"])
        self.rec_topk = config.get("rec_topk", shipped["rec_topk"])
        self.always_add_whole_image = bool(config.get("always_add_whole_image",
                                                      shipped["always_add_whole_image"]))
        self.dedup_threshold = config.get("dedup_threshold")
        self._default_index = None if _is_none(config.get("index")) else config["index"]
        self._check_numbers(self.det_threshold, self.rec_threshold, self.rec_topk)
        # `Detection: null` recognises whole images only (no mainbody detector).
        modules = config.get("SubModules") or {}
        self.detector = None if "Detection" in modules and modules["Detection"] is None \
            else self._create_detector(submodule(config, "Detection"))
        self.recognizer: FeaturePredictor = self._create_submodel(submodule(config, "Recognition"), task=FEATURE_TASK)
        self.last_report = GalleryReport()
        self._galleries: dict[str, Any] = {}  # Milvus location -> its opened gallery

    # ------------------------------------------------------------------ models
    def _create_detector(self, entry: dict[str, Any]) -> BasePredictor:
        if entry.get("model_name") != ONNX_DETECTOR:
            return self._create_submodel(entry)
        spec = entry.get("spec")
        if spec is None:
            raise ConfigError(f"SubModules.Detection: model_name {ONNX_DETECTOR} needs a 'spec' with 'onnx' and decoding")
        from ..models.onnx_detector import OnnxDetectorSpec, create_onnx_detector
        from ..models.onnx_external import read_spec

        # relative paths: a spec file's against this config's folder, `onnx` against the spec file's
        source = read_spec(spec, "SubModules.Detection.spec", known=OnnxDetectorSpec.keys(), base=self.config_dir,
                           names_onnx=True)
        return create_onnx_detector(source.onnx, source, device=self.device, batch_size=entry.get("batch_size") or 1,
                                    cpu_threads=entry.get("cpu_threads") or self.options.get("cpu_threads"))

    @staticmethod
    def _check_numbers(det_threshold: Any, rec_threshold: Any, rec_topk: Any) -> None:
        for name, value in (("det_threshold", det_threshold), ("rec_threshold", rec_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        if not 0.0 <= float(det_threshold) <= 1.0:
            raise ConfigError(f"det_threshold must be between 0 and 1, got {det_threshold}")
        if isinstance(rec_topk, bool) or not isinstance(rec_topk, (int, np.integer)) or rec_topk < 1:
            raise ConfigError(f"rec_topk must be a positive integer, got {rec_topk!r}")

    # ------------------------------------------------------------------ index management
    def _load_index(self, index: Any):
        """An index object as it is, or the gallery at a location (a folder, or a Milvus location)."""
        from ..retrieval import IndexData, is_gallery, is_milvus, open_gallery

        if is_gallery(index):
            return index
        if _is_none(index):
            raise ConfigError("PP-ShiTuV2 needs an index: pass index=IndexData, an index folder or a Milvus location, "
                              "or set `index:` in the pipeline config (build one with build_index)")
        if is_milvus(index):
            key = str(index).strip()
            if key not in self._galleries:  # a live view of the collection: open (connect) once
                self._galleries[key] = open_gallery(key)
            return self._galleries[key]
        path = Path(str(index))
        if not path.is_absolute() and not path.exists():
            path = self.config_dir / path
        return IndexData.load(path)

    def _feature_model(self) -> dict[str, Any]:
        """What the index records about the vectors this pipeline makes."""
        record = {"model_name": self.recognizer.model_name, "feature_dim": self.recognizer.feature_dim}
        digest = getattr(self.recognizer, "weights_sha256", None)
        if digest:
            record["weights_sha256"] = digest[:16]
        return record

    def _check_index(self, index: Any) -> None:
        from ..retrieval import check_feature_model

        check_feature_model(index, self._feature_model())

    def _gallery(self, gallery_imgs: Any, gallery_label: Any) -> tuple[list[Any], list[str], list[str | None], list[str]]:
        """Normalise both PaddleX calling forms to (sources, labels, paths, skipped notes)."""
        if isinstance(gallery_imgs, (str, Path)) and Path(gallery_imgs).is_dir():
            if not isinstance(gallery_label, (str, Path)):
                raise ConfigError("with a gallery folder, gallery_label must be the path of a label file")
            entries = read_gallery_file(gallery_imgs, gallery_label)
            return list(entries.paths), entries.labels, list(entries.paths), entries.skipped
        if isinstance(gallery_imgs, (str, Path)):
            raise InputError(f"gallery {gallery_imgs} is not a folder")
        if not isinstance(gallery_imgs, (list, tuple)) or not isinstance(gallery_label, (list, tuple)):
            raise ConfigError("build_index takes (gallery folder, label file) or (list of images, list of labels)")
        if len(gallery_imgs) != len(gallery_label):
            raise ConfigError(f"{len(gallery_imgs)} gallery images but {len(gallery_label)} labels")
        labels = []
        for position, label in enumerate(gallery_label):
            if not isinstance(label, str) or not label.strip():
                raise ConfigError(f"gallery label {position} is empty or not a string: {label!r}")
            labels.append(label.strip())
        paths = [str(source) if isinstance(source, (str, Path)) else None for source in gallery_imgs]
        return list(gallery_imgs), labels, paths, []

    def _embed_gallery(self, sources: list[Any], labels: list[str], paths: list[str | None],
                       skipped: list[str], show_progress: bool) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
        from tqdm import tqdm

        batch = max(1, self.recognizer.batch_size)
        features: list[np.ndarray] = []
        kept_labels: list[str] = []
        metadata: list[dict[str, Any]] = []
        with tqdm(total=len(sources), desc="embedding gallery", unit="img", disable=not show_progress) as bar:
            for start in range(0, len(sources), batch):
                decoded: list[DecodedImage] = []
                for offset, source in enumerate(sources[start:start + batch]):
                    position = start + offset
                    try:
                        item = InputItem(source, paths[position])
                        decoded.append(item.decode(self.recognizer.preprocess.config.min_decode_side))
                    except ViewfinderError as exc:  # the message names the file already
                        skipped.append(str(exc) if paths[position] else f"image {position}: {exc}")
                        continue
                    kept_labels.append(labels[position])
                    metadata.append({"path": paths[position]} if paths[position] else {})
                if decoded:
                    features.append(self.recognizer.embed(decoded))
                bar.update(min(batch, len(sources) - start))
        for note in skipped:
            log.warning("gallery: skipped %s", note)
        if not features:
            raise InputError(f"no gallery image could be read ({len(skipped)} skipped: {'; '.join(skipped[:3])})")
        return np.concatenate(features), kept_labels, metadata

    def build_index(self, gallery_imgs: Any = None, gallery_label: Any = None, metric_type: str = "IP",
                    index_type: str = "HNSW32", *, data_root: Any = None, index_dir: Any = None,
                    show_progress: bool = True, **index_params: Any):
        """Embed a gallery and index it; returns the :class:`~viewfinder.IndexData` (``.save(dir)`` it),
        or with a Milvus ``index_dir`` the gallery written there.

        Forms: ``(folder, label_file)``, ``(list_of_images, list_of_labels)``, and the older
        ``build_index(data_root=folder, index_dir=out)`` reading ``folder/gallery.txt`` and
        saving into ``index_dir`` (a folder or a Milvus location). Unreadable images are skipped and
        listed in ``self.last_report``.
        """
        from ..retrieval import IndexData, is_milvus, parse_location, write_gallery

        if data_root is not None and gallery_imgs is None:
            gallery_imgs = data_root
            gallery_label = gallery_label or Path(data_root) / "gallery.txt"
        if index_dir is not None:
            parse_location(index_dir)  # a malformed location fails before the embedding
        into_milvus = is_milvus(index_dir)
        if into_milvus and index_params:
            raise ConfigError(f"{sorted(index_params)}: faiss index parameters; a Milvus gallery is built with "
                              "the defaults (HNSW M=32, efConstruction=80; IVF nlist from the size)")
        sources, labels, paths, skipped = self._gallery(gallery_imgs, gallery_label)
        features, kept, metadata = self._embed_gallery(sources, labels, paths, skipped, show_progress)
        # For Milvus the in-memory index only carries the items there (Flat: no faiss graph built for nothing).
        index = IndexData.build(features, kept, index_type="Flat" if into_milvus else index_type,
                                metric_type=metric_type, metadata=metadata, **({} if into_milvus else index_params))
        index.feature_model = self._feature_model()
        self.last_report = GalleryReport(added=len(kept), skipped=skipped)
        if into_milvus:
            return write_gallery(index, index_dir, index_type=index_type)
        if index_dir is not None:
            index.save(index_dir)
        return index

    def append_index(self, gallery_imgs: Any, gallery_label: Any, index: Any, show_progress: bool = True):
        """Add images to ``index`` (an IndexData, folder or Milvus location); type and metric come from the index.

        A folder's index is loaded and changed in memory (``.save`` it); a Milvus gallery is changed in place.
        """
        target = self._load_index(index)
        self._check_index(target)  # before the slow part
        return self.append_embedding(self.embed_gallery(gallery_imgs, gallery_label, show_progress), target)

    def embed_gallery(self, gallery_imgs: Any, gallery_label: Any, show_progress: bool = True) -> GalleryEmbedding:
        """Embed gallery images (any form ``append_index`` takes) without touching an index."""
        sources, labels, paths, skipped = self._gallery(gallery_imgs, gallery_label)
        features, kept, metadata = self._embed_gallery(sources, labels, paths, skipped, show_progress)
        return GalleryEmbedding(features, kept, metadata, skipped, self._feature_model())

    def append_embedding(self, embedding: GalleryEmbedding, index: Any):
        """Add an :meth:`embed_gallery` result to ``index`` (an IndexData, folder or Milvus location);
        returns the index."""
        if embedding.feature_model != self._feature_model():
            raise ConfigError(f"these features come from {embedding.feature_model.get('model_name')}, not this "
                              f"pipeline's {self.recognizer.model_name}: embed them with this pipeline")
        target = self._load_index(index)
        self._check_index(target)
        embedding.ids = target.append(embedding.features, embedding.labels, metadata=embedding.metadata)
        self.last_report = GalleryReport(added=len(embedding.labels), skipped=list(embedding.skipped))
        return target

    def remove_index(self, remove_ids: Any, index: Any):
        """Remove ids (a list, or a file whose lines start with an id) from ``index``."""
        target = self._load_index(index)
        ids = read_id_file(remove_ids) if isinstance(remove_ids, (str, Path)) else list(remove_ids)
        target.remove(ids)
        return target

    # ------------------------------------------------------------------ predict
    def predict(self, input: Any, **params: Any) -> Iterator[BaseResult]:
        """Lazily yield a :class:`ShiTuResult` per image.

        ``index`` (an IndexData, index folder or Milvus location), ``det_threshold``, ``rec_threshold`` and
        ``rec_topk`` (``topk`` is accepted for it) override the config's values;
        ``hamming_radius`` (PaddleX's, for binary indexes) is accepted and not used.
        """
        self.check_predict_params(params)
        det = _first_given(params.get("det_threshold"), self.det_threshold)
        rec = _first_given(params.get("rec_threshold"), self.rec_threshold)
        k = _first_given(params.get("rec_topk"), params.get("topk"), self.rec_topk)
        self._check_numbers(det, rec, k)
        gallery = self._load_index(_first_given(params.get("index"), self._default_index))
        self._check_index(gallery)
        return self._predict(input, gallery, float(det), float(rec), int(k))

    def decode_input(self, source: Any) -> DecodedImage:
        """One input decoded as ``predict()`` decodes it: at the reduced JPEG scale the first model allows."""
        return decode_image(source, min_short_side=self._min_decode_side)

    @property
    def _min_decode_side(self) -> int | None:
        return (self.detector or self.recognizer).preprocess.config.min_decode_side

    def _predict(self, input: Any, gallery: Any, det: float, rec: float, k: int) -> Iterator[BaseResult]:
        min_side = self._min_decode_side
        for item in expand_inputs(input):
            if isinstance(item, ErrorResult):
                yield item
                continue
            try:
                image = item.decode(min_short_side=min_side)
            except ViewfinderError as exc:
                log.warning("skipping %s", exc)
                yield ErrorResult({"input_path": item.input_path, "error": str(exc)})
                continue
            yield self._recognise(image, gallery, det, rec, k)

    def _recognise(self, image: DecodedImage, gallery: Any, det: float, rec: float, k: int) -> ShiTuResult:
        width, height = image.original_size
        detections = self.detector.predict_images([image], threshold=det)[0]["boxes"] if self.detector else []
        boxes = [(list(map(float, d["coordinate"])), float(d["score"])) for d in detections]
        whole = ([0.0, 0.0, float(width), float(height)], 0.0)
        if not boxes or self.always_add_whole_image:
            boxes.append(whole)
        crops = [self._crop(image, coordinate) for coordinate, _ in boxes]
        features = self.recognizer.embed(crops)
        scores, ids, labels = gallery.search(features, k)
        entries = []
        for (coordinate, det_score), row_scores, row_ids, row_labels in zip(boxes, scores, ids, labels):
            valid = row_ids >= 0
            best = float(row_scores[0]) if valid.any() else None
            accepted = best is not None and gallery.passes(best, rec)
            entries.append({
                "labels": [label for label, ok in zip(row_labels, valid) if ok] if accepted else [],
                "rec_scores": [round(float(s), 5) for s in row_scores[valid]] if accepted else [],
                "det_score": round(det_score, 5),
                "coordinate": [round(c, 3) for c in coordinate],
            })
        if self.dedup_threshold is not None:
            entries = self._dedup(entries, float(self.dedup_threshold), gallery.higher_is_better)
        return ShiTuResult(
            {"input_path": image.input_path, "boxes": entries, "input_img": image.rgb},
            image_loader=full_image_loader(image),
        )

    @staticmethod
    def _crop(image: DecodedImage, coordinate: Sequence[float]) -> np.ndarray:
        """Crop in decoded-pixel space (the decode may be reduced); int truncation as PaddleX."""
        rgb = image.rgb
        sx = rgb.shape[1] / image.original_size[0]
        sy = rgb.shape[0] / image.original_size[1]
        x1 = min(max(int(coordinate[0] * sx), 0), rgb.shape[1] - 1)
        y1 = min(max(int(coordinate[1] * sy), 0), rgb.shape[0] - 1)
        x2 = min(max(int(coordinate[2] * sx), x1 + 1), rgb.shape[1])
        y2 = min(max(int(coordinate[3] * sy), y1 + 1), rgb.shape[0])
        return np.ascontiguousarray(rgb[y1:y2, x1:x2])

    @staticmethod
    def _dedup(entries: list[dict[str, Any]], iou: float, higher_is_better: bool) -> list[dict[str, Any]]:
        """Per label, keep the best-scored of overlapping boxes (PaddleClas's rec NMS); rejected boxes stay."""
        accepted = [i for i, e in enumerate(entries) if e["labels"]]
        if len(accepted) < 2:
            return entries
        label_ids = {label: n for n, label in enumerate(sorted({entries[i]["labels"][0] for i in accepted}))}
        boxes = torch.tensor([entries[i]["coordinate"] for i in accepted], dtype=torch.float32)
        best = torch.tensor([entries[i]["rec_scores"][0] for i in accepted], dtype=torch.float32)
        groups = torch.tensor([label_ids[entries[i]["labels"][0]] for i in accepted])
        keep = set(batched_nms(boxes, best if higher_is_better else -best, groups, iou).tolist())
        dropped = {accepted[j] for j in range(len(accepted)) if j not in keep}
        return [e for i, e in enumerate(entries) if i not in dropped]
