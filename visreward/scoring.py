"""`visreward score`: images in, a parquet score table out (reader -> encoder -> head -> writer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from .config import option
from .discriminative import DiscriminativeRewardModel
from .features import FeatureCache, iter_features, record_items
from .formats import score_table, write_table
from .images import ImageRecord, SkipLog, find_images


@dataclass
class ScoreConfig:
    inputs: list[str] = option([], "image folders (recursive, metadata.jsonl prompts) or files", positional=True)
    model: str = option("rm", "reward model folder")
    output: str = option("scores.parquet", "parquet file written (atomically): id, path, prompt, score")
    prob: bool = option(False, "also write the probability column (sigmoid of the logit)")
    batch_size: int = option(32, "images per encoder forward pass")
    num_workers: int = option(4, "threads reading and decoding images")
    device: str = option("cpu", "torch device")
    cache_dir: str | None = option(None, "feature cache folder (default: $VISREWARD_CACHE or ~/.cache/visreward)")
    no_cache: bool = option(False, "do not read or write the feature cache")
    strict: bool = option(False, "fail on the first unreadable image instead of skipping it")
    progress: bool = option(True, "show a progress bar")


def iter_scores(model: DiscriminativeRewardModel, records: list[ImageRecord], cache: FeatureCache | None,
                skipped: SkipLog, batch_size: int = 32, num_workers: int = 4,
                progress: bool = False) -> Iterator[tuple[list[ImageRecord], torch.Tensor]]:
    """(records, logits) per batch; unreadable images are reported to `skipped`."""
    for batch, features in iter_features(record_items(records), model.encoder, cache=cache, skipped=skipped,
                                         batch_size=batch_size, num_workers=num_workers, progress=progress):
        prompts = [r.prompt for r in batch] if model.head.uses_text else None
        yield batch, model.score_features(features, prompts)


def run_score(config: ScoreConfig) -> tuple[int, SkipLog]:
    """Score everything and write the table; returns (rows written, skipped files)."""
    model = DiscriminativeRewardModel.from_pretrained(config.model, device=config.device)
    skipped = SkipLog(strict=config.strict)
    records = find_images(config.inputs, skipped)
    cache = None if config.no_cache else FeatureCache(config.cache_dir)
    kept: list[ImageRecord] = []
    logits: list[torch.Tensor] = []
    for batch, scores in iter_scores(model, records, cache, skipped, config.batch_size, config.num_workers, config.progress):
        kept.extend(batch)
        logits.append(scores)
    scores = torch.cat(logits) if logits else torch.empty(0)
    write_table(score_table(kept, scores.tolist(), torch.sigmoid(scores).tolist() if config.prob else None), config.output)
    if len(skipped):
        skipped.write(f"{config.output}.skipped.txt")
    return len(kept), skipped
