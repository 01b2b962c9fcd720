"""Generators: a small conditional diffusion model for any imagefolder (and the bundled digits one), and
diffusers text-to-image and text-to-video pipelines."""

from __future__ import annotations

from pathlib import Path

from ..io.samples import GeneratedSample, save_samples
from .base import Generator
from .bundled import BUNDLED, load_bundled_generator
from .conditional import ConditionalGenerator, GeneratorTrainingConfig, train_generator
from .diffusers_pipeline import DiffusersGenerator


def load_generator(spec: str, device: str | None = None):
    """'digits' (the bundled generator), a `train-generator` folder, a diffusers pipeline folder or hub id,
    or a fine-tuning run folder (its generator/)."""
    if (Path(spec) / "generator").is_dir():
        spec = str(Path(spec) / "generator")
    if spec in BUNDLED:
        generator = load_bundled_generator(name=spec)
    elif (Path(spec) / "generator.json").exists():
        generator = ConditionalGenerator.from_pretrained(spec)
    else:
        return DiffusersGenerator.from_pretrained(spec, device=device)
    return generator.to(device) if device else generator


__all__ = ["ConditionalGenerator", "DiffusersGenerator", "GeneratedSample", "Generator", "GeneratorTrainingConfig",
           "load_bundled_generator", "load_generator", "save_samples", "train_generator"]
