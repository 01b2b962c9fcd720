"""Score tables: parquet, one row per image, keyed by a stable id.

Columns: id, path, prompt, score (and prob when asked for), path_bytes. Text columns are UTF-8;
a file name that is not (a Latin-1 byte, say) is written with \\xNN escapes in id and path,
and its original bytes go to path_bytes (null for every other row), so every file is scored
and its name stays recoverable.
"""

from __future__ import annotations

import os
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.atomic import atomic_path
from .images import ImageRecord, printable, raw_name

SCORE_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("prompt", pa.string()), ("score", pa.float32())])
RAW_PATH = pa.field("path_bytes", pa.binary())


def score_table(records: Sequence[ImageRecord], scores: Sequence[float], probs: Sequence[float] | None = None) -> pa.Table:
    columns = {
        "id": [printable(r.id) for r in records],
        "path": [None if r.path is None else printable(r.path) for r in records],
        "prompt": [None if r.prompt is None else printable(r.prompt) for r in records],
        "score": [float(s) for s in scores],
    }
    schema = SCORE_SCHEMA
    if probs is not None:
        columns["prob"] = [float(p) for p in probs]
        schema = schema.append(pa.field("prob", pa.float32()))
    columns[RAW_PATH.name] = [None if r.path is None else raw_name(r.path) for r in records]
    return pa.table(columns, schema=schema.append(RAW_PATH))


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike) -> pa.Table:
    from ..core.errors import VisrewardError

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise VisrewardError(f"{path}: cannot read parquet ({str(e).splitlines()[0]})") from None
