"""Real handwritten digits shipped inside scikit-learn (1797 images, 8x8): no downloads.

Split once, deterministically, into disjoint parts so that no model is judged on images
it trained on: the bundled generator trains on `generator`, the reward model's target
set comes from `reward`, and held-out evaluation (classifier, Frechet distance) uses
`evaluation`.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from PIL import Image

from .errors import VisrewardError

PROMPT_TEMPLATE = "a handwritten digit {digit}"
SPLITS = {"generator": (0, 900), "reward": (900, 1400), "evaluation": (1400, None)}
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
