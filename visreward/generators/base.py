"""What every generator gives: samples that carry their prompt and their own seed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..atomic import atomic_dir


@dataclass
class GeneratedSample:
    image: Image.Image
    prompt: str
    seed: int  # generate([prompt], 1, seed=seed) reproduces this image


class Generator:
    """A text-to-image generator whose every sample carries its own seed.

    Subclasses implement `generate_from_seeds` and `to_pil`; sample k of a call (prompt-major
    order) uses seed + k, so `generate([prompt], 1, seed)` reproduces it.
    """

    batch_size: int  # samples per forward pass when the caller does not say

    def generate_from_seeds(self, prompts: Sequence[str], seeds: Sequence[int], batch_size: int | None = None) -> torch.Tensor:
        """One sample per (prompt, seed), as [B,3,H,W] in [0,1]: any recorded sample, regenerated."""
        raise NotImplementedError

    def to_pil(self, image: torch.Tensor) -> Image.Image:
        """One generated [3,H,W] tensor as the image `generate` returns."""
        raise NotImplementedError

    def generate_tensors(self, prompts: Sequence[str], n_per_prompt: int = 1, seed: int = 0,
                         batch_size: int | None = None) -> tuple[torch.Tensor, list[str], list[int]]:
        """([B,3,H,W] in [0,1], prompts, seeds) in prompt-major order."""
        expanded = [p for p in prompts for _ in range(n_per_prompt)]
        seeds = sample_seeds(len(prompts), n_per_prompt, seed)
        return self.generate_from_seeds(expanded, seeds, batch_size), expanded, seeds

    def generate(self, prompts: Sequence[str], n_per_prompt: int = 1, seed: int = 0) -> list[GeneratedSample]:
        """n_per_prompt samples per prompt, as PIL images with their prompt and seed."""
        images, expanded, seeds = self.generate_tensors(prompts, n_per_prompt, seed)
        return [GeneratedSample(self.to_pil(image), prompt, s) for image, prompt, s in zip(images, expanded, seeds)]


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
