"""Generated samples on disk: an imagefolder of PNGs (or mp4 clips) with each sample's prompt and seed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..core.atomic import atomic_dir
from .images import quantize, tensor_to_pil
from .videos import write_video


@dataclass
class GeneratedSample:
    image: Image.Image | list[Image.Image]  # a video generator's sample is its frames
    prompt: str
    seed: int  # generate([prompt], 1, seed=seed) reproduces this sample
    fps: float | None = None  # a video's frame rate, for the file it is written to
    condition: str | None = None  # an image-to-video sample's starting image (its path)


def write_sample(sample: torch.Tensor | Image.Image | list[Image.Image], stem: Path, fps: float | None = None) -> Path:
    """A generated image as `stem`.png, or a clip ([T,3,H,W] in [0,1], or PIL frames) as `stem`.mp4 (H.264)."""
    if isinstance(sample, torch.Tensor) and sample.ndim == 4:
        return write_video(stem.with_suffix(".mp4"), quantize(sample), fps or 8.0)
    if isinstance(sample, list):
        return write_video(stem.with_suffix(".mp4"), np.stack([np.asarray(frame.convert("RGB")) for frame in sample]), fps or 8.0)
    image = tensor_to_pil(sample) if isinstance(sample, torch.Tensor) else sample
    image.save(stem.with_suffix(".png"))
    return stem.with_suffix(".png")


def save_samples(samples: Sequence[GeneratedSample], folder: str | os.PathLike) -> Path:
    """Write an imagefolder (PNG files, or mp4 for videos, + metadata.jsonl with prompt and seed, a video's
    frame count and an image-to-video sample's starting image), atomically."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        rows = []
        for index, sample in enumerate(samples):
            written = write_sample(sample.image, tmp / f"{index:06d}", sample.fps)
            row = {"file_name": written.name, "prompt": sample.prompt, "seed": sample.seed}
            if isinstance(sample.image, list):
                row["frames"] = len(sample.image)
            if sample.condition is not None:
                row["image"] = sample.condition
            rows.append(json.dumps(row))
        (tmp / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder
