"""Real handwritten digits shipped inside scikit-learn (1797 images, 8x8): no downloads.

Split once, deterministically: the bundled generator trains on all of `train` (the demo's
target set is a subset of it with a look, as the paper's proxy data is a subset of what a
base model saw), and `evaluation` is held out for judges (digit classifier, held-out target
images for the Frechet distance and the copying check) that no generator or reward saw.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from PIL import Image

from .errors import VisrewardError

PROMPT_TEMPLATE = "a handwritten digit {digit}"
SPLITS = {"train": (0, 1400), "evaluation": (1400, None)}
_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digit_prompt(digit: int) -> str:
    return PROMPT_TEMPLATE.format(digit=digit)


def parse_digit(prompt: str) -> int:
    """'a handwritten digit 7' (or '... seven') -> 7."""
    match = re.search(r"\b([0-9])\b", prompt) or re.search(r"\b(" + "|".join(_WORDS) + r")\b", prompt.lower())
    if not match:
        raise VisrewardError(f"prompt {prompt!r} names no digit (expected e.g. {digit_prompt(7)!r})")
    token = match.group(1)
    return int(token) if token.isdigit() else _WORDS.index(token)


@lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(images))
    return (images[order] / 16.0).reshape(-1, 8, 8).astype(np.float32), labels[order]


def real_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N,8,8] float in [0,1], labels [N]) of one split."""
    if split not in SPLITS:
        raise VisrewardError(f"unknown digits split '{split}' (have: {', '.join(SPLITS)})")
    start, stop = SPLITS[split]
    images, labels = _all_digits()
    return images[start:stop], labels[start:stop]


def digit_image(pixels: np.ndarray) -> Image.Image:
    """[8,8] floats in [0,1] (white ink on black, as in sklearn) -> a grayscale PIL image."""
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), mode="L")


def write_digits_folder(folder, split: str, indices=None):
    """An imagefolder (PNG + metadata.jsonl prompts) of a split's digits, or of `indices` into it."""
    from .generators.base import GeneratedSample, save_samples

    images, labels = real_digits(split)
    indices = range(len(images)) if indices is None else indices
    return save_samples([GeneratedSample(digit_image(images[i]), digit_prompt(int(labels[i])), -1) for i in indices], folder)


def ink(images) -> np.ndarray:
    """The style statistic of the demo: ink mass, the summed intensity of a digit's pixels.

    images: [N,8,8] floats in [0,1] (sklearn's layout) or [N,3,8,8] generated tensors.
    """
    pixels = np.asarray(images, dtype=np.float64)
    if pixels.ndim == 4:
        pixels = pixels.mean(axis=1)
    return pixels.reshape(len(pixels), -1).sum(axis=1)


def bold_indices(split: str, fraction: float) -> np.ndarray:
    """Indices of the digits whose ink mass is in the top `fraction` of their own class (the demo's look)."""
    images, labels = real_digits(split)
    mass = ink(images)
    threshold = {c: np.quantile(mass[labels == c], 1 - fraction) for c in np.unique(labels)}
    return np.array([i for i in range(len(images)) if mass[i] >= threshold[labels[i]]])
