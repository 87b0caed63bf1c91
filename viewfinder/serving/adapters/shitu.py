"""``PP-ShiTuV2``: index build/add/remove, recognition, and (ours) index list/info/items/delete.

The pipeline is used through PaddleX's Python API only::

    build_index(gallery_imgs: list[BGR ndarray], gallery_label: list[str], metric_type, index_type) -> IndexData
    append_index(gallery_imgs, gallery_label, index: IndexData) -> IndexData
    remove_index(remove_ids: list[int], index: IndexData) -> IndexData
    predict(input, index=IndexData, det_threshold=, rec_threshold=, rec_topk=, [hamming_radius=])
        -> results with boxes: [{coordinate, det_score, labels, rec_scores}]
    [embed_gallery(gallery_imgs, gallery_label) -> embedding; append_embedding(embedding, index)]
        (ours, optional: adds then embed outside the index's commit)

Like PaddleX's service, indexes are built Flat + IP (so removal works). Unlike it, a
box whose recognition was rejected (``labels == [None]``) gets an empty ``recResults``
instead of a 500 (PaddleX #3390), and writers to one index queue in the event loop, not
on worker threads, so they never starve recognition requests of workers; the changes that
queued during one commit are applied together and saved once (a group commit).
"""
from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import FastAPI, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from ...errors import ConfigError, ServiceError
from ...results import to_jsonable
from ...retrieval.transform import given_index_options
from ..images import decode_bgr, is_url
from ..responses import INFER_ERRORS, error_responses
from ..schemas import (
    ID_MAX,
    BuildIndexResult,
    DeleteIndexResult,
    DetectedObject,
    IndexChangeResult,
    IndexInfo,
    IndexItem,
    IndexItems,
    IndexList,
    RecResult,
    ResultResponse,
    ShiTuInferResult,
)
from ..security import INDEX_KEY_PATTERN
from .base import WARMUP_BGR, PipelineAdapter, body_model

if TYPE_CHECKING:
    from ...retrieval import IndexData

REQUIRED_METHODS = ("build_index", "append_index", "remove_index", "predict")
PathKey = Annotated[str, Path(pattern=INDEX_KEY_PATTERN, max_length=128)]
#: ``GET /shitu-index/{indexKey}/items``: the most items on one page, and its query parameters
MAX_ITEMS_PAGE = 1000
LabelFilter = Annotated[str | None, Query(max_length=1024, description="only items whose label contains this "
                                                                      "(case-insensitive)")]
Offset = Annotated[int, Query(ge=0, le=ID_MAX, description="items to skip (by id order)")]
Limit = Annotated[int, Query(ge=1, le=MAX_ITEMS_PAGE, description="items on the page")]

_NEW_KEY = "$response.body#/result/indexKey"
#: OpenAPI links from a built index to the operations that take its key (clients and test
#: generators follow them: build, then add/remove/infer/get/delete on that index)
INDEX_LINKS: dict[str, dict[str, Any]] = {
    "addImagesToIndex": {"operationId": "addImagesToIndex", "requestBody": {"indexKey": _NEW_KEY}},
    "removeImagesFromIndex": {"operationId": "removeImagesFromIndex", "requestBody": {"indexKey": _NEW_KEY}},
    "infer": {"operationId": "infer", "requestBody": {"indexKey": _NEW_KEY}},
    "getIndex": {"operationId": "getIndex", "parameters": {"path.indexKey": _NEW_KEY}},
    "deleteIndex": {"operationId": "deleteIndex", "parameters": {"path.indexKey": _NEW_KEY}},
    "listIndexItems": {"operationId": "listIndexItems", "parameters": {"path.indexKey": _NEW_KEY}},
}


def item_source(metadata: Any) -> str | None:
    """Where an item's image came from, as its metadata records it: ``{"source": URL}`` (service adds and
    builds from a URL), ``{"path": file}`` (the CLI and the Python API), or a plain string."""
    if isinstance(metadata, dict):
        metadata = metadata.get("source") or metadata.get("path")
    return metadata if isinstance(metadata, str) and metadata else None


def url_sources(images: list[str]) -> list[str | None]:
    """The URL of each ``image`` field that is one (recorded as the item's source), else None."""
    return [image if is_url(image) else None for image in images]


def item_page(index: IndexData, label: str | None, offset: int, limit: int) -> dict[str, Any]:
    """Items by id, filtered by a case-insensitive substring of the label, one page of them."""
    id_map = index.id_map
    ids = sorted(id_map)
    if label:
        needle = label.casefold()
        ids = [i for i in ids if needle in id_map[i].casefold()]
    page = ids[offset:offset + limit]
    items = [IndexItem(id=i, label=id_map[i], source=item_source(meta))
             for i, meta in zip(page, index.get_metadata(page))]
    return {"total": len(ids), "offset": offset, "items": items}


