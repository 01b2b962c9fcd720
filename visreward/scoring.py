"""`visreward score`: images in, parquet scores out (reader -> encoder -> head -> writer), at any scale.

Inputs are cut into shards (see readers.py). Each process takes `shards[rank::world_size]`
(rank and world size from torchrun, accelerate or SLURM) and writes one parquet file per
shard, atomically, into a parts folder; shards already written are skipped, so a killed
run resumes with nothing lost or duplicated. Memory stays flat: one shard's names and a
few batches of pixels are all that is held.

    visreward score --model rm/ --output scores.parquet DIR          # one process: parts merged at the end
    torchrun --nproc_per_node 8 -m visreward.cli score --model rm/ --output scores/ --device cuda DIR
    visreward merge-scores scores/ --output scores.parquet           # after a multi-process run
    visreward score --engine ray --model rm/ --output scores.parquet DIR   # a Ray Data pipeline (ray_scoring.py)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow.parquet as pq
import torch

from .atomic import atomic_path
from .discriminative import DiscriminativeRewardModel
from .distributed import local_device, placement_from_env
from .errors import VisrewardError
from .features import FeatureCache, iter_features
from .formats import score_table, write_table
from .images import ImageRecord, SkipLog
from .options import MergeConfig, ScoreConfig  # noqa: F401 - MergeConfig re-exported with merge_parts
from .readers import Item, Shard, iter_shards
from .rewards import load_reward_model, reward_kind

PART_GLOB = "part-*.parquet"
FINGERPRINT_KEY = "visreward_fingerprint"  # in each part's schema metadata: what it was scored from


def iter_scores(model: DiscriminativeRewardModel, items: Iterable[Item], cache: FeatureCache | None,
                skipped: SkipLog, batch_size: int = 64, num_workers: int = 4, progress: bool = False,
                pool: ThreadPoolExecutor | None = None) -> Iterator[tuple[list[ImageRecord], torch.Tensor]]:
    """(records, logits) per batch; unreadable images are reported to `skipped`."""
    for batch, features in iter_features(items, model.encoder, cache=cache, skipped=skipped, batch_size=batch_size,
                                         num_workers=num_workers, progress=progress, pool=pool):
        prompts = [r.prompt for r in batch] if model.head.uses_text else None
        yield batch, model.score_features(features, prompts)


def iter_judge_scores(judge, items: Iterable[Item], skipped: SkipLog, batch_size: int = 8,
                      progress: bool = False) -> Iterator[tuple[list[ImageRecord], torch.Tensor]]:
    """(records, scores) per batch for a reward that scores decoded images (a judge's P(yes), a standard reward);
    unreadable images and videos go to `skipped`."""
    from tqdm.auto import tqdm

    from .images import ImageLoadError, decode_image, read_bytes
    from .readers import chunked
    from .videos import is_clip, read_clip

    bar = tqdm(desc="judging", unit="img", disable=not progress)
    for chunk in chunked(items, batch_size):
        kept, images = [], []
        for record, source in chunk:
            try:
                name = record.path or record.id
                clip = isinstance(source, str) and is_clip(source)
                if clip and not hasattr(judge, "sampling"):
                    raise ImageLoadError(name, "a video; this reward scores images")
                images.append(read_clip(source, judge.sampling, name) if clip else decode_image(read_bytes(source), name))
                kept.append(record)
            except ImageLoadError as e:
                skipped.skip(e.source, e.reason)
        bar.update(len(chunk))
        if kept:
            yield kept, judge.score(images, [r.prompt for r in kept], batch_size=batch_size)
    bar.close()


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


def run_score(config: ScoreConfig) -> ScoreRun:
    if config.engine == "ray":
        from .ray_scoring import run_ray_score

        return run_ray_score(config)
    placement = placement_from_env(rank=config.rank, world_size=config.world_size)
    device = local_device(config.device, placement)
    if config.prob and reward_kind(config.model) not in ("gan-rm", "vlm", "vlm-api"):
        raise VisrewardError(f"--prob: {reward_kind(config.model)} scores are not probabilities")
    model = load_reward_model(config.model, device, config.backend, config.precision, config.cache_dir)
    generative = not hasattr(model, "score_features")  # judges and standard rewards score decoded images
    cache = None if config.no_cache or generative else FeatureCache(config.cache_dir)
    parts = parts_folder(config.output)
    parts.mkdir(parents=True, exist_ok=True)
    skipped = SkipLog(strict=config.strict)  # everything skipped this run, for the summary
    read_skipped = SkipLog(strict=config.strict)  # what the readers skip: non-images, broken containers
    rows = done = resumed = 0
    with ThreadPoolExecutor(max(1, config.num_workers)) as decoders:  # one pool for every shard of the run
        clips = hasattr(getattr(model, "encoder", None), "sampling")  # a video reward: frame folders are clips
        for shard in iter_shards(config.inputs, read_skipped, config.shard_size, clips):
            if not placement.owns(shard.index):
                continue
            fingerprint = shard_fingerprint(config, shard)
            if part_is_done(parts, shard.name, fingerprint):
                resumed += 1
                continue
            shard_skipped = SkipLog(strict=config.strict)
            kept: list[ImageRecord] = []
            logits: list[torch.Tensor] = []
            batches = (iter_judge_scores(model, shard.open(), shard_skipped, config.batch_size, config.progress) if generative
                       else iter_scores(model, shard.open(), cache, shard_skipped, config.batch_size, config.num_workers,
                                        config.progress, pool=decoders))
            for batch, scores in batches:
                kept.extend(batch)
                logits.append(scores)
            scores = torch.cat(logits) if logits else torch.empty(0)
            probs = (scores if generative else torch.sigmoid(scores)) if config.prob else None
            write_part(parts, shard.name, kept, scores, probs, shard_skipped, fingerprint)
            skipped.entries.extend(shard_skipped.entries)
            rows += len(kept)
            done += 1
    return finish_run(config, parts, placement, ScoreRun(rows, done, resumed, skipped, parts), read_skipped)


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


