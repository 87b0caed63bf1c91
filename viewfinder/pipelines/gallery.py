"""Gallery label files for PP-ShiTuV2 ``build_index`` / ``append_index``.

Lines are ``relative/path.jpg<space>label`` (PaddleX) or ``relative/path.jpg<TAB>label``
(PaddleClas; the tab form lets labels contain spaces). Files are UTF-8 (a BOM is
tolerated), so labels can be Chinese. Blank lines and ``#`` comments are skipped.

Format mistakes (a space-delimited line with more than two fields, an empty label, no
path) fail the whole call with every bad line listed: a gallery built from a half-read
file is worse than none. Duplicate paths are reported and only the first kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, InputError


@dataclass
class GalleryEntries:
    paths: list[str]
    labels: list[str]
    #: human-readable notes on lines that were skipped (duplicates)
    skipped: list[str] = field(default_factory=list)


def parse_gallery_line(line: str) -> tuple[str, str]:
    """Split one line into (path, label); raises ``ValueError`` with the reason."""
    if "\t" in line:
        path, _, label = line.partition("\t")
        path, label = path.strip(), label.strip()
    else:
        fields = line.split()
        if len(fields) > 2:
            raise ValueError(
                f"{len(fields)} space-separated fields; use 'path<TAB>label' for labels that contain spaces"
            )
        path, label = (fields + ["", ""])[:2]
    if not path:
        raise ValueError("no image path")
    if not label:
        raise ValueError("empty label")
    return path, label


def read_gallery_file(root: str | Path, label_file: str | Path) -> GalleryEntries:
    """Read ``label_file``; paths are resolved against ``root``."""
    root_path, file_path = Path(root), Path(label_file)
    if not file_path.is_file():
        raise InputError(f"gallery label file {file_path} does not exist")
    if not root_path.is_dir():
        raise InputError(f"gallery root {root_path} is not a folder")
    try:
        text = file_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file_path}: not UTF-8 text ({exc})") from None
    entries = GalleryEntries([], [])
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            rel, label = parse_gallery_line(line)
        except ValueError as exc:
            errors.append(f"line {number}: {exc}: {line[:80]!r}")
            continue
        full = str(root_path / rel)
        if full in seen:
            entries.skipped.append(f"line {number}: duplicate of line {seen[full]} ({rel}), skipped")
            continue
        seen[full] = number
        entries.paths.append(full)
        entries.labels.append(label)
    if errors:
        shown = "; ".join(errors[:10]) + (f"; ... {len(errors) - 10} more" if len(errors) > 10 else "")
        raise ConfigError(f"{file_path}: {len(errors)} malformed line(s): {shown}")
    if not entries.paths:
        raise InputError(f"{file_path}: no gallery entries")
    return entries


def read_id_file(path: str | Path) -> list[int]:
    """Ids to remove: one per line, the first whitespace-separated token (PaddleX)."""
    file_path = Path(path)
    if not file_path.is_file():
        raise InputError(f"id file {file_path} does not exist")
    ids: list[int] = []
    for number, line in enumerate(file_path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        token = line.split()[0] if line.split() else ""
        if not token or token.startswith("#"):
            continue
        try:
            ids.append(int(token))
        except ValueError:
            raise ConfigError(f"{file_path} line {number}: {token!r} is not an integer id") from None
    return ids
