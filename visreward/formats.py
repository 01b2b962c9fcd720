"""Score tables: parquet, one row per image, keyed by a stable id."""

from __future__ import annotations

import os
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path
from .images import ImageRecord

SCORE_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("prompt", pa.string()), ("score", pa.float32())])


def score_table(records: Sequence[ImageRecord], scores: Sequence[float], probs: Sequence[float] | None = None) -> pa.Table:
    columns = {
        "id": [r.id for r in records],
        "path": [r.path for r in records],
        "prompt": [r.prompt for r in records],
        "score": [float(s) for s in scores],
    }
    schema = SCORE_SCHEMA
    if probs is not None:
        columns["prob"] = [float(p) for p in probs]
        schema = schema.append(pa.field("prob", pa.float32()))
    return pa.table(columns, schema=schema)


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike) -> pa.Table:
    from .errors import VisrewardError

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise VisrewardError(f"{path}: cannot read parquet ({str(e).splitlines()[0]})") from None
