"""What every generator gives: samples that carry their prompt and their own seed."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from ..core.errors import VisrewardError
from ..io.images import tensor_to_pil
from ..io.samples import GeneratedSample


class Generator:
    """A text-to-image generator whose every sample carries its own seed.

    Subclasses implement `generate_from_seeds` and `to_pil`; sample k of a call (prompt-major
    order) uses seed + k, so `generate([prompt], 1, seed)` reproduces it.
    """

    batch_size: int  # samples per forward pass when the caller does not say
    images: dict[str, str] = {}  # image-to-video: each prompt's starting image (none for other generators)

    def condition_on(self, images: dict[str, str]) -> "Generator":
        """Image-to-video generators take each prompt's starting image; others take none."""
        if images:
            raise VisrewardError(f"{type(self).__name__} is not an image-to-video generator: its prompts take no image")
        return self

    def generate_from_seeds(self, prompts: Sequence[str], seeds: Sequence[int], batch_size: int | None = None) -> torch.Tensor:
        """One sample per (prompt, seed), as [B,3,H,W] in [0,1]: any recorded sample, regenerated."""
        raise NotImplementedError

    def to_pil(self, image: torch.Tensor) -> Image.Image | list[Image.Image]:
        """One generated [3,H,W] tensor as the image `generate` returns (a [T,3,H,W] clip: its frames)."""
        if image.ndim == 4:
            return [tensor_to_pil(frame) for frame in image]
        return tensor_to_pil(image)

    def generate_tensors(self, prompts: Sequence[str], n_per_prompt: int = 1, seed: int = 0,
                         batch_size: int | None = None) -> tuple[torch.Tensor, list[str], list[int]]:
        """([B,3,H,W] in [0,1], prompts, seeds) in prompt-major order."""
        expanded = [p for p in prompts for _ in range(n_per_prompt)]
        seeds = sample_seeds(len(prompts), n_per_prompt, seed)
        return self.generate_from_seeds(expanded, seeds, batch_size), expanded, seeds

    def generate(self, prompts: Sequence[str], n_per_prompt: int = 1, seed: int = 0) -> list[GeneratedSample]:
        """n_per_prompt samples per prompt, as PIL images (or a video's frames) with their prompt and seed."""
        images, expanded, seeds = self.generate_tensors(prompts, n_per_prompt, seed)
        fps = getattr(self, "fps", None)
        return [GeneratedSample(self.to_pil(image), prompt, s, fps, self.images.get(prompt))
                for image, prompt, s in zip(images, expanded, seeds)]


def sample_seeds(n_prompts: int, n_per_prompt: int, seed: int) -> list[int]:
    return [seed + k for k in range(n_prompts * n_per_prompt)]
