"""Image -> feature vectors, streamed in batches, with an on-disk cache.

The cache is keyed by (encoder name, hash of the file's bytes): retraining a head,
changing hyperparameters or bootstrapping never re-encodes a file already seen, and a
changed file gets a new key. Reading, hashing, cache look-up and decoding run in worker
threads, one batch ahead of the encoder.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from ..core.errors import VisrewardError
from ..core.paths import default_cache_dir
from ..io.images import ImageInput, ImageLoadError, ImageRecord, SkipLog, decode_image, quantize, read_bytes
from ..io.readers import chunked
from ..io.videos import is_clip, read_clip
from . import ImageEncoder


def content_key(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FeatureCache:
    """SQLite table (encoder cache key, content key) -> float32 vector; safe across threads and processes."""

    def __init__(self, root: str | os.PathLike | None = None):
        root = Path(root) if root is not None else default_cache_dir()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VisrewardError(f"{root}: cannot create the feature cache folder ({e.strerror})") from None
        self.path = root / "features.sqlite"
        self._local = threading.local()
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS features (encoder TEXT, key TEXT, vector BLOB, "
                "PRIMARY KEY (encoder, key)) WITHOUT ROWID"
            )

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=120)
        return db

    def get(self, encoder: str, key: str) -> np.ndarray | None:
        row = self._connection().execute(
            "SELECT vector FROM features WHERE encoder = ? AND key = ?", (encoder, key)
        ).fetchone()
        return np.frombuffer(row[0], dtype=np.float32) if row else None

    def put_many(self, encoder: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        with self._connection() as db:
            db.executemany(
                "INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                ((encoder, key, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in items),
            )

    def __len__(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM features").fetchone()[0]


@dataclass
class _Loaded:
    record: ImageRecord
    key: str | None = None
    features: np.ndarray | None = None
    pixels: torch.Tensor | None = None
    error: ImageLoadError | None = None


def file_key(path: str | os.PathLike) -> str:
    """content_key of a file's bytes, read in chunks (a long video is hashed without being held);
    a folder of frames: of its files' names and bytes, in order."""
    digest = hashlib.blake2b(digest_size=16)
    path = Path(path)
    for file in sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]:
        if path.is_dir():
            digest.update(os.fsencode(file.name))
        try:
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError as e:
            raise ImageLoadError(str(path), e.strerror or str(e)) from None
    return digest.hexdigest()


def _load_clip(record: ImageRecord, source, encoder, cache: FeatureCache | None) -> _Loaded:
    """A clip's sampled frames, resized and cropped for the encoder: uint8 [K,3,S,S] (or its cached features)."""
    preprocess = encoder.preprocessing
    if isinstance(source, torch.Tensor):  # [T,3,H,W] in [0,1]
        frames = encoder.select_frames(source[None])[0]
        return _Loaded(record, pixels=preprocess.resize_crop(quantize(frames)))
    if cache is None:
        key = None
    else:
        key = content_key(source) if isinstance(source, bytes) else file_key(source)
    cached = cache.get(encoder.cache_key, key) if key is not None else None
    if cached is not None and cached.shape[0] == encoder.dim:
        return _Loaded(record, key=key, features=cached)
    frames = read_clip(source, encoder.sampling, record.path or record.id)
    return _Loaded(record, key=key, pixels=preprocess.resize_crop(frames))


def _load_one(record: ImageRecord, source: ImageInput | bytes, encoder: ImageEncoder, cache: FeatureCache | None) -> _Loaded:
    preprocess = encoder.preprocessing
    try:
        if hasattr(encoder, "sampling"):
            return _load_clip(record, source, encoder, cache)
        if isinstance(source, (str, os.PathLike)) and is_clip(source):
            raise ImageLoadError(str(source), "a video; this reward model scores images (train one on videos)")
        if isinstance(source, torch.Tensor):
            return _Loaded(record, pixels=preprocess.resize_crop(quantize(source)[None])[0])
        if isinstance(source, Image.Image):
            return _Loaded(record, pixels=preprocess.pixels(source))
        data = read_bytes(source)
        key = content_key(data) if cache is not None else None
        cached = cache.get(encoder.cache_key, key) if key is not None else None
        if cached is not None and cached.shape[0] == encoder.dim:
            return _Loaded(record, key=key, features=cached)
        image = decode_image(data, record.path or record.id, draft_size=preprocess.input_size)
        return _Loaded(record, key=key, pixels=preprocess.pixels(image))
    except ImageLoadError as e:
        return _Loaded(record, error=e)


