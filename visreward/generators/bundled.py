"""The bundled generators: the conditional generator trained on scikit-learn's real 8x8 digits.

    `digits`:         8x8 digits; prompts "a handwritten digit 7"
    `moving-digits`:  8-frame 16x16 clips of those digits moving right, left, down or up, each training
                      clip at its own speed; prompts "a digit 7 moving left"

Each trains on first use (a few minutes on two CPU cores) on the `train` split only (the `evaluation`
split is held out for judges) and is cached, so demos and tests have a real generator with no download:

    gen = load_generator("digits")
    samples = gen.generate(["a handwritten digit 7"], n_per_prompt=4, seed=0)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from ..core.paths import default_cache_dir
from .conditional import GENERATOR_VERSION, ConditionalGenerator, GeneratorTrainingConfig, train_generator


def _write_digits(folder: Path) -> None:
    from ..io.digits import write_digits_folder

    write_digits_folder(folder, "train")


def _write_moving_digits(folder: Path) -> None:
    from ..io.digits import moving_digits, write_clips_folder

    write_clips_folder(folder, "train", moving_digits("train"))


# name -> (training recipe, writer of its training folder)
BUNDLED: dict[str, tuple[GeneratorTrainingConfig, Callable[[Path], None]]] = {
    # width 32, 1000 steps, 10 DDIM steps: against width 64, 600 steps, 25 DDIM steps (the recipe until issue 27), digit
    # accuracy 0.950 vs 0.922 and Frechet distance to held-out targets 0.533 vs 0.539 (320 samples), trained in 5 instead
    # of 8 minutes and sampled 7.6x faster on a 2-core AVX2 CPU
    "digits": (GeneratorTrainingConfig(resolution=8, colour="gray", steps=1000, width=32, inference_steps=10), _write_digits),
    "moving-digits": (GeneratorTrainingConfig(resolution=16, colour="gray", steps=800, batch_size=64, width=64, frames=8,
                                              inference_steps=20, prediction_type="v_prediction", mixed_precision="auto"),
                      _write_moving_digits),
}


def bundled_generator_dir(cache_dir: str | os.PathLike | None = None, name: str = "digits") -> Path:
    config = BUNDLED[name][0]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "generators" / f"{name}-v{GENERATOR_VERSION}-s{config.steps}-w{config.width}-seed{config.seed}"


def load_bundled_generator(cache_dir: str | os.PathLike | None = None, progress: bool = True,
                           name: str = "digits") -> ConditionalGenerator:
    """The cached bundled generator `name`, trained on first use."""
    config, write_data = BUNDLED[name]
    directory = bundled_generator_dir(cache_dir, name)
    if not (directory / "generator.json").exists():
        data = directory.with_name(directory.name + ".data")
        if not (data / "metadata.jsonl").exists():
            write_data(data)
        train_generator(dataclasses.replace(config, data=[str(data)], output=str(directory), progress=progress))
    return ConditionalGenerator.from_pretrained(directory)


def makes_digits(generator) -> bool:
    """Whether `generator` draws the bundled digits' kind of sample: one 8x8 image per digit prompt."""
    from ..core.errors import VisrewardError
    from ..io.digits import parse_digit

    prompts = getattr(generator, "prompts", None)
    if not prompts or getattr(generator, "frames", None) or getattr(generator, "resolution", None) != (8, 8):
        return False
    try:
        for prompt in prompts:
            parse_digit(prompt)
    except VisrewardError:
        return False
    return True


def digit_check(images, prompts: list[str]) -> float:
    """The digits' independent check: the fraction of [B,3,8,8] samples that a classifier of held-out real digits
    reads as the digit their prompt asks for."""
    from ..evaluation.generation import digit_accuracy

    return digit_accuracy(images.detach().float().cpu(), prompts)
