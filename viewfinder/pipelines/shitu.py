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

Ours too: ``gallery_crop`` (``build_index(crop=...)``) embeds gallery images as detected crops,
as queries are, and the index records it; ``single_mainbody`` / ``max_det_results`` keep only
the best box(es) of a query (``mainbody_order``: by detection score or area); every box says
``rejected`` (True when its best match failed ``rec_threshold``).
"""
from __future__ import annotations

import logging
import threading
import weakref
from contextlib import closing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms

from ..errors import ConfigError, InputError, ViewfinderError
from ..io import DecodedImage, InputItem, full_image_loader
from ..io.pil_view import borrow_rgbx
from ..models.detection import Detections
from ..models.feature import FEATURE_TASK, FeaturePredictor
from ..models.predictor import BasePredictor, expand_inputs
from ..results import BaseResult, ErrorResult, ShiTuResult
from .base import BasePipeline
from .config import default_config, submodule
from .gallery import read_gallery_file, read_id_file
from .index_forms import check_same_kind, gallery_arguments, ids_for_gallery_labels, index_argument
from .mainbody import BoxChoice, check_gallery_crop, gallery_boxes, recorded_gallery_crop
from .lanes import check_lanes, lane_count, lane_twin, ordered_map, several_images
from .overlap import ReadAhead

log = logging.getLogger(__name__)

ONNX_DETECTOR = "ONNXDetector"
#: detections kept ready ahead of the recogniser (each holds a decoded image)
DETECT_AHEAD = 2
WHOLE_IMAGE_LABEL = "full_img"


@dataclass
class _Embedded:
    """A group of detections (errors in place), the boxes to recognise in each detected image and
    all their crops' features (None: no crops), ready for one gallery search."""
    group: list[Any]
    detected: list[Detections]
    boxes: list[list[tuple[list[float], float]]]
    features: np.ndarray | None


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
    #: how the gallery images were cut before embedding (none, best, all; see pipelines/mainbody.py)
    gallery_crop: str = "none"
    #: per feature, the position of its image among the images given (with crop "all" an image
    #: may give several features, a skipped one none); None: one feature per kept image, in order
    positions: list[int] | None = None

    def index_record(self) -> dict[str, Any]:
        """What an index built from these features records (``IndexData.feature_model``): the feature
        model and the crop mode, which ``append_embedding`` and ``predict`` check."""
        return {**self.feature_model, "gallery_crop": self.gallery_crop}


def index_from_embedding(embedding: GalleryEmbedding, metric_type: str = "IP", index_type: str = "HNSW32",
                         **index_params: Any):
    """The index of an embedded gallery, as ``build_index`` makes it (``viewfinder batch --to_index`` too).

    One function for both, so a gallery embedded by Ray workers and one embedded in-process
    become the same index (labels, metadata, the feature model's record).
    """
    from ..retrieval import IndexData

    index = IndexData.build(embedding.features, embedding.labels, index_type=index_type, metric_type=metric_type,
                            metadata=embedding.metadata, **index_params)
    index.feature_model = embedding.index_record()
    return index


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))


def _index_argument(index: Any, index_dir: Any, where: str) -> Any:
    """PaddleX 3.0 named the index argument ``index_dir``, 3.x ``index``: one value from either."""
    if index is not None and index_dir is not None:
        raise ConfigError(f"{where}: give index or index_dir (the same argument under PaddleX 3.0's name), not both")
    return index if index is not None else index_dir


def _offsets(groups: list[list[Any]]) -> list[int]:
    """Where each group starts in the concatenation of ``groups``."""
    starts, total = [], 0
    for group in groups:
        starts.append(total)
        total += len(group)
    return starts


#: ``dedup_threshold: auto`` with ``always_add_whole_image``: the whole-image box repeats the label of
#: a crop that fills much of the photo; IoU 0.3 drops those repeats and keeps distinct objects
#: (benchmarks/dedup_boxes.py: 12 -> 6 overlapping repeats, 0.05 would also drop touching horses)
AUTO_DEDUP_IOU = 0.3


