"""`visreward score --engine ray`: the local engine's shards, parts and skip reports, run as a Ray Data pipeline.

    the driver lists shards (as the local engine does) and cuts each into chunks of `batch_size` items
    -> flat_map: a .tar or .parquet shard is read into chunks by a CPU task (the driver never holds its bytes)
    -> map: each chunk decoded, resized and cropped in a CPU task (`--ray-cpus-per-decoder`)
    -> map_batches: a pool of reward-model actors (`--ray-actors`, `--ray-gpus-per-actor`, `--ray-cpus-per-actor`)
       encodes and scores each chunk whole, so a chunk is the same encoder batch as in the local engine
    -> the driver writes each shard's parquet part as its last chunk arrives (order is preserved), then merges.

A part is written atomically and only when its shard is complete. A failed task or actor is retried by Ray;
if the job itself dies, the parts already written stay, and rerunning the same command skips them and redoes
only the shards that had no part (at most the shards in flight are scored twice, never written twice).
The feature cache is not used: it is a file on one machine.

    RAY_ADDRESS=auto visreward score --engine ray --model rm/ --output scores.parquet DIR
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        visreward score --engine ray --ray-actors 8 --ray-gpus-per-actor 1 --model rm/ --output out/ DIR
"""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import torch

from ..core.distributed import Placement
from ..core.errors import VisrewardError
from ..core.options import ScoreConfig
from ..io.images import ImageRecord, SkipLog
from ..io.readers import Shard, chunked, iter_shards, read_container
from ..rewards.loader import load_reward_model, reward_kind
from .plan import ScoreRun, finish_run, part_is_done, parts_folder, shard_fingerprint, write_part


def run_ray_score(config: ScoreConfig) -> ScoreRun:
    import ray.data

    kind = reward_kind(config.model)
    if kind != "gan-rm":
        raise VisrewardError(f"--engine ray scores GAN-RM reward models; {kind} rewards run on the local engine")
    # the driver needs only the encoder's preprocessing: eager fp32, no runtime session to build or export
    decoding = _decoding_recipe(load_reward_model(config.model, "cpu", cache_dir=config.cache_dir).encoder)
    parts = parts_folder(config.output)
    parts.mkdir(parents=True, exist_ok=True)
    read_skipped = SkipLog(strict=config.strict)
    chunks, resumed, fingerprints = [], 0, {}
    for shard in iter_shards(config.inputs, read_skipped, config.shard_size, hasattr(decoding, "sampling")):
        fingerprints[shard.name] = shard_fingerprint(config, shard)
        if part_is_done(parts, shard.name, fingerprints[shard.name]):
            resumed += 1
        else:
            chunks.extend(_chunk_rows(shard, config.batch_size))
    run = ScoreRun(0, 0, resumed, SkipLog(strict=config.strict), parts)
    if chunks:
        _connect(config)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # a shard's chunks arrive together, in order
        context.enable_progress_bars = config.progress
        scored = (ray.data.from_items(chunks, override_num_blocks=len(chunks))  # a block per chunk: any actor takes any
                  # Reading a container is I/O: holding no CPU, it never waits behind actors that hold them all, and
                  # as many readers as actors keep pace without a new worker process per shard.
                  .flat_map(_expand_containers, fn_kwargs={"batch_size": config.batch_size}, num_cpus=0,
                            concurrency=config.ray_actors)
                  .map(_decode_chunk, fn_kwargs={"decoding": decoding}, num_cpus=config.ray_cpus_per_decoder)
                  .map_batches(_ChunkScorer, batch_size=1, concurrency=config.ray_actors, num_gpus=config.ray_gpus_per_actor,
                               num_cpus=config.ray_cpus_per_actor, fn_constructor_kwargs=_model_kwargs(config)))
        for shard_name, results in _by_shard(scored.iter_rows()):
            _write_shard(parts, shard_name, results, config, run, read_skipped, fingerprints[shard_name])
    return finish_run(config, parts, Placement(0, 1), run, read_skipped)


def _connect(config: ScoreConfig) -> None:
    """Join the cluster named by --ray-address or $RAY_ADDRESS, else start a local instance bound to 127.0.0.1."""
    import os

    import ray

    if ray.is_initialized():
        return
    address = config.ray_address or os.environ.get("RAY_ADDRESS")
    local = {} if address else {"_node_ip_address": "127.0.0.1"}
    ray.init(address=address, include_dashboard=False, log_to_driver=config.progress, **local)


