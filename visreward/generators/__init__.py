"""Generators: the bundled digits diffusion model (diffusers pipelines come next)."""

from __future__ import annotations

from pathlib import Path

from .base import GeneratedSample, Generator, save_samples
from .diffusers_pipeline import DiffusersGenerator
from .digits import DigitsGenerator, DigitsGeneratorConfig, load_bundled_generator, train_digits_generator


def load_generator(spec: str, device: str | None = None):
    """'digits' (the bundled generator), a digits generator folder, a diffusers pipeline folder or hub id,
    or a fine-tuning run folder (its generator/)."""
    if (Path(spec) / "generator").is_dir():
        spec = str(Path(spec) / "generator")
    if spec == "digits":
        generator = load_bundled_generator()
    elif (Path(spec) / "generator.json").exists():
        generator = DigitsGenerator.from_pretrained(spec)
    else:
        return DiffusersGenerator.from_pretrained(spec, device=device)
    return generator.to(device) if device else generator


__all__ = ["DiffusersGenerator", "DigitsGenerator", "DigitsGeneratorConfig", "GeneratedSample", "Generator",
           "load_bundled_generator", "load_generator", "save_samples", "train_digits_generator"]
