"""The output: a folder ``OUT.parquet/`` of part files that read back as one table; resume reads it.

Each run adds part files and never rewrites one: a part file is written under a temporary
dot-name and renamed into place when complete (pyarrow and Ray readers skip the former), so a
killed job leaves only whole part files and a re-run skips every input they hold. Part files
are closed every ``rows_per_file`` rows or ``seconds_per_file`` seconds, whichever first, so a
long job that dies loses at most that much work.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError

PART_PREFIX = "part-"


def check_output(output: str) -> Path:
    """``output`` as the job's folder: it must end in ``.parquet`` and be a folder if it exists."""
    path = Path(output).expanduser()
    if path.suffix.lower() != ".parquet":
        raise ConfigError(f"--output must end in .parquet (a folder of Parquet part files), got {output!r}")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{output} exists and is a file; a batch output is a folder of part files: "
                          "give a new --output")
    return path


def part_files(folder: Path) -> list[Path]:
    """The complete part files of an output (never the dot-named ones being written)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith(PART_PREFIX) and p.suffix == ".parquet")


def read_output(folder: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every row written so far (None when there is none)."""
    parts = part_files(folder)
    if not parts:
        return None
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts], promote_options="default")


def done_inputs(folder: Path, schema: pa.Schema) -> set[str]:
    """Inputs that already have a row (error rows included: a corrupt file stays corrupt)."""
    parts = part_files(folder)
    for part in parts:
        found = pq.read_schema(part)
        if not schema.equals(found, check_metadata=False):
            raise ConfigError(f"{folder} holds rows of another kind of job ({part.name} has columns "
                              f"{', '.join(found.names)}; this job writes {', '.join(schema.names)}): "
                              "give a new --output")
    table = read_output(folder, ["input_path"])
    return set() if table is None else set(table.column("input_path").to_pylist())


def clean_unfinished(folder: Path) -> None:
    """Remove dot-named part files a killed run left behind (their rows are computed again)."""
    if folder.is_dir():
        for leftover in folder.glob(f".{PART_PREFIX}*"):
            leftover.unlink(missing_ok=True)


class PartWriter:
    """Buffers result tables and writes them as whole part files (write under a dot-name, then rename)."""

    def __init__(self, folder: Path, schema: pa.Schema, rows_per_file: int = 10_000,
                 seconds_per_file: float = 60.0) -> None:
        self.folder, self.schema = folder, schema
        self.rows_per_file, self.seconds_per_file = rows_per_file, seconds_per_file
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._since = time.monotonic()
        self._count = 0
        self.written: list[Path] = []

    def add(self, table: pa.Table) -> None:
        self._pending.append(table.cast(self.schema))
        self._rows += table.num_rows
        if self._rows >= self.rows_per_file or time.monotonic() - self._since >= self.seconds_per_file:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{PART_PREFIX}{self.run_id}-{self._count:05d}.parquet"
        temporary = self.folder / f".{name}.tmp"  # skipped by pyarrow (dot-name) and Ray (extension)
        pq.write_table(pa.concat_tables(self._pending), temporary)
        os.replace(temporary, self.folder / name)
        self.written.append(self.folder / name)
        self._count += 1
        self._pending, self._rows, self._since = [], 0, time.monotonic()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()  # also on Ctrl-C: what finished is kept for the next run
