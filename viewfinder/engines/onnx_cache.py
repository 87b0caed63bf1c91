"""The ONNX export cache in ``$VIEWFINDER_HOME/onnx/``: export once, validate once, reuse.

A file is named ``<model>-<weights sha256[:16]>-<settings digest>.onnx``; next to it a
``.json`` records the file's own sha256 and size, the export settings and the measured
difference from torch. A cached file whose size or checksum does not match (a crash
mid-copy, a truncated disk, an edit) or that ONNX Runtime cannot load is deleted and
rebuilt. Files are written to a temporary name and renamed, so readers never see half
a file. Only the most recently used few exports per model are kept, so random-weight
runs and fine-tuning iterations do not fill the disk.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import EngineError, ExportError
from ..paths import onnx_dir
from .export import RELATIVE_TOLERANCE, ExportSettings, export_onnx, validate_export, weights_hash
from .onnx_engine import OnnxRuntimeEngine

log = logging.getLogger(__name__)

#: exports kept per model name (most recently used first)
KEEP_PER_MODEL = 3
_STALE_PART_S = 24 * 3600


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _safe_name(model_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_name) or "model"


def cache_stem(model_name: str, weights_digest: str, settings: ExportSettings,
               identity: dict[str, Any] | None = None) -> str:
    """``<model>-<weights>-<settings+identity>``: identity (architecture, build kwargs) keeps two
    networks with the same name and weights layout apart."""
    extra = json.dumps({"settings": settings.key(), "identity": identity or {}}, sort_keys=True, default=str)
    return f"{_safe_name(model_name)}-{weights_digest[:16]}-{hashlib.sha256(extra.encode()).hexdigest()[:10]}"


def _remove(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, sort_keys=True)
    os.replace(temp, path)


def _load_cached(onnx_path: Path, meta_path: Path, device: torch.device,
                 cpu_threads: int | None) -> OnnxRuntimeEngine | None:
    """The cached engine, or None when there is none; a damaged entry is removed (and rebuilt by the caller)."""
    if not onnx_path.exists() and not meta_path.exists():
        return None
    problem = None
    meta: dict[str, Any] = {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        size = onnx_path.stat().st_size
        if size != meta.get("onnx_size") or file_sha256(onnx_path) != meta.get("onnx_sha256"):
            problem = f"size or checksum does not match its record ({size} bytes, expected {meta.get('onnx_size')})"
    except (OSError, ValueError) as exc:
        problem = f"cannot read it or its record ({exc})"
    if problem is None:
        try:
            engine = OnnxRuntimeEngine(onnx_path, device, cpu_threads, output_kind=meta.get("output_kind", "tensor"))
        except EngineError as exc:
            problem = str(exc)
        else:
            os.utime(onnx_path)  # most recently used: pruning keeps it
            return engine
    log.warning("cached ONNX export %s is corrupt (%s); deleting and rebuilding it", onnx_path, problem)
    _remove(onnx_path, meta_path)
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed by another process meanwhile
        return 0.0


def _prune(folder: Path, model_name: str, keep: int = KEEP_PER_MODEL) -> None:
    pattern = re.compile(rf"^{re.escape(_safe_name(model_name))}-[0-9a-f]{{16}}-[0-9a-f]{{10}}\.onnx$")
    exports = sorted((p for p in folder.iterdir() if pattern.match(p.name)), key=_mtime, reverse=True)
    for old in exports[keep:]:
        _remove(old, old.with_suffix(".json"))
    now = time.time()
    for part in folder.glob(".*.part"):  # left behind by a killed export
        if now - (_mtime(part) or now) > _STALE_PART_S:
            _remove(part)


def export_validated(module: nn.Module, destination: Path, settings: ExportSettings, device: torch.device,
                     cpu_threads: int | None, label: str) -> tuple[OnnxRuntimeEngine, dict[str, Any]]:
    """Export to a temporary file next to ``destination``, validate against torch, then move it in place.

    Raises :class:`ExportError` when the export fails or differs from torch beyond tolerance.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    os.close(handle)
    temp = Path(temp_name)
    started = time.perf_counter()
    try:
        layout = export_onnx(module, temp, settings)
        engine = OnnxRuntimeEngine(temp, device, cpu_threads, output_kind=layout.kind)
        report = validate_export(module, engine, settings)
        log.info("%s: ONNX export vs torch: max abs diff %.3g, relative %.3g (%.1f s)", label,
                 report.max_abs_diff, report.max_rel_diff, time.perf_counter() - started)
        if not report.ok:
            raise ExportError(
                f"{label}: the ONNX export differs from torch by up to {report.max_abs_diff:.3g} "
                f"({report.max_rel_diff:.3g} of the output range, above {RELATIVE_TOLERANCE:g}); not using it"
            )
        meta = {
            "max_abs_diff": report.max_abs_diff,
            "max_rel_diff": report.max_rel_diff,
            "output_kind": layout.kind,
            "output_names": list(layout.names),
            "onnx_size": temp.stat().st_size,
            "onnx_sha256": file_sha256(temp),
            "settings": asdict(settings),
            "torch_version": torch.__version__,
        }
        os.chmod(temp, 0o644)  # mkstemp makes it owner-only; the cache is as readable as the weights
        os.replace(temp, destination)
        engine.path = destination
        return engine, meta
    finally:
        _remove(temp)


def load_or_export(model_name: str, module: nn.Module, settings: ExportSettings, device: torch.device,
                   cpu_threads: int | None = None, identity: dict[str, Any] | None = None,
                   weights_digest: str | None = None) -> OnnxRuntimeEngine:
    """An ONNX Runtime engine for ``module``: from the cache, or exported, validated and cached now.

    ``weights_digest``: ``weights_hash(module)`` when the caller has it already (hashing a large
    network takes seconds)."""
    digest = weights_digest or weights_hash(module)
    folder = onnx_dir()
    stem = cache_stem(model_name, digest, settings, identity)
    onnx_path, meta_path = folder / f"{stem}.onnx", folder / f"{stem}.json"
    engine = _load_cached(onnx_path, meta_path, device, cpu_threads)
    if engine is not None:
        return engine
    log.info("%s: exporting to ONNX once; cached as %s", model_name, onnx_path)
    try:
        engine, meta = export_validated(module, onnx_path, settings, device, cpu_threads, model_name)
        _write_json_atomic(meta_path, {**meta, "model_name": model_name, "weights_sha256": digest,
                                       "identity": identity or {}})
        _prune(folder, model_name)
    except OSError as exc:  # read-only or full disk: the caller falls back to torch
        raise ExportError(f"cannot write the ONNX cache in {folder}: {exc}") from None
    return engine