def _decoding_recipe(encoder) -> SimpleNamespace:
    """What a decoding task needs of the encoder (not its weights): its preprocessing, and a video encoder's sampling."""
    recipe = SimpleNamespace(preprocessing=encoder.preprocessing)
    if hasattr(encoder, "sampling"):
        recipe.sampling = encoder.sampling
    return recipe


def _model_kwargs(config: ScoreConfig) -> dict:
    return {"spec": config.model, "device": "cuda" if config.ray_gpus_per_actor > 0 else "cpu", "backend": config.backend,
            "precision": config.precision, "cache_dir": config.cache_dir}


def _chunk_rows(shard: Shard, batch_size: int) -> list[dict]:
    """A listed shard's chunks (file paths: cheap to hold), or one row naming a container shard."""
    if shard.container is not None:
        return [{"shard": shard.name, "payload": pickle.dumps(("container", shard.container, shard.base))}]
    return [{"shard": shard.name, "payload": pickle.dumps(("items", chunk, []))} for chunk in chunked(shard.open(), batch_size)]


def _expand_containers(row: dict, batch_size: int) -> list[dict]:
    """A container row -> its chunks, read here (at least one row, carrying what the read skipped)."""
    kind, *content = pickle.loads(row["payload"])
    if kind == "items":
        return [row]
    container, base = content
    read_skipped = SkipLog()
    chunks = list(chunked(read_container(container, base, read_skipped), batch_size)) or [[]]
    rows = [{"shard": row["shard"], "payload": pickle.dumps(("items", chunk, []))} for chunk in chunks[:-1]]
    return rows + [{"shard": row["shard"], "payload": pickle.dumps(("items", chunks[-1], read_skipped.entries))}]


def _decode_chunk(row: dict, decoding: SimpleNamespace) -> dict:
    """Decode, resize and crop a chunk: (records kept, uint8 pixels, decode errors, read errors). Errors travel
    to the driver, whose SkipLog reports them (or, with --strict, raises there)."""
    from ..encoders.features import _load_one

    _, items, read_errors = pickle.loads(row["payload"])
    loaded = [_load_one(record, source, decoding, None) for record, source in items]
    errors = [(item.error.source, item.error.reason) for item in loaded if item.error is not None]
    kept = [item for item in loaded if item.error is None]
    pixels = torch.stack([item.pixels for item in kept]).numpy() if kept else None
    return {"shard": row["shard"], "payload": pickle.dumps(([item.record for item in kept], pixels, errors, read_errors))}


class _ChunkScorer:
    """A Ray actor holding one reward model; scores whole chunks (a chunk is one encoder batch)."""

    def __init__(self, spec: str, device: str, backend: str, precision: str, cache_dir: str | None):
        self.model = load_reward_model(spec, device, backend, precision, cache_dir)

    def __call__(self, batch: dict) -> dict:
        payloads = [self._score(payload) for payload in batch["payload"]]
        return {"shard": batch["shard"], "payload": np.array(payloads, dtype=object)}

    def _score(self, payload: bytes) -> bytes:
        records, pixels, errors, read_errors = pickle.loads(payload)
        logits = None
        if records:
            encoder = self.model.encoder
            features = encoder.encode_pixels(encoder.preprocessing.normalise(torch.from_numpy(pixels)))
            prompts = [r.prompt for r in records] if self.model.head.uses_text else None
            logits = self.model.score_features(features, prompts)
        return pickle.dumps((records, logits, errors, read_errors))


def _by_shard(rows: Iterator[dict]) -> Iterator[tuple[str, list[tuple]]]:
    """Consecutive rows of one shard, grouped (the pipeline preserves order)."""
    name, results = None, []
    for row in rows:
        if row["shard"] != name and name is not None:
            yield name, results
            results = []
        name = row["shard"]
        results.append(pickle.loads(row["payload"]))
    if name is not None:
        yield name, results


def _write_shard(parts: Path, name: str, results: list[tuple], config: ScoreConfig, run: ScoreRun,
                 read_skipped: SkipLog, fingerprint: dict) -> None:
    shard_skipped = SkipLog(strict=config.strict)
    kept: list[ImageRecord] = []
    logits = []
    for records, chunk_logits, errors, read_errors in results:
        for source, reason in read_errors:
            read_skipped.skip(source, reason)
        for source, reason in errors:
            shard_skipped.skip(source, reason)
        if records:
            kept.extend(records)
            logits.append(chunk_logits)
    scores = torch.cat(logits) if logits else torch.empty(0)
    write_part(parts, name, kept, scores, torch.sigmoid(scores) if config.prob else None, shard_skipped, fingerprint)
    run.skipped.entries.extend(shard_skipped.entries)
    run.rows += len(kept)
    run.shards_done += 1
