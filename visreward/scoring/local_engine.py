"""The local engine: this process's shards, a thread pool decoding beside the model (torchrun, accelerate or SLURM
give each process its rank)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import torch

from ..core.distributed import local_device, placement_from_env
from ..core.errors import VisrewardError
from ..core.options import ScoreConfig
from ..encoders.features import FeatureCache, iter_features
from ..io.images import ImageRecord, SkipLog
from ..io.readers import Item, iter_shards
from ..rewards.discriminative import DiscriminativeRewardModel
from ..rewards.loader import load_reward_model, reward_kind
from .plan import ScoreRun, finish_run, part_is_done, parts_folder, shard_fingerprint, write_part


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

    from ..io.images import ImageLoadError, decode_image, read_bytes
    from ..io.readers import chunked
    from ..io.videos import is_clip, read_clip

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


def run_local_score(config: ScoreConfig) -> ScoreRun:
    """Score this process's shards (`shards[rank::world_size]`) with threads decoding beside the model."""
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