def iter_features(
    items: Iterable[tuple[ImageRecord, ImageInput | bytes]],
    encoder: ImageEncoder,
    cache: FeatureCache | None = None,
    skipped: SkipLog | None = None,
    batch_size: int = 32,
    num_workers: int = 4,
    progress: bool = False,
    total: int | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> Iterator[tuple[list[ImageRecord], torch.Tensor]]:
    """Yield (records, features [n,dim]) per batch; unreadable images go to `skipped`.

    `items` is consumed lazily: at most three batches are in flight (one encoding, two
    being read and decoded by `num_workers` threads), so memory does not grow with the input.
    A job that calls this once per shard passes one `pool` for all of them (with a fresh pool
    per shard, peak memory rose at each shard boundary).
    Without a SkipLog an unreadable image raises (an API caller's scores must align with its inputs).
    """
    from tqdm.auto import tqdm

    if total is None and hasattr(items, "__len__"):
        total = len(items)
    bar = tqdm(total=total, desc=f"encoding ({encoder.name})", unit="img", disable=not progress)
    batches = chunked(items, batch_size)
    with ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(ThreadPoolExecutor(max(1, num_workers)))
        pending: deque[list[Future]] = deque()

        def submit_next() -> None:
            batch = next(batches, None)
            if batch is not None:
                pending.append([pool.submit(_load_one, record, source, encoder, cache) for record, source in batch])

        for _ in range(2):
            submit_next()
        while pending:
            loaded = [future.result() for future in pending.popleft()]
            submit_next()
            kept = []
            for item in loaded:
                if item.error is None:
                    kept.append(item)
                elif skipped is None:
                    raise item.error
                else:
                    skipped.skip(item.error.source, item.error.reason)
            misses = [item for item in kept if item.features is None]
            if misses:
                pixels = encoder.preprocessing.normalise(torch.stack([item.pixels for item in misses]))
                encoded = encoder.encode_pixels(pixels).numpy()
                for item, vector in zip(misses, encoded):
                    item.features, item.pixels = vector, None
                if cache is not None:
                    cache.put_many(encoder.cache_key, [(item.key, item.features) for item in misses if item.key])
            bar.update(len(loaded))
            if kept:
                yield [item.record for item in kept], torch.from_numpy(np.stack([item.features for item in kept]))
    bar.close()


def encode_tensors(encoder: ImageEncoder, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Features of a [B,3,H,W] batch in [0,1] (a generator's output), or of [B,T,3,H,W] clips for a video
    encoder, through the same 8-bit path as files."""
    if images.ndim == 5:
        images = encoder.select_frames(images)
    chunks = []
    for chunk in images.split(batch_size):
        pixels = encoder.preprocessing.quantized(quantize(chunk.flatten(0, chunk.ndim - 4)))
        chunks.append(encoder.encode_pixels(pixels.unflatten(0, chunk.shape[:-3])))
    return torch.cat(chunks)


def extract_features(
    items: Iterable[tuple[ImageRecord, ImageInput | bytes]], encoder: ImageEncoder, **kwargs
) -> tuple[list[ImageRecord], torch.Tensor]:
    """All features at once: (records that loaded, features [n,dim])."""
    records: list[ImageRecord] = []
    chunks: list[torch.Tensor] = []
    for batch_records, features in iter_features(items, encoder, **kwargs):
        records.extend(batch_records)
        chunks.append(features)
    return records, torch.cat(chunks) if chunks else torch.empty(0, encoder.dim)
