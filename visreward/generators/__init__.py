"""Generators: the bundled digits diffusion model (diffusers pipelines come next)."""

from .base import GeneratedSample, Generator, save_samples
from .digits import DigitsGenerator, DigitsGeneratorConfig, load_bundled_generator, train_digits_generator

__all__ = ["DigitsGenerator", "DigitsGeneratorConfig", "GeneratedSample", "Generator",
           "load_bundled_generator", "save_samples", "train_digits_generator"]