def _dedup_threshold(value: Any, whole_image: bool) -> float | None:
    """The configured dedup IoU; ``auto``: AUTO_DEDUP_IOU when the whole image is added, else none
    (without it dedup measured no change: the detector's own NMS already parts the boxes)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return AUTO_DEDUP_IOU if whole_image else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"dedup_threshold must be an IoU between 0 and 1, auto or null, got {value!r}")
    return float(value)


def _detected_boxes(found: Detections) -> list[tuple[list[float], float]]:
    """An image's detected boxes as (coordinate, detection score)."""
    return [(list(map(float, d["coordinate"])), float(d["score"])) for d in found.boxes]


def _whole_image_box(found: Detections) -> tuple[list[float], float]:
    """The synthetic whole-image box (detection score 0.0)."""
    width, height = found.image.original_size
    return [0.0, 0.0, float(width), float(height)], 0.0


def _first_given(*values: Any) -> Any:
    """The first value that is not None (a predict() keyword, then the config's value)."""
    return next((value for value in values if value is not None), None)


class ShiTuV2Pipeline(BasePipeline):
    name = "PP-ShiTuV2"
    predict_params = ("index", "index_dir", "det_threshold", "rec_threshold", "rec_topk", "topk", "hamming_radius",
                      "single_mainbody", "max_det_results", "mainbody_order")
    create_params = ("index", "index_dir")

    def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.config_dir = Path(config.get("_config_dir", "."))
        shipped = default_config(self.name)  # what a YAML file leaves out takes the shipped YAML's value
        self.det_threshold = config.get("det_threshold", shipped["det_threshold"])
        self.rec_threshold = config.get("rec_threshold", shipped["rec_threshold"])
        self.rec_topk = config.get("rec_topk", shipped["rec_topk"])
        self.always_add_whole_image = bool(config.get("always_add_whole_image",
                                                      shipped["always_add_whole_image"]))
        self.dedup_threshold = _dedup_threshold(config.get("dedup_threshold", shipped.get("dedup_threshold")),
                                                self.always_add_whole_image)
        self.gallery_crop = check_gallery_crop(config.get("gallery_crop", shipped.get("gallery_crop")))
        # several images at once, one CPU thread each (pipelines/lanes.py); twins made on first use
        self.cpu_lanes = check_lanes(config.get("cpu_lanes"))
        self._lane_models: tuple[int, Any, Any] | None = None
        self._lane_lock = threading.Lock()
        # single_mainbody / max_det_results / mainbody_order: the YAML's, which predict() may override
        self._mainbody = (config.get("single_mainbody"), config.get("max_det_results"), config.get("mainbody_order"))
        self.box_choice = BoxChoice.from_params(*self._mainbody)
        configured = _index_argument(None if _is_none(config.get("index")) else config["index"],
                                     None if _is_none(config.get("index_dir")) else config["index_dir"],
                                     "pipeline config")
        given = _index_argument(self.options.pop("index", None), self.options.pop("index_dir", None),
                                "create_pipeline")
        self._default_index = given if given is not None else configured
        self._check_numbers(self.det_threshold, self.rec_threshold, self.rec_topk)
        # build_index defaults for new faiss indexes (center, whiten, query_expansion: retrieval/transform.py)
        self.index_options = self._check_index_options(config.get("index_options"))

        # `Detection: null` recognises whole images only (no mainbody detector).
        modules = config.get("SubModules") or {}
        self.detector = None if "Detection" in modules and modules["Detection"] is None \
            else self._create_detector(submodule(config, "Detection"))
        if self.detector is None and self.gallery_crop != "none":
            raise ConfigError(f"gallery_crop: {self.gallery_crop} needs a mainbody detector (SubModules.Detection "
                              "is null)")
        self.recognizer: FeaturePredictor = self._create_submodel(submodule(config, "Recognition"), task=FEATURE_TASK)
        self.last_report = GalleryReport()
        self._galleries: dict[str, Any] = {}  # Milvus location -> its opened gallery
        self._crop_warned: weakref.WeakSet = weakref.WeakSet()  # indexes warned about a gallery_crop mismatch

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
                                    cpu_threads=entry.get("cpu_threads") or self.options.get("cpu_threads"),
                                    precision=_first_given(entry.get("precision"), self.options.get("precision")),
                                    calibration=self.config_path(_first_given(entry.get("calibration"),
                                                                              self.options.get("calibration"))))

    @staticmethod
    def _check_index_options(raw: Any) -> dict[str, Any]:
        from ..retrieval.transform import check_query_expansion

        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise ConfigError(f"index_options must be a mapping (center, whiten, query_expansion), got {raw!r}")
        unknown = set(raw) - {"center", "whiten", "query_expansion"}
        if unknown:
            raise ConfigError(f"index_options: unknown key(s) {sorted(unknown)}; known: center, whiten, "
                              "query_expansion")
        for name in ("center", "whiten"):
            if name in raw and not isinstance(raw[name], bool):
                raise ConfigError(f"index_options.{name} must be true or false, got {raw[name]!r}")
        try:
            check_query_expansion(raw.get("query_expansion"))
        except ViewfinderError as exc:
            raise ConfigError(f"index_options: {exc}") from None
        return {key: value for key, value in raw.items() if value not in (None, False)}

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

    def _warn_crop_mismatch(self, index: Any) -> None:
        """Warn (once per index object) when the gallery was cut otherwise than this pipeline says
        galleries are (``gallery_crop``): scores then compare crops with whole photos, or the reverse."""
        recorded = recorded_gallery_crop(index)
        if recorded == self.gallery_crop:
            return
        try:
            if index in self._crop_warned:
                return
            self._crop_warned.add(index)
        except TypeError:  # not weak-referenceable: warn every time
            pass
        log.warning("the index's gallery was embedded with gallery_crop=%s but this pipeline's gallery_crop is %s: "
                    "query crops are compared with gallery images cut another way, so scores are lower and "
                    "matches less reliable; rebuild the index with crop=%s (viewfinder index build --crop %s) "
                    "or set gallery_crop: %s", recorded, self.gallery_crop, self.gallery_crop, self.gallery_crop,
                    recorded)

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
                       skipped: list[str], show_progress: bool) -> tuple[np.ndarray, list[str], list[dict[str, Any]],
                                                                           list[int]]:
        from tqdm import tqdm

        batch = max(1, self.recognizer.batch_size)
        features: list[np.ndarray] = []
        kept_labels: list[str] = []
        metadata: list[dict[str, Any]] = []
        positions: list[int] = []
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
                    positions.append(position)
                if decoded:
                    features.append(self.recognizer.embed(decoded))
                bar.update(min(batch, len(sources) - start))
        return self._gallery_done(features, kept_labels, metadata, positions, skipped)

    @staticmethod
    def _gallery_done(features: list[np.ndarray], labels: list[str], metadata: list[dict[str, Any]],
                      positions: list[int], skipped: list[str]
                      ) -> tuple[np.ndarray, list[str], list[dict[str, Any]], list[int]]:
        for note in skipped:
            log.warning("gallery: skipped %s", note)
        if not features:
            raise InputError(f"no gallery image could be read ({len(skipped)} skipped: {'; '.join(skipped[:3])})")
        return np.concatenate(features), labels, metadata, positions

    def _embed_gallery_crops(self, sources: list[Any], labels: list[str], paths: list[str | None],
                             skipped: list[str], show_progress: bool, crop: str
                             ) -> tuple[np.ndarray, list[str], list[dict[str, Any]], list[int]]:
        """Gallery images detected as queries are (the pipeline's detector, det_threshold, decoding)
        and embedded as the crop(s) ``crop`` chooses; an image without a detection as a whole.

        Each feature's metadata keeps the box (``box``, ``det_score``) it was cut from."""
        from tqdm import tqdm

        assert self.detector is not None  # __init__ refuses gallery_crop without a detector
        # Each source must be one image (a folder would expand to many and break the position map).
        usable: list[int] = []
        for position, source in enumerate(sources):
            if isinstance(source, (str, Path)) and Path(str(source)).is_dir():
                skipped.append(f"{source}: a folder, not an image")
            elif isinstance(source, (list, tuple, dict)):
                skipped.append(f"image {position}: a {type(source).__name__}, not an image")
            else:
                usable.append(position)
        batch = max(1, self.recognizer.batch_size)
        features: list[np.ndarray] = []
        kept_labels: list[str] = []
        metadata: list[dict[str, Any]] = []
        positions: list[int] = []
        crops: list[np.ndarray] = []
        with closing(self._detected_groups([sources[p] for p in usable], float(self.det_threshold))) as groups, \
                tqdm(total=len(usable), desc="embedding gallery", unit="img", disable=not show_progress) as bar:
            detected_images = (found for group in groups for found in group)
            for position, found in zip(usable, detected_images):
                bar.update(1)
                if isinstance(found, ErrorResult):
                    error = found.get("error")
                    skipped.append(str(error) if paths[position] else f"image {position}: {error}")
                    continue
                chosen = gallery_boxes(_detected_boxes(found), crop)
                cut = chosen or [_whole_image_box(found)]
                crops.extend(self._crops(found.image, [coordinate for coordinate, _ in cut]))
                for coordinate, det_score in cut:
                    entry: dict[str, Any] = {"path": paths[position]} if paths[position] else {}
                    if chosen:  # the whole image needs no box
                        entry.update(box=[round(c, 3) for c in coordinate], det_score=round(det_score, 5))
                    metadata.append(entry)
                    kept_labels.append(labels[position])
                    positions.append(position)
                if len(crops) >= batch:
                    features.append(self.recognizer.embed(crops))
                    crops = []
        if crops:
            features.append(self.recognizer.embed(crops))
        return self._gallery_done(features, kept_labels, metadata, positions, skipped)

    def build_index(self, gallery_imgs: Any = None, gallery_label: Any = None, metric_type: str = "IP",
                    index_type: str = "HNSW32", *, data_root: Any = None, index_dir: Any = None,
                    show_progress: bool = True, crop: str | None = None, **index_params: Any):
        """Embed a gallery and index it; returns the :class:`~viewfinder.IndexData` (``.save(dir)`` it),
        or with a Milvus ``index_dir`` the gallery written there.

        ``center``/``whiten``/``query_expansion`` (default: the config's ``index_options``) are the
        training-free remedies of ``viewfinder.retrieval.transform``, recorded in the index.

        Forms: ``(folder, label_file)``, ``(list_of_images, list_of_labels)``, and PaddleX 3.0's
        ``build_index(data_root=folder, index_dir=out, index_type=...)`` reading ``folder/gallery.txt``
        and saving into ``index_dir`` (a folder or a Milvus location). Unreadable images are skipped
        and listed in ``self.last_report``.

        ``crop`` (ours; default the config's ``gallery_crop``, ``none`` as PaddleX): ``none`` embeds
        whole images, ``best`` the highest-scored detected box, ``all`` every detected box as an entry
        of its own; the index records it (``feature_model["gallery_crop"]``).
        """
        from ..retrieval import is_milvus, parse_location, write_gallery

        gallery_imgs, gallery_label = gallery_arguments(gallery_imgs, gallery_label, data_root, "build_index")
        if index_dir is not None:
            parse_location(index_dir)  # a malformed location fails before the embedding
        into_milvus = is_milvus(index_dir)
        index_params = {**self.index_options, **index_params}
        if into_milvus and any(index_params.get(key) for key in ("center", "whiten", "query_expansion")):
            raise ConfigError("a Milvus gallery cannot centre/whiten or expand queries (index_options "
                              f"{ {k: v for k, v in index_params.items() if v} }): build into a folder, or set "
                              "index_options to null")
        index_params = {key: value for key, value in index_params.items() if value not in (None, False)}
        if into_milvus and index_params:
            raise ConfigError(f"{sorted(index_params)}: faiss index parameters; a Milvus gallery is built with "
                              "the defaults (HNSW M=32, efConstruction=80; IVF nlist from the size)")
        crop = check_gallery_crop(self.gallery_crop if crop is None else crop, "crop")
        embedding = self.embed_gallery(gallery_imgs, gallery_label, show_progress, crop=crop)
        # For Milvus the in-memory index only carries the items there (Flat: no faiss graph built for nothing).
        index = index_from_embedding(embedding, metric_type, "Flat" if into_milvus else index_type,
                                     **({} if into_milvus else index_params))
        self.last_report = GalleryReport(added=len(embedding.labels), skipped=embedding.skipped)
        if into_milvus:
            return write_gallery(index, index_dir, index_type=index_type)
        if index_dir is not None:
            index.save(index_dir)
        return index

    def append_index(self, gallery_imgs: Any = None, gallery_label: Any = None, index: Any = None,
                     show_progress: bool = True, *, data_root: Any = None, index_dir: Any = None,
                     index_type: str | None = None, metric_type: str | None = None, crop: str | None = None):
        """Add images to ``index`` (an IndexData, folder or Milvus location); type and metric come from the index.

        PaddleX 3.0's form ``append_index(data_root=folder, index_dir=dir)`` reads
        ``folder/gallery.txt`` and saves the grown index back into ``dir``. An ``index_type`` or
        ``metric_type`` other than the index's own is an error (PaddleX PR #2490).
        A folder's index is loaded and changed in memory (``.save`` it); a Milvus gallery is changed in place.
        ``crop`` (ours): how to cut the new images; default the index's own (its ``gallery_crop``
        record); another mode than the index's is refused (a gallery of mixed crops scores unevenly).
        """
        from ..retrieval import is_milvus

        gallery_imgs, gallery_label = gallery_arguments(gallery_imgs, gallery_label, data_root, "append_index")
        source, save_to = index_argument(index, index_dir, "append_index")
        if index_dir is not None and is_milvus(index_dir):
            save_to = None  # a Milvus gallery changes in place
        target = self._load_index(source)
        check_same_kind(target, index_type, metric_type, "append_index")
        self._check_index(target)  # before the slow part
        crop = self.append_crop(target, crop)
        target = self.append_embedding(self.embed_gallery(gallery_imgs, gallery_label, show_progress, crop=crop),
                                       target)
        if save_to is not None:
            target.save(save_to)
        return target

    def embed_gallery(self, gallery_imgs: Any, gallery_label: Any, show_progress: bool = True, *,
                      crop: str | None = None) -> GalleryEmbedding:
        """Embed gallery images (any form ``append_index`` takes) without touching an index;
        ``crop``: none, best or all (default the config's ``gallery_crop``)."""
        crop = check_gallery_crop(self.gallery_crop if crop is None else crop, "crop")
        if crop != "none" and self.detector is None:
            raise ConfigError(f"crop {crop} needs a mainbody detector; this pipeline has none (Detection: null)")
        sources, labels, paths, skipped = self._gallery(gallery_imgs, gallery_label)
        if crop == "none":
            features, kept, metadata, positions = self._embed_gallery(sources, labels, paths, skipped, show_progress)
        else:
            features, kept, metadata, positions = self._embed_gallery_crops(sources, labels, paths, skipped,
                                                                            show_progress, crop)
        return GalleryEmbedding(features, kept, metadata, skipped, self._feature_model(), gallery_crop=crop,
                                positions=positions)

    @staticmethod
    def append_crop(index: Any, crop: str | None) -> str:
        """The crop mode for images added to ``index``: its own; another one asked for is refused
        (also what the service checks before it embeds an add)."""
        recorded = recorded_gallery_crop(index)
        if crop is None:
            return recorded
        crop = check_gallery_crop(crop, "crop")
        if crop != recorded:
            raise ConfigError(f"the index's gallery was embedded with gallery_crop={recorded} but these images would "
                              f"be embedded with crop={crop}: one index must not mix them (scores would not compare); "
                              f"append with crop={recorded}, or build a new index with crop={crop}")
        return crop

    def append_embedding(self, embedding: GalleryEmbedding, index: Any):
        """Add an :meth:`embed_gallery` result to ``index`` (an IndexData, folder or Milvus location);
        returns the index."""
        if embedding.feature_model != self._feature_model():
            raise ConfigError(f"these features come from {embedding.feature_model.get('model_name')}, not this "
                              f"pipeline's {self.recognizer.model_name}: embed them with this pipeline")
        target = self._load_index(index)
        self._check_index(target)
        self.append_crop(target, embedding.gallery_crop)
        embedding.ids = target.append(embedding.features, embedding.labels, metadata=embedding.metadata)
        self.last_report = GalleryReport(added=len(embedding.labels), skipped=list(embedding.skipped))
        return target

    def remove_index(self, remove_ids: Any = None, index: Any = None, *, data_root: Any = None,
                     index_dir: Any = None, index_type: str | None = None, metric_type: str | None = None,
                     gallery_label: Any = None):
        """Remove ids (a list, or a file whose lines start with an id) from ``index``.

        PaddleX 3.0's form ``remove_index(data_root=folder, index_dir=dir)`` removes every entry
        whose label appears in ``folder/gallery.txt`` (as PaddleX 3.0 did) and saves ``dir``.
        """
        source, save_to = index_argument(index, index_dir, "remove_index")
        target = self._load_index(source)
        check_same_kind(target, index_type, metric_type, "remove_index")
        if (remove_ids is None) == (data_root is None):
            raise ConfigError("remove_index takes remove_ids (ids or an id file) or PaddleX 3.0's data_root "
                              "(a gallery folder whose labels are removed), one of them")
        if data_root is not None:
            ids = ids_for_gallery_labels(target, data_root, gallery_label)
        else:
            ids = read_id_file(remove_ids) if isinstance(remove_ids, (str, Path)) else list(remove_ids)
        target.remove(ids)
        if save_to is not None:
            target.save(save_to)
        return target

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, queries: Any, labels: Any, index: Any = None, *, unknown: Any = None,
                 output: Any = None, target_precision: float | None = None, det_threshold: float | None = None,
                 show_progress: bool = True, plots: bool = True) -> dict[str, Any]:
        """Open-set evaluation on labelled queries (+ photos of objects not in the gallery).

        ``queries``: folder; ``labels``: a gallery-style label file (``path label`` relative to it);
        ``unknown``: a folder of images whose objects are not in the gallery. Returns the report that
        ``output``/evaluate_result.json holds (recall@1/5, mAP, the proposed ``rec_threshold``, the
        unknown rejection precision/recall as it varies...). See ``pipelines/shitu_evaluate.py``.
        """
        from .shitu_evaluate import evaluate_pipeline

        return evaluate_pipeline(self, queries, labels, index, unknown=unknown, output=output,
                                 target_precision=target_precision, det_threshold=det_threshold,
                                 show_progress=show_progress, plots=plots)

    def _search_boxes(self, group: list[Detections | ErrorResult], gallery: Any, k: int,
                      choice: BoxChoice = BoxChoice()) -> list[tuple[Any, ...]]:
        """(detections, boxes, scores, ids, labels) per detected image of ``group``, top-``k`` per box
        (``choice``: single_mainbody...; the whole image when configured or when nothing was
        detected): what ``predict`` turns into results and ``evaluate`` scores."""
        return self._search_embedded(self._embed_boxes(group, choice), gallery, k)

    def _embed_boxes(self, group: list[Detections | ErrorResult], choice: BoxChoice,
                     recognizer: FeaturePredictor | None = None) -> _Embedded:
        """The boxes to recognise in each detected image of ``group`` and their crops' features,
        in one recogniser call (``recognizer``: a lane's twin; default the pipeline's)."""
        detected = [d for d in group if isinstance(d, Detections)]
        boxes_per_image: list[list[tuple[list[float], float]]] = []
        crops: list[np.ndarray] = []
        for found in detected:
            boxes = choice.apply(_detected_boxes(found))
            if not boxes or (self.always_add_whole_image and not choice.single):
                boxes.append(_whole_image_box(found))
            boxes_per_image.append(boxes)
            crops.extend(self._crops(found.image, [coordinate for coordinate, _ in boxes]))
        features = (recognizer or self.recognizer).embed(crops) if crops else None
        return _Embedded(group, detected, boxes_per_image, features)

    @staticmethod
    def _search_embedded(embedded: _Embedded, gallery: Any, k: int) -> list[tuple[Any, ...]]:
        if embedded.features is None:
            return []
        scores, ids, labels = gallery.search(embedded.features, k)
        searched: list[tuple[Any, ...]] = []
        for found, boxes, start in zip(embedded.detected, embedded.boxes, _offsets(embedded.boxes)):
            rows = slice(start, start + len(boxes))
            searched.append((found, boxes, scores[rows], ids[rows], labels[rows]))
        return searched

    # ------------------------------------------------------------------ predict
    def predict(self, input: Any, **params: Any) -> Iterator[BaseResult]:
        """Lazily yield a :class:`ShiTuResult` per image.

        ``index`` (an IndexData, index folder or Milvus location; PaddleX 3.0's ``index_dir`` is accepted
        for it), ``det_threshold``, ``rec_threshold`` and ``rec_topk`` (``topk`` is accepted for it)
        override the config's values; ``hamming_radius`` (PaddleX's, for binary indexes) is
        accepted and not used. ``single_mainbody=True`` (one box per image) or ``max_det_results=N``
        recognise only the best detected box(es), by detection score or, with ``mainbody_order="area"``,
        by area (given here they replace the config's pair).
        """
        self.check_predict_params(params)
        index = _index_argument(params.get("index"), params.get("index_dir"), "predict()")
        det = _first_given(params.get("det_threshold"), self.det_threshold)
        rec = _first_given(params.get("rec_threshold"), self.rec_threshold)
        k = _first_given(params.get("rec_topk"), params.get("topk"), self.rec_topk)
        self._check_numbers(det, rec, k)
        single, limit = params.get("single_mainbody"), params.get("max_det_results")
        if single is None and limit is None:
            single, limit = self._mainbody[:2]
        choice = BoxChoice.from_params(single, limit, _first_given(params.get("mainbody_order"), self._mainbody[2]))
        gallery = self._load_index(_first_given(index, self._default_index))
        self._check_index(gallery)
        self._warn_crop_mismatch(gallery)
        return self._predict(input, gallery, float(det), float(rec), int(k), choice)

    def decode_input(self, source: Any) -> DecodedImage:
        """One input decoded as ``predict()`` decodes it: at the reduced JPEG scale the first model
        allows, the Pillow image kept (the detector resizes from it and crops are cut from its memory)."""
        return (self.detector or self.recognizer).decode_input(source)

    @property
    def _min_decode_side(self) -> int | None:
        return (self.detector or self.recognizer).preprocess.config.min_decode_side

    def _whole_images(self, input: Any) -> Iterator[Detections | ErrorResult]:
        """Without a detector: each input decoded, no boxes (the whole image is recognised)."""
        for item in expand_inputs(input):
            if isinstance(item, ErrorResult):
                yield item
                continue
            try:
                yield Detections(item.decode(min_short_side=self._min_decode_side, keep_pil=True), [])
            except ViewfinderError as exc:
                log.warning("skipping %s", exc)
                yield ErrorResult({"input_path": item.input_path, "error": str(exc)})

    def _predict(self, input: Any, gallery: Any, det: float, rec: float, k: int,
                 choice: BoxChoice = BoxChoice()) -> Iterator[BaseResult]:
        lanes = self._lanes_for(input)
        if lanes is not None:
            yield from self._predict_in_lanes(input, gallery, det, rec, k, choice, *lanes)
            return
        # Detection (decoding ahead in its own pool) runs in a thread of its own, one image or two
        # ahead, while this thread crops, embeds and searches: the networks overlap instead of taking
        # turns, and the crops of every image detected meanwhile go to the recogniser in one call.
        with closing(self._detected_groups(input, det)) as groups:  # an abandoned predict stops the detector
            for group in groups:
                yield from self._recognise(group, gallery, rec, k, choice)

    def _lanes_for(self, input: Any) -> tuple[int, BasePredictor, FeaturePredictor] | None:
        """(lanes, detector, recogniser) to predict ``input`` in lanes (pipelines/lanes.py), or None:
        one image, ``cpu_lanes: 1``, one CPU thread, no detector, or an engine without lanes."""
        if self.detector is None or not several_images(input):
            return None
        threads = min(int(getattr(m.engine, "cpu_threads", 1) or 1) for m in (self.detector, self.recognizer))
        lanes = lane_count(self.cpu_lanes, threads)
        if lanes < 2:
            return None
        with self._lane_lock:  # the service may predict from several threads at once: make the twins once
            if self._lane_models is None or self._lane_models[0] != lanes:
                self._lane_models = (lanes, lane_twin(self.detector, lanes), lane_twin(self.recognizer, lanes))
            lanes, detector, recognizer = self._lane_models
        return None if detector is None or recognizer is None else (lanes, detector, recognizer)

    def _predict_in_lanes(self, input: Any, gallery: Any, det: float, rec: float, k: int, choice: BoxChoice,
                          lanes: int, detector: Any, recognizer: FeaturePredictor) -> Iterator[BaseResult]:
        """Each lane takes whole images through decode, detection, crops and embedding on one thread;
        this thread searches and makes the results, in input order."""
        params = detector.resolve_params({"threshold": det})
        detector._validate_params(params)

        def detect_and_embed(item: Any) -> _Embedded:
            if isinstance(item, InputItem):
                item = detector._decode_cpu(item)
            if isinstance(item, DecodedImage):
                item = detector._detect_batch([item], params)[0]
            return self._embed_boxes([item], choice, recognizer)

        for embedded in ordered_map(detect_and_embed, expand_inputs(input), lanes, ahead=2 * lanes):
            yield from self._results(embedded.group, self._search_embedded(embedded, gallery, k), gallery, rec)

    def _detected_groups(self, input: Any, det: float) -> Iterator[list[Detections | ErrorResult]]:
        """The inputs detected (whole images without a detector) in a thread of their own, up to
        DETECT_AHEAD images ahead, handed over in groups of what is ready (at most the recogniser's
        batch): the stream predict, gallery crops and evaluate all embed from."""
        stream = self.detector.detect(input, threshold=det) if self.detector else self._whole_images(input)
        with ReadAhead(stream, depth=DETECT_AHEAD, name="viewfinder-shitu-detect") as ahead:
            yield from ahead.groups(limit=max(1, self.recognizer.batch_size))

    def _recognise(self, group: list[Detections | ErrorResult], gallery: Any, rec: float,
                   k: int, choice: BoxChoice = BoxChoice()) -> list[BaseResult]:
        """Crops of every image in ``group`` embedded in one recogniser call and searched in one query."""
        return self._results(group, self._search_boxes(group, gallery, k, choice), gallery, rec)

    def _results(self, group: list[Detections | ErrorResult], searched: list[tuple[Any, ...]], gallery: Any,
                 rec: float) -> list[BaseResult]:
        """One result per item of ``group``: its errors in place, a ShiTuResult per searched image."""
        answers = [self._result(found, boxes, scores, ids, labels, gallery, rec)
                   for found, boxes, scores, ids, labels in searched]
        ordered = iter(answers)  # every detected image has at least one box (the whole image without detections)
        return [item if isinstance(item, ErrorResult) else next(ordered) for item in group]

    def _result(self, found: Detections, boxes: list[tuple[list[float], float]], scores: Any, ids: Any,
                labels: Any, gallery: Any, rec: float) -> ShiTuResult:
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
                # explicit, so a reader need not infer it from empty lists (the service says it too)
                "rejected": not accepted,
            })
        if self.dedup_threshold is not None:
            entries = self._dedup(entries, float(self.dedup_threshold), gallery.higher_is_better)
        image = found.image
        return ShiTuResult(
            {"input_path": image.input_path, "boxes": entries, "input_img": image.rgb},
            image_loader=full_image_loader(image),
        )

    @staticmethod
    def _crops(image: DecodedImage, coordinates: Sequence[Sequence[float]]) -> list[np.ndarray]:
        """Crops in decoded-pixel space (the decode may be reduced); int truncation as PaddleX.

        A Pillow-held image is cut from Pillow's own memory (RGB + a pad byte per pixel): only the
        crops are copied, not the whole image first (the route benchmarks/decode.py finds fastest)."""
        owner = None
        if image.rgb is not None:
            pixels = image.rgb
        elif image.pil is not None:
            borrowed = borrow_rgbx(image.pil)
            pixels, owner = borrowed if borrowed is not None else (np.asarray(image.pil), None)
        else:  # decoded on the GPU (nvJPEG): the pixels stayed there; read the file again
            pixels = full_image_loader(image)()
        height, width = pixels.shape[:2]
        sx = width / image.original_size[0]
        sy = height / image.original_size[1]
        crops = []
        for coordinate in coordinates:
            x1 = min(max(int(coordinate[0] * sx), 0), width - 1)
            y1 = min(max(int(coordinate[1] * sy), 0), height - 1)
            x2 = min(max(int(coordinate[2] * sx), x1 + 1), width)
            y2 = min(max(int(coordinate[3] * sy), y1 + 1), height)
            crops.append(np.ascontiguousarray(pixels[y1:y2, x1:x2, :3]))
        del owner  # the borrowed view must not outlive the copies
        return crops

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
