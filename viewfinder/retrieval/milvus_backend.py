"""``MilvusGallery``: the gallery interface (``backend.Gallery``) over one Milvus collection.

Rows: ``id`` (INT64 primary key, ours), ``vector`` (FLOAT_VECTOR), ``label`` (VARCHAR), ``meta``
(VARCHAR: the item's metadata as JSON text, "" for none; JSON text keeps a string apart from
other values, as the faiss folder does). The collection's properties record what the faiss
folder's ``id_map.yaml`` does: format, index_type, metric_type, dim, search params, the feature
model, and ``next_id`` (the id counter: ids are never reused, across processes - see
``milvus_lock``). Every change is written through; queries use Strong consistency, so a change
acknowledged by one process is seen by the next request of any other.

Index types: ``Flat`` -> ``FLAT``, ``IVF`` -> ``IVF_FLAT`` (nlist/nprobe chosen from N as for
faiss), ``HNSW32`` -> ``HNSW`` (M=32, efConstruction=80, ef=128: the faiss defaults here).
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Iterable, Iterator

import numpy as np

from viewfinder.errors import RetrievalIndexError
from viewfinder.retrieval import faiss_factory as ff
from viewfinder.retrieval.backend import GalleryItems, ScoreRules, score_meaning
from viewfinder.retrieval.location import LOCK_SUFFIX, TEMP_MARK, MilvusLocation, parse_location
from viewfinder.retrieval.milvus_client import (
    BULK_TIMEOUT_S,
    CALL_TIMEOUT_S,
    DataType,
    MilvusClient,
    call,
    client_for,
    translate,
)
from viewfinder.retrieval.milvus_lock import gallery_lock, lock_name
from viewfinder.retrieval.validate import _preview, as_ids, as_k, as_label_list, as_labels, as_matrix, as_metadata

FORMAT_NAME = "viewfinder-milvus-gallery"
FORMAT_VERSION = 1
MILVUS_INDEX = {"Flat": "FLAT", "IVF": "IVF_FLAT", "HNSW32": "HNSW"}
MAX_LABEL_BYTES = 65535      # Milvus VARCHAR limit
MAX_TOPK = 16384             # Milvus's largest limit per search
_IN_CHUNK = 4096             # ids per "id in [...]" expression
_INSERT_BYTES = 16 << 20     # rows per insert call: well under gRPC's 64 MB message cap
_P = "viewfinder."


def _props(**values: Any) -> dict[str, str]:
    return {f"{_P}{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _schema(dim: int, description: str) -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("label", DataType.VARCHAR, max_length=MAX_LABEL_BYTES)
    schema.add_field("meta", DataType.VARCHAR, max_length=MAX_LABEL_BYTES)
    return schema


def _index_params(client: Any, index_type: str, metric_type: str, n: int) -> tuple[Any, dict[str, Any]]:
    """Milvus index parameters for our index type, and the search params to store with them."""
    params = client.prepare_index_params()
    build: dict[str, Any] = {}
    search: dict[str, Any] = {}
    if index_type == "HNSW32":
        build = {"M": ff.HNSW_M, "efConstruction": ff.DEFAULT_EF_CONSTRUCTION}
        search = {"ef": ff.DEFAULT_EF_SEARCH}
    elif index_type == "IVF":
        nlist = ff.auto_nlist(max(n, 1))
        build = {"nlist": nlist}
        search = {"nprobe": ff.auto_nprobe(nlist)}
    # pymilvus 3 sends build params as flat keys (what Milvus servers read); Milvus Lite 3.2 reads only
    # the legacy JSON "params" key and would silently build with its own defaults (HNSW M=16,
    # IVF nlist=128). Servers merge a "params" key into the flat ones, so both get both.
    params.add_index("vector", index_type=MILVUS_INDEX[index_type], metric_type=metric_type,
                     params={**build, "params": build} if build else {})
    return params, search


def _meta_text(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False)


def _meta_value(text: Any) -> Any:
    return None if not text else json.loads(text)


def _id_expr(ids: Iterable[int]) -> str:
    return f"id in [{', '.join(str(int(i)) for i in ids)}]"


def _label_expr(labels: list[str]) -> str:
    return f"label in [{', '.join(json.dumps(lab, ensure_ascii=False) for lab in labels)}]"


class MilvusGallery(ScoreRules):
    """A gallery in a Milvus collection: :meth:`open` an existing one, :meth:`write` a new one."""

    def __init__(self, location: MilvusLocation, client: Any, facts: dict[str, Any]) -> None:
        self.location = location
        self._client = client
        self._name = location.collection
        self._dim = int(facts["dim"])
        self._index_type = ff.normalize_index_type(facts["index_type"])
        self.metric_type = ff.normalize_metric_type(facts["metric_type"])
        self._search_params = dict(facts.get("search_params") or {})
        self._feature_model = facts.get("feature_model")

    # ------------------------------------------------------------------ opening and writing
    @classmethod
    def open(cls, location: "str | MilvusLocation") -> "MilvusGallery":
        """The gallery in ``location``'s collection; RetrievalIndexError when there is none."""
        loc = _gallery_location(location)
        client = client_for(loc)
        if not call(loc, "has_collection", client.has_collection, loc.collection):
            raise RetrievalIndexError(f"no gallery at {loc}: collection {loc.collection!r} does not exist")
        described = call(loc, "describe_collection", client.describe_collection, loc.collection)
        return cls(loc, client, _facts(loc, described))

    @classmethod
    def exists(cls, location: "str | MilvusLocation") -> bool:
        loc = _gallery_location(location)
        client = client_for(loc)
        return bool(call(loc, "has_collection", client.has_collection, loc.collection))

    @classmethod
    def write(cls, location: "str | MilvusLocation", source: Any, *, overwrite: bool = False,
              index_type: str | None = None) -> "MilvusGallery":
        """Store a copy of ``source`` (any gallery: its ids, labels, metadata, counter and feature model).

        Written into a temporary collection and renamed into place once complete, so a failed or
        interrupted write never leaves a half gallery under the name.
        """
        loc = _gallery_location(location)
        if getattr(source, "feature_transform", None) or getattr(source, "query_expansion", None):
            # Milvus searches the stored vectors with raw queries: it cannot centre/whiten or expand them
            raise RetrievalIndexError(
                f"{loc}: a Milvus gallery cannot hold an index with centring/whitening or query expansion "
                f"(feature_transform={getattr(source, 'feature_transform', None)}, query_expansion="
                f"{getattr(source, 'query_expansion', None)}); keep it in a folder, or rebuild it without them")
        client = client_for(loc)
        if not overwrite and call(loc, "has_collection", client.has_collection, loc.collection):
            raise RetrievalIndexError(f"{loc} already holds a gallery; delete it first (or overwrite)")
        items = source.export_items()
        index_type = ff.normalize_index_type(index_type or source.index_type)
        metric_type = ff.normalize_metric_type(source.metric_type)
        temp = f"{loc.collection}{TEMP_MARK}{uuid.uuid4().hex[:12]}"
        params, search = _index_params(client, index_type, metric_type, len(items.ids))
        properties = _props(format=FORMAT_NAME, format_version=str(FORMAT_VERSION), index_type=index_type,
                            metric_type=metric_type, dim=str(source.dim), search_params=search,
                            next_id=str(int(source.next_id)), feature_model=source.feature_model)
        with translate(loc, "gallery write"):
            client.create_collection(temp, schema=_schema(source.dim, f"viewfinder gallery {loc.collection}"),
                                     index_params=params, properties=properties, consistency_level="Strong",
                                     timeout=CALL_TIMEOUT_S)
            try:
                _insert(client, temp, items.ids, items.vectors, items.labels, items.metadata, BULK_TIMEOUT_S)
                # seal what was written: Milvus builds the vector index on sealed data
                client.flush(temp, timeout=BULK_TIMEOUT_S)
                if overwrite and client.has_collection(loc.collection, timeout=CALL_TIMEOUT_S):
                    client.drop_collection(loc.collection, timeout=CALL_TIMEOUT_S)
                # Milvus Lite finishes building the index before it renames: a bulk timeout
                client.rename_collection(temp, loc.collection, timeout=BULK_TIMEOUT_S)
                client.load_collection(loc.collection, timeout=BULK_TIMEOUT_S)
            except BaseException:
                try:
                    client.drop_collection(temp)
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
                raise
        return cls.open(loc)

    def drop(self) -> None:
        """Delete the gallery (and a lock left behind by a killed process)."""
        call(self.location, "drop_collection", self._client.drop_collection, self._name)
        if call(self.location, "has_collection", self._client.has_collection, lock_name(self._name)):
            call(self.location, "drop_collection", self._client.drop_collection, lock_name(self._name))

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def index_type(self) -> str:
        return self._index_type

    @property
    def feature_model(self) -> dict[str, Any] | None:
        return dict(self._feature_model) if self._feature_model is not None else None

    @feature_model.setter
    def feature_model(self, value: dict[str, Any] | None) -> None:
        if value is not None and not isinstance(value, dict):
            raise RetrievalIndexError(f"feature_model must be a dict or None, got {type(value).__name__}")
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RetrievalIndexError(f"feature_model must be JSON-serialisable: {exc}") from None
        call(self.location, "alter_collection_properties", self._client.alter_collection_properties,
             self._name, properties={f"{_P}feature_model": text})
        self._feature_model = dict(value) if value is not None else None

    @property
    def next_id(self) -> int:
        """The id the next append starts from (the shared counter, as stored now)."""
        return int(self._properties().get(f"{_P}next_id", "0"))

    @property
    def id_map(self) -> dict[int, str]:
        return {int(row["id"]): row["label"] for row in self._scan(["id", "label"])}

    @property
    def metadata(self) -> dict[int, Any]:
        return {int(row["id"]): _meta_value(row["meta"]) for row in self._scan(["id", "meta"]) if row["meta"]}

    def __len__(self) -> int:
        return self._count("")

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, (int, np.integer)) and self.get_labels([int(item_id)])[0] is not None

    def __repr__(self) -> str:
        return (f"MilvusGallery({self.location}, index_type={self._index_type!r}, "
                f"metric_type={self.metric_type!r}, dim={self._dim})")

    # ------------------------------------------------------------------ changes
    def append(self, features: Any, labels: Any, metadata: Any = None) -> np.ndarray:
        """Add vectors; returns their new ids (consecutive, never reused, unique across processes)."""
        x = as_matrix(features, self._dim)
        labs = as_labels(labels, len(x))
        meta = as_metadata(metadata, len(x))
        for i, lab in enumerate(labs):
            if len(lab.encode("utf-8")) > MAX_LABEL_BYTES:
                raise RetrievalIndexError(f"label {i} is longer than Milvus allows ({MAX_LABEL_BYTES} bytes)")
        texts = [_meta_text(m) for m in (meta or [None] * len(x))]
        if any(len(t.encode("utf-8")) > MAX_LABEL_BYTES for t in texts):
            raise RetrievalIndexError(f"a metadata entry is longer than Milvus allows "
                                      f"({MAX_LABEL_BYTES} bytes as JSON)")
        first = self._reserve(len(x))
        ids = np.arange(first, first + len(x), dtype=np.int64)
        # The ids are ours alone now; the insert needs no lock. A failed insert wastes them (never reused).
        with translate(self.location, "insert"):
            _insert(self._client, self._name, ids, x, labs, meta)
        return ids

    def _reserve(self, n: int) -> int:
        """Take ``n`` ids from the shared counter (under the gallery's cross-process lock)."""
        with gallery_lock(self._client, self.location, self._name):
            first = self.next_id
            call(self.location, "alter_collection_properties", self._client.alter_collection_properties,
                 self._name, properties={f"{_P}next_id": str(first + n)})
        return first

    def remove(self, ids: Any, *, ignore_missing: bool = False) -> np.ndarray:
        """Remove items by id; unknown ids raise (listing them) and nothing is removed."""
        wanted = as_ids(ids)
        if len(wanted) == 0:
            return wanted
        with gallery_lock(self._client, self.location, self._name):
            present = self._existing(wanted)
            known = np.isin(wanted, present)
            if not known.all() and not ignore_missing:
                raise RetrievalIndexError(
                    f"cannot remove ids that are not in the index (never added or already removed): "
                    f"{_preview(wanted[~known].tolist())}; nothing was removed")
            gone = wanted[known]
            self._delete(gone)
        return gone

    def remove_labels(self, labels: Any, *, ignore_missing: bool = False) -> np.ndarray:
        """Remove every item with one of ``labels``; a label no item has raises, nothing removed."""
        wanted = as_label_list(labels)
        if not wanted:
            return np.empty(0, np.int64)
        with gallery_lock(self._client, self.location, self._name):
            rows = self._query_rows(_label_expr(wanted), ["id", "label"])
            missing = sorted(set(wanted) - {row["label"] for row in rows})
            if missing and not ignore_missing:
                raise RetrievalIndexError(f"no item has the label(s) {_preview(missing)}; nothing was removed")
            gone = np.unique(np.asarray([int(row["id"]) for row in rows], dtype=np.int64))
            self._delete(gone)
        return gone

    def _delete(self, ids: np.ndarray) -> None:
        for start in range(0, len(ids), _IN_CHUNK):
            call(self.location, "delete", self._client.delete, self._name, ids=ids[start:start + _IN_CHUNK].tolist())

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int = 5, *, ef_search: int | None = None,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray, list[list[str | None]]]:
        """Top-``k`` per query, best first: (scores [n, k], ids [n, k], labels), empty slots filled."""
        k = as_k(k)
        q = as_matrix(queries, self._dim, what="queries")
        limit = min(k, MAX_TOPK)
        params = dict(self._search_params)
        if self._index_type == "HNSW32":  # Milvus wants ef >= limit
            ef = ff.IndexParams(ef_search=ef_search).ef_search if ef_search is not None else params.get("ef")
            params["ef"] = max(int(ef or ff.DEFAULT_EF_SEARCH), limit)
        elif self._index_type == "IVF" and nprobe is not None:
            params["nprobe"] = ff.IndexParams(nprobe=nprobe).nprobe
        hits = call(self.location, "search", self._client.search, self._name, data=q, limit=limit,
                    search_params={"metric_type": self.metric_type, "params": params},
                    output_fields=["label"], consistency_level="Strong")
        scores = np.full((len(q), k), self.worst_score, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        labels: list[list[str | None]] = [[None] * k for _ in range(len(q))]
        for row, found in enumerate(hits):
            for col, hit in enumerate(list(found)[:k]):
                scores[row, col] = hit["distance"]
                ids[row, col] = int(hit["id"])
                labels[row][col] = (hit.get("entity") or {}).get("label")
        return scores, ids, labels

    # ------------------------------------------------------------------ lookups
    def get_labels(self, ids: Iterable[int]) -> list[str | None]:
        wanted = [int(i) for i in ids]
        found = {int(r["id"]): r["label"] for r in self._rows_by_id(wanted, ["id", "label"])}
        return [found.get(i) for i in wanted]

    def get_metadata(self, ids: Iterable[int]) -> list[Any]:
        wanted = [int(i) for i in ids]
        found = {int(r["id"]): _meta_value(r["meta"]) for r in self._rows_by_id(wanted, ["id", "meta"])}
        return [found.get(i) for i in wanted]

    def info(self) -> dict[str, Any]:
        labels = self.id_map
        properties = self._properties()
        try:
            index = call(self.location, "describe_index", self._client.describe_index, self._name, "vector")
        except RetrievalIndexError:
            index = {}
        return {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "backend": "milvus",
            "location": str(self.location), "collection": self._name,
            "index_type": self._index_type, "metric_type": self.metric_type,
            "score": score_meaning(self.metric_type), "dim": self._dim, "size": len(labels),
            "next_id": int(properties.get(f"{_P}next_id", "0")), "labels": len(set(labels.values())),
            "with_metadata": self._count('meta != ""'),
            "milvus_index": {k: v for k, v in index.items() if k in ("index_type", "metric_type", "params", "M",
                                                                     "efConstruction", "nlist")},
            "search_params": dict(self._search_params), "feature_model": self.feature_model,
        }

    def export_items(self) -> GalleryItems:
        rows = sorted(self._scan(["id", "vector", "label", "meta"]), key=lambda r: int(r["id"]))
        vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), self._dim)
        return GalleryItems(np.asarray([int(r["id"]) for r in rows], dtype=np.int64), vectors,
                            [r["label"] for r in rows], [_meta_value(r["meta"]) for r in rows])

    # ------------------------------------------------------------------ internals
    def _properties(self) -> dict[str, str]:
        described = call(self.location, "describe_collection", self._client.describe_collection, self._name)
        return described.get("properties") or {}

    def _count(self, expr: str) -> int:
        rows = call(self.location, "count", self._client.query, self._name, filter=expr,
                    output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"]) if rows else 0

    def _query_rows(self, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        return list(call(self.location, "query", self._client.query, self._name, filter=expr,
                         output_fields=fields, consistency_level="Strong"))

    def _rows_by_id(self, ids: list[int], fields: list[str]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            if chunk:
                yield from self._query_rows(_id_expr(chunk), fields)

    def _existing(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray([int(r["id"]) for r in self._rows_by_id(ids.tolist(), ["id"])], dtype=np.int64)

    def _scan(self, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row, in batches (Milvus caps one query's result size)."""
        with translate(self.location, "query"):
            iterator = self._client.query_iterator(self._name, batch_size=2000, filter="id >= 0",
                                                   output_fields=fields, consistency_level="Strong")
            try:
                while True:
                    batch = iterator.next()
                    if not batch:
                        return
                    yield from batch
            finally:
                iterator.close()


def gallery_collections(store: MilvusLocation, prefix: str = "") -> list[str]:
    """Names of the viewfinder galleries in ``store``'s database (starting with ``prefix``), sorted."""
    client = client_for(store)
    names = [n for n in call(store, "list_collections", client.list_collections)
             if n.startswith(prefix) and LOCK_SUFFIX not in n and TEMP_MARK not in n]
    out = []
    for name in sorted(names):
        try:
            described = call(store, "describe_collection", client.describe_collection, name)
        except RetrievalIndexError:  # dropped meanwhile
            continue
        if (described.get("properties") or {}).get(f"{_P}format") == FORMAT_NAME:
            out.append(name)
    return out


def _gallery_location(location: "str | MilvusLocation") -> MilvusLocation:
    loc = parse_location(location)
    if not isinstance(loc, MilvusLocation) or loc.collection is None:
        raise RetrievalIndexError(f"not a Milvus gallery location: {location}")
    return loc


def _facts(loc: MilvusLocation, described: dict[str, Any]) -> dict[str, Any]:
    properties = described.get("properties") or {}
    if properties.get(f"{_P}format") != FORMAT_NAME:
        raise RetrievalIndexError(f"{loc}: collection {loc.collection!r} is not a viewfinder gallery "
                                  f"(no {_P}format property)")
    version = properties.get(f"{_P}format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise RetrievalIndexError(f"{loc}: written by a newer viewfinder (gallery format version {version!r}); "
                                  f"this one reads version <= {FORMAT_VERSION}")
    try:
        feature_model = json.loads(properties.get(f"{_P}feature_model", "null"))
        search_params = json.loads(properties.get(f"{_P}search_params", "{}"))
        return {"dim": int(properties[f"{_P}dim"]), "index_type": properties[f"{_P}index_type"],
                "metric_type": properties[f"{_P}metric_type"], "feature_model": feature_model,
                "search_params": search_params}
    except (KeyError, ValueError) as exc:
        raise RetrievalIndexError(f"{loc}: the gallery's properties are damaged: {exc}") from None


def _insert(client: Any, name: str, ids: np.ndarray, vectors: np.ndarray, labels: list[str],
            metadata: list[Any] | None, timeout: float = CALL_TIMEOUT_S) -> None:
    n = len(ids)
    if n == 0:
        return
    step = max(1, _INSERT_BYTES // max(1, vectors.shape[1] * 4 + 256))
    for start in range(0, n, step):
        end = min(n, start + step)
        rows = [{"id": int(ids[i]), "vector": vectors[i], "label": labels[i],
                 "meta": _meta_text(metadata[i]) if metadata else ""} for i in range(start, end)]
        client.insert(name, rows, timeout=timeout)  # an insert may flush (and index) a full memtable