def detected_objects(result: Any) -> list[DetectedObject]:
    """PaddleX's ``detectedObjects`` from a ShiTu result; rejected recognitions are left out."""
    objects = []
    for box in result.get("boxes") or []:
        labels = box.get("labels") or []
        scores = to_jsonable(box.get("rec_scores") or [])
        recognised = [RecResult(label=str(label), score=float(score))
                      for label, score in zip(labels, scores) if label is not None and score is not None]
        # ours says `rejected`; PaddleX's pipeline marks it with labels [None] (no recResults either way)
        objects.append(DetectedObject(bbox=[float(v) for v in to_jsonable(box["coordinate"])],
                                      recResults=recognised, score=float(to_jsonable(box.get("det_score", 0.0))),
                                      rejected=bool(box.get("rejected", not recognised))))
    return objects


def _require_in_place(result: Any, index: IndexData, method: str) -> None:
    if result is not None and result is not index:  # PaddleX's API allows it; a commit needs the change in place
        raise ServiceError(f"the pipeline's {method} returned a new index instead of changing the one it was given")


class ShiTuAdapter(PipelineAdapter):
    pipeline_names = ("PP-ShiTuV2",)
    queued_paths = ("/shitu-infer", "/shitu-index-build", "/shitu-index-add")

    def __init__(self, pipeline: Any, runtime: Any) -> None:
        super().__init__(pipeline, runtime)
        missing = [m for m in REQUIRED_METHODS if not callable(getattr(pipeline, m, None))]
        if missing:
            raise ConfigError(f"{type(pipeline).__name__} cannot serve PP-ShiTuV2: it lacks {', '.join(missing)}")
        self.store = runtime.store
        # The pipeline runs one image after another (its detector takes one image), so a
        # batch would only make requests wait for each other: one request per worker call.
        self.batcher = runtime.batcher(self._infer_batch, max_batch=1)
        self._writers: dict[tuple[int, str], asyncio.Lock] = {}
        self._queued: dict[tuple[int, str], list[tuple[Callable[[IndexData], Any], asyncio.Future]]] = {}

    # ------------------------------------------------------------------ helpers
    def _writer(self, key: str) -> asyncio.Lock:
        """Writers to one index wait here, in the event loop, rather than on a worker thread."""
        slot = (id(asyncio.get_running_loop()), key)
        lock = self._writers.get(slot)
        if lock is None:
            lock = self._writers[slot] = asyncio.Lock()
        return lock

    def _default_index(self) -> bool:
        config = getattr(self.pipeline, "config", None) or {}
        value = config.get("index")
        return not (value is None or str(value).strip().lower() in ("", "none", "null"))

    def _quiet(self, method: str) -> dict[str, Any]:
        """``show_progress=False`` where the pipeline method has it (no progress bars in a server log)."""
        try:
            return {"show_progress": False} if "show_progress" in inspect.signature(
                getattr(self.pipeline, method)).parameters else {}
        except (TypeError, ValueError):  # pragma: no cover
            return {}

    def _embeds_apart(self) -> bool:
        """The pipeline has ``embed_gallery``/``append_embedding`` (ours): embedding and index are separate steps."""
        return callable(getattr(self.pipeline, "embed_gallery", None)) and \
            callable(getattr(self.pipeline, "append_embedding", None))

    def _takes_crop(self, method: str) -> bool:
        try:
            return "crop" in inspect.signature(getattr(self.pipeline, method)).parameters
        except (TypeError, ValueError):  # pragma: no cover
            return False

    def gallery_crops(self) -> tuple[str, ...]:
        """The crop modes the request schemas offer: all three with a pipeline that crops with a
        detector (ours), else only ``none`` (whole images, what every PaddleX pipeline does)."""
        if self._takes_crop("build_index") and getattr(self.pipeline, "detector", None) is not None:
            return ("none", "best", "all")
        return ("none",)

    def _crop(self, method: str, crop: str | None) -> dict[str, Any]:
        """``crop=`` for a pipeline method when the request gave one the pipeline can take."""
        if crop is None or (crop == "none" and not self._takes_crop(method)):
            return {}
        if not self._takes_crop(method):
            raise ConfigError(f"crop: this pipeline's {method} cannot crop gallery images")
        return {"crop": crop}

    def _build(self, images: list[np.ndarray], labels: list[str], sources: list[str | None],
               crop: str | None = None, options: dict[str, Any] | None = None) -> BuildIndexResult:
        options = options or {}
        if options and not hasattr(self.pipeline, "index_options"):
            raise ConfigError("this pipeline's build_index takes no center/whiten/queryExpansion options")
        if any(sources) and self._embeds_apart():
            # Images fetched from URLs: embed, then record each URL as its item's source (the metadata
            # build_index would give arrays is empty), into a new index of the kind build_index makes
            # (with the index options build_index would apply, learned from this gallery).
            from ...pipelines.shitu import index_from_embedding

            embedding = self._embed(images, labels, sources, crop)
            merged = {**getattr(self.pipeline, "index_options", {}), **options}
            index = index_from_embedding(embedding, "IP", "Flat",
                                         **{k: v for k, v in merged.items() if v not in (None, False)})
        else:
            index = self.pipeline.build_index(images, labels, metric_type="IP", index_type="Flat",
                                              **options, **self._quiet("build_index"),
                                              **self._crop("build_index", crop))
        key = self.store.create(index)
        return BuildIndexResult(indexKey=key, idMap=index.id_map)

    def _embed(self, images: list[np.ndarray], labels: list[str], sources: list[str | None],
               crop: str | None = None) -> Any:
        embedding = self.pipeline.embed_gallery(images, labels, **self._quiet("embed_gallery"),
                                                **self._crop("embed_gallery", crop))
        metadata = getattr(embedding, "metadata", None)
        # which image each feature came from (ours says; else one feature per image, none skipped)
        positions = getattr(embedding, "positions", None)
        if positions is None and isinstance(metadata, list) and len(metadata) == len(sources):
            positions = list(range(len(sources)))
        if isinstance(metadata, list) and positions is not None and len(positions) == len(metadata):
            for row, position in enumerate(positions):
                if sources[position]:  # the URL replaces the (empty) path; a crop's box stays
                    kept = metadata[row] if isinstance(metadata[row], dict) else {}
                    metadata[row] = {"source": sources[position],
                                     **{k: v for k, v in kept.items() if k not in ("path", "source")}}
        return embedding

    async def _add_change(self, images: list[np.ndarray], labels: list[str], sources: list[str | None],
                          crop: str | None = None, index: Any = None) -> Callable[[IndexData], dict[int, str]]:
        """The change an add makes (run inside a commit); returns {new id: label}.

        Pipelines with ``embed_gallery``/``append_embedding`` (ours) embed here, on a worker and
        in parallel with other requests; the commit then only appends. Others embed in the commit
        (and record no sources). ``crop`` left out: the index's own mode (``index``: the index as it
        was when the request came; append_embedding refuses a mix if it changed meanwhile).
        """
        embedding: Any = None
        if self._embeds_apart():
            if index is not None and callable(getattr(self.pipeline, "append_crop", None)):
                crop = self.pipeline.append_crop(index, crop)  # ours: the index's mode, checked before embedding
            embedding = await self.runtime.pool.execute(self._embed, images, labels, sources, crop)

            def apply(index: IndexData) -> Any:
                return self.pipeline.append_embedding(embedding, index)
        else:
            def apply(index: IndexData) -> Any:
                return self.pipeline.append_index(images, labels, index, **self._quiet("append_index"),
                                                  **self._crop("append_index", crop))

        def change(index: IndexData) -> dict[int, str]:
            first = index.next_id if embedding is None else 0
            _require_in_place(apply(index), index, "append_index")
            # Our pipeline reports the ids it got (a Milvus gallery's counter is shared with other
            # processes, so next_id before/after could span their adds too); others: the counter's step.
            given = getattr(embedding, "ids", None)
            added = [int(i) for i in given] if given is not None else list(range(first, index.next_id))
            return {i: label for i, label in zip(added, index.get_labels(added)) if label is not None}
        return change

    def _remove_change(self, ids: list[int]) -> Callable[[IndexData], dict[int, str]]:
        """The change a remove makes; returns {removed id: its label}."""
        def change(index: IndexData) -> dict[int, str]:
            wanted = sorted(set(ids))
            labels = index.get_labels(wanted)
            _require_in_place(self.pipeline.remove_index(ids, index), index, "remove_index")
            return {i: label for i, label, now in zip(wanted, labels, index.get_labels(wanted))
                    if label is not None and now is None}
        return change

    async def _commit(self, key: str, change: Callable[[IndexData], Any]) -> tuple[Any, IndexData]:
        """Queue ``change`` for ``key``. While one commit runs, the changes that arrive wait here,
        in the event loop; the next commit applies all of them and saves the index once
        (``IndexStore.update_many``): on a large index the save, not the change, is the cost."""
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        future: asyncio.Future = loop.create_future()
        self._queued.setdefault(slot, []).append((change, future))
        async with self._writer(key):
            # Only a request whose change is still waiting starts a commit: the ones answered by an
            # earlier commit pass through, so the next batch has time to grow (11 vs 4 adds/s in
            # benchmarks/index_writes.py at 10,000 items when every holder committed what it found).
            batch = [] if future.done() else self._queued.pop(slot, [])
            if batch:  # empty when our change is in a commit still running for a cancelled request
                # Shielded: if this request is cancelled, the commit still runs and answers the others.
                await asyncio.shield(self._run_batch(key, batch))
        return await future

    async def _run_batch(self, key: str, batch: list[tuple[Callable[[IndexData], Any], asyncio.Future]]) -> None:
        try:
            # queued=False: these requests were admitted (and embedded) already; a full queue must not drop them
            outcomes = await self.runtime.pool.execute(self.store.update_many, key, [c for c, _ in batch], queued=False)
        except Exception as exc:  # unknown key, failed save: every change in the batch
            outcomes = [exc] * len(batch)
        for (_, waiting), outcome in zip(batch, outcomes):
            if waiting.done():  # its request was cancelled
                continue
            if isinstance(outcome, BaseException):
                waiting.set_exception(outcome)
            else:
                waiting.set_result(outcome)

    @staticmethod
    def _change_result(changed: dict[int, str], after: IndexData, changed_only: bool, ids_field: str
                       ) -> IndexChangeResult:
        if not changed_only:
            return IndexChangeResult(idMap=after.id_map)
        return IndexChangeResult(idMap=changed, indexSize=len(after), **{ids_field: list(changed)})

    def _infer_batch(self, items: list[tuple[Any, bool, tuple[Any, ...]]]) -> list[Any]:
        key, det_threshold, rec_threshold, hamming_radius, topk, mainbody = items[0][2]  # batches share these
        index = self.store.get(key) if key else None
        if topk is not None and index is not None:  # never search for more than the index holds
            topk = max(1, min(topk, len(index)))
        # singleMainbody / maxDetResults / mainbodyOrder reach the pipeline only when given (PaddleX's has none)
        chosen = {name: value for name, value in zip(("single_mainbody", "max_det_results", "mainbody_order"),
                                                     mainbody) if value is not None}
        results = self.predict_all([data for data, _, _ in items], index=index, det_threshold=det_threshold,
                                   rec_threshold=rec_threshold, hamming_radius=hamming_radius, rec_topk=topk,
                                   **chosen)
        return self.answer_each(results, [visualize for _, visualize, _ in items],
                                lambda result: ShiTuInferResult(detectedObjects=detected_objects(result)))

    def warmup(self) -> None:
        index = self.pipeline.build_index([WARMUP_BGR], ["warmup"], metric_type="IP", index_type="Flat",
                                          **self._quiet("build_index"))
        # two images: also makes the lanes' one-thread models (pipelines/lanes.py), which the first
        # micro-batch of several requests would otherwise wait for
        list(self.pipeline.predict([WARMUP_BGR, WARMUP_BGR], index=index))

    # ------------------------------------------------------------------ routes
    def register(self, app: FastAPI) -> None:
        runtime, store = self.runtime, self.store
        tags = ["PP-ShiTuV2"]
        # build/add state the crop modes this pipeline has (a schema-valid crop is one it can do)
        from ..schemas import request_models

        gallery_requests = request_models(runtime.config.max_topk, runtime.config.max_label_length,
                                          self.gallery_crops())

        @app.post("/shitu-index-build", operation_id="buildIndex", tags=tags,
                  response_model=ResultResponse[BuildIndexResult],
                  responses={200: {"links": INDEX_LINKS}, **error_responses(*INFER_ERRORS)})
        @body_model(gallery_requests.BuildIndexRequest)
        async def build_index(body: Any, request: Request):
            """Build a new index (Flat, inner product) from labelled images; returns its indexKey."""
            images = await runtime.read_images([pair.image for pair in body.imageLabelPairs], decode_bgr)
            labels = [pair.label for pair in body.imageLabelPairs]
            sources = url_sources([pair.image for pair in body.imageLabelPairs])
            options = given_index_options(body.center, body.whiten, body.queryExpansion)
            return runtime.ok(request, await runtime.pool.execute(self._build, images, labels, sources,
                                                                  body.crop, options))

        @app.post("/shitu-index-add", operation_id="addImagesToIndex", tags=tags,
                  response_model=ResultResponse[IndexChangeResult], responses=error_responses(*INFER_ERRORS, 404))
        @body_model(gallery_requests.AddImagesToIndexRequest)
        async def add_images(body: Any, request: Request):
            """Add labelled images to an index; new ids continue after the largest ever used."""
            current = await run_in_threadpool(store.get, body.indexKey)  # 404 before any image work
            images = await runtime.read_images([pair.image for pair in body.imageLabelPairs], decode_bgr)
            labels = [pair.label for pair in body.imageLabelPairs]
            sources = url_sources([pair.image for pair in body.imageLabelPairs])
            change = await self._add_change(images, labels, sources, body.crop, current)
            added, after = await self._commit(body.indexKey, change)
            return runtime.ok(request, self._change_result(added, after, body.changedOnly, "addedIds"))

        @app.post("/shitu-index-remove", operation_id="removeImagesFromIndex", tags=tags,
                  response_model=ResultResponse[IndexChangeResult], responses=error_responses(
                      400, 404, 413, 422, 500, 504, e400="Bad input: ids that are not in the index (nothing is removed)"))
        @body_model(runtime.requests.RemoveImagesFromIndexRequest)
        async def remove_images(body: Any, request: Request):
            """Remove ids from an index (ids are never reused)."""
            removed, after = await self._commit(body.indexKey, self._remove_change(body.ids))
            return runtime.ok(request, self._change_result(removed, after, body.changedOnly, "removedIds"))

        async def infer(body: Any, request: Request):
            """Detect the main objects of an image and recognise each against an index."""
            with self.batcher.incoming():
                if body.indexKey:
                    await run_in_threadpool(store.get, body.indexKey)  # 404 early; loads a cold index
                data = await runtime.read_image(body.image, self.decode_input)
                params = (body.indexKey, body.detThreshold, body.recThreshold, body.hammingRadius, body.topk,
                          (body.singleMainbody, body.maxDetResults, body.mainbodyOrder))
                result = await self.batcher.submit((data, runtime.visualize(body.visualize), params), key=params)
            return runtime.ok(request, result)

        # Without a default index in the pipeline config, indexKey is required: the spec says so, and
        # a request without one is a schema error (422) like any other missing field.
        requests = runtime.requests
        body_model(requests.ShiTuInferRequest if self._default_index() else requests.ShiTuInferKeyedRequest)(infer)
        app.post("/shitu-infer", operation_id="infer", tags=tags, response_model=ResultResponse[ShiTuInferResult],
                 responses=error_responses(*INFER_ERRORS, 404))(infer)

        @app.get("/shitu-indexes", operation_id="listIndexes", tags=tags, response_model=ResultResponse[IndexList],
                 responses=error_responses(413, 500, 504))
        async def list_indexes(request: Request):
            """Every stored index with its size."""
            rows = await run_in_threadpool(lambda: list(store.list()))
            return runtime.ok(request, IndexList(indexes=[IndexInfo(**row) for row in rows]))

        @app.get("/shitu-index/{indexKey}", operation_id="getIndex", tags=tags,
                 response_model=ResultResponse[IndexInfo], responses=error_responses(404, 413, 422, 500, 504))
        async def index_info(indexKey: PathKey, request: Request, withIdMap: bool = False):
            """Size, dimension, index and metric type of one index (``?withIdMap=true``: its idMap too)."""
            info = await run_in_threadpool(store.describe, indexKey)
            if withIdMap:
                info["idMap"] = (await run_in_threadpool(store.get, indexKey)).id_map
            return runtime.ok(request, IndexInfo(**info))

        @app.get("/shitu-index/{indexKey}/items", operation_id="listIndexItems", tags=tags,
                 response_model=ResultResponse[IndexItems], responses=error_responses(404, 413, 422, 500, 504))
        async def index_items(indexKey: PathKey, request: Request, label: LabelFilter = None, offset: Offset = 0,
                              limit: Limit = 100):
            """One page of an index's items by id: id, label and source (where the image came from, when
            recorded), optionally only those whose label contains ``label``."""
            index = await run_in_threadpool(store.get, indexKey)
            page = await run_in_threadpool(item_page, index, label, offset, limit)
            return runtime.ok(request, IndexItems(indexKey=indexKey, **page))

        @app.delete("/shitu-index/{indexKey}", operation_id="deleteIndex", tags=tags,
                    response_model=ResultResponse[DeleteIndexResult], responses=error_responses(404, 413, 422, 500, 504))
        async def delete_index(indexKey: PathKey, request: Request):
            """Delete an index from memory and disk."""
            async with self._writer(indexKey):
                await run_in_threadpool(store.delete, indexKey)
            return runtime.ok(request, DeleteIndexResult(indexKey=indexKey, deleted=True))
