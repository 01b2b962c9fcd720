"""The bundled `digits` generator: the conditional generator trained on scikit-learn's real 8x8 digits.

It trains on first use (about three minutes on two CPU cores) on every digit but the held-out
`evaluation` split, and is cached, so demos and tests have a real generator with no download:

    gen = load_generator("digits")
    samples = gen.generate(["a handwritten digit 7"], n_per_prompt=4, seed=0)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..paths import default_cache_dir
from .conditional import GENERATOR_VERSION, ConditionalGenerator, GeneratorTrainingConfig, train_generator

BUNDLED = GeneratorTrainingConfig(resolution=8, colour="gray", steps=600, width=64)


def bundled_generator_dir(cache_dir: str | os.PathLike | None = None, config: GeneratorTrainingConfig = BUNDLED) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "generators" / f"digits-v{GENERATOR_VERSION}-s{config.steps}-w{config.width}-seed{config.seed}"


def load_bundled_generator(cache_dir: str | os.PathLike | None = None, progress: bool = True) -> ConditionalGenerator:
    """The cached bundled generator, trained on first use."""
    from ..digits_data import write_digits_folder

    directory = bundled_generator_dir(cache_dir)
    if not (directory / "generator.json").exists():
        data = directory.with_name(directory.name + ".data")
        if not (data / "metadata.jsonl").exists():
            write_digits_folder(data, "train")
        train_generator(dataclasses.replace(BUNDLED, data=[str(data)], output=str(directory), progress=progress))
    return ConditionalGenerator.from_pretrained(directory)
