"""What every generator gives: samples that carry their prompt and their own seed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import torch
from PIL import Image

from ..atomic import atomic_dir


@dataclass
class GeneratedSample:
    image: Image.Image
    prompt: str
    seed: int  # generate([prompt], 1, seed=seed) reproduces this image


class Generator(Protocol):
    def generate(self, prompts: Sequence[str], n_per_prompt: int = 1, seed: int = 0) -> list[GeneratedSample]:
        """n_per_prompt samples per prompt; sample k (prompt-major order) uses seed + k."""

    def generate_from_seeds(self, prompts: Sequence[str], seeds: Sequence[int]) -> torch.Tensor:
        """One sample per (prompt, seed), as [B,3,H,W] in [0,1]: any recorded sample, regenerated."""


def sample_seeds(n_prompts: int, n_per_prompt: int, seed: int) -> list[int]:
    return [seed + k for k in range(n_prompts * n_per_prompt)]


def save_samples(samples: Sequence[GeneratedSample], folder: str | os.PathLike) -> Path:
    """Write an imagefolder (PNG files + metadata.jsonl with prompt and seed), atomically."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        rows = []
        for index, sample in enumerate(samples):
            name = f"{index:06d}.png"
            sample.image.save(tmp / name)
            rows.append(json.dumps({"file_name": name, "prompt": sample.prompt, "seed": sample.seed}))
        (tmp / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder
