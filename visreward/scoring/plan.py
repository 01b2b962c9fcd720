"""The shard plan both engines share: one parquet part per shard, fingerprinted with what it was scored from, so a
killed run resumes with nothing lost or duplicated; a single process merges its parts at the end."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch

from ..core.atomic import atomic_path
from ..core.errors import VisrewardError
from ..core.options import ScoreConfig
from ..io.formats import score_table, write_table
from ..io.images import ImageRecord, SkipLog
from ..io.readers import Shard

PART_GLOB = "part-*.parquet"
FINGERPRINT_KEY = "visreward_fingerprint"  # in each part's schema metadata: what it was scored from


def parts_folder(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".parts") if output.suffix == ".parquet" else output


def merge_parts(parts: Path, output: Path) -> int:
    """Concatenate the parts in shard order into one parquet file, streaming; returns the row count."""
    files = sorted(parts.glob(PART_GLOB))
    if not files:
        raise VisrewardError(f"{parts}: no score parts ({PART_GLOB}) to merge")
    rows = 0
    with atomic_path(output) as tmp:
        schema = pq.read_schema(files[0]).remove_metadata()  # each part's fingerprint stays with the part
        with pq.ParquetWriter(tmp, schema) as writer:
            for file in files:
                table = pq.read_table(file).replace_schema_metadata(None)
                writer.write_table(table)
                rows += table.num_rows
    skipped_logs = sorted(parts.glob("*.skipped.txt"))
    if skipped_logs:
        with atomic_path(f"{output}.skipped.txt") as tmp:
            tmp.write_text("".join(log.read_text() for log in skipped_logs))
    return rows


@dataclass
class ScoreRun:
    rows: int
    shards_done: int
    shards_resumed: int
    skipped: SkipLog
    output: Path


def part_file(parts: Path, shard_name: str) -> Path:
    return parts / f"part-{shard_name}.parquet"


def shard_fingerprint(config: ScoreConfig, shard: Shard) -> dict:
    """What a shard's part is scored from: the model, the settings that shape a part, and the shard's items (their
    ids; for a tar or parquet shard, its size and modification time, so resuming never reads it)."""
    if shard.container is not None:
        status = shard.container.stat()
        items = f"{shard.container}:{status.st_size}:{status.st_mtime_ns}"
    else:
        items = "\n".join(record.id for record, _ in shard.open())
    model_config = Path(config.model) / "config.json"
    return {"model": config.model, "model_config": hashlib.sha256(model_config.read_bytes()).hexdigest()
            if model_config.is_file() else None, "shard_size": config.shard_size, "prob": config.prob,
            "items": hashlib.sha256(items.encode("utf-8", "surrogateescape")).hexdigest()}  # ids keep undecodable bytes


def part_is_done(parts: Path, shard_name: str, fingerprint: dict) -> bool:
    """Whether the shard's part is written, from this very shard and model; a part scored from anything else is
    refused (a rerun with another --shard-size, changed inputs or another model would lose or repeat rows)."""
    part = part_file(parts, shard_name)
    if not part.exists():
        return False
    recorded = (pq.read_schema(part).metadata or {}).get(FINGERPRINT_KEY.encode())
    saved = json.loads(recorded) if recorded else {}
    differs = [key for key in fingerprint if saved.get(key) != fingerprint[key]]
    if differs:
        raise VisrewardError(f"{part}: scored from other {', '.join(differs)} than this run's; delete {parts}/ to "
                             "score again, or write to another --output")
    return True


def write_part(parts: Path, name: str, kept: list[ImageRecord], scores: torch.Tensor, probs: torch.Tensor | None,
               shard_skipped: SkipLog, fingerprint: dict) -> None:
    """One shard's scores and what it skipped; the part is written last, with what it was scored from in its schema's
    metadata: an existing part means a complete shard."""
    if len(shard_skipped):
        shard_skipped.write(parts / f"part-{name}.skipped.txt")
    table = score_table(kept, scores.tolist(), probs.tolist() if probs is not None else None)
    write_table(table.replace_schema_metadata({FINGERPRINT_KEY: json.dumps(fingerprint)}), part_file(parts, name))


def finish_run(config: ScoreConfig, parts: Path, placement, run: ScoreRun, read_skipped: SkipLog) -> ScoreRun:
    """Report what the readers skipped; a single process writing FILE.parquet merges its parts into it."""
    if len(read_skipped):
        read_skipped.write(parts / f"read-rank{placement.rank}.skipped.txt")
        run.skipped.entries.extend(read_skipped.entries)
    if Path(config.output).suffix == ".parquet" and placement.world_size == 1:
        run.rows = merge_parts(parts, Path(config.output))
        shutil.rmtree(parts)
        run.output = Path(config.output)
    return run
