"""The gold preference of the RewardDance miniature: the rater that proxy reward models learn from noisy labels of.

    gold = gold_scores(images, prompts)                        # [B,3,8,8] digits in [0,1] -> [B]
    tau = temperature_for_agreement(gold_a, gold_b, 0.775)    # labels agree with the gold's sign 77.5% of the time
    a_wins = preference_labels(gold_a, gold_b, tau, rng)      # Bradley-Terry: P(A > B) = sigmoid((g(A) - g(B)) / tau)

As in Gao, Schulman and Hilton's study of reward overoptimisation, the gold plays the human rater: a fixed function
of an image and its prompt, built from the demo's independent judges. It is the held-out classifier's margin for
the prompted digit (tanh of half of it: a sure right reading 1, a sure wrong one -1) plus how close the digit's ink
mass is to the target look's, the held-out bold digits' (a Gaussian of the distance in their standard deviations:
1 at their mean). Nothing trains on it or is selected by it except through the labels drawn from it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..io.digits import bold_indices, ink, parse_digit, real_digits


@lru_cache(maxsize=4)
def target_look(fraction: float = 0.25) -> tuple[float, float]:
    """(mean, standard deviation) of the ink mass of the evaluation split's bold digits (top `fraction` per class)."""
    images, _ = real_digits("evaluation")
    mass = ink(images[bold_indices("evaluation", fraction)])
    return float(mass.mean()), float(mass.std())


def reading_margin(images: torch.Tensor, prompts: list[str]) -> np.ndarray:
    """The held-out classifier's one-vs-rest score of the prompted digit minus the best other digit's: > 0 when it
    reads the prompted digit."""
    from ..evaluation.generation import digit_classifier, digit_pixels

    scores = digit_classifier().decision_function(digit_pixels(images).numpy())
    asked = np.array([parse_digit(p) for p in prompts])
    rows = np.arange(len(asked))
    others = scores.copy()
    others[rows, asked] = -np.inf
    return scores[rows, asked] - others.max(axis=1)


def gold_scores(images: torch.Tensor, prompts: list[str], look: float = 0.25) -> np.ndarray:
    """g(image, prompt) for [B,3,8,8] (or [B,1,8,8]) digits in [0,1]: in [-1, 2], higher is preferred."""
    from ..evaluation.generation import digit_pixels

    mean, sd = target_look(look)
    mass = ink(digit_pixels(images).view(-1, 8, 8).numpy())
    return np.tanh(reading_margin(images, prompts) / 2) + np.exp(-0.5 * ((mass - mean) / sd) ** 2)


def expected_agreement(gold_a: np.ndarray, gold_b: np.ndarray, tau: float) -> float:
    """The expected fraction of Bradley-Terry labels at temperature tau that agree with the gold's sign (ties: 0.5)."""
    return float(torch.sigmoid(torch.from_numpy(np.abs(gold_a - gold_b) / tau)).mean())


def temperature_for_agreement(gold_a: np.ndarray, gold_b: np.ndarray, agreement: float = 0.775) -> float:
    """The tau at which labels of these pairs agree with the gold's sign `agreement` of the time (bisection on log tau:
    agreement falls as tau grows)."""
    if not 0.5 < agreement < 1:
        raise ValueError(f"agreement {agreement} must be between 0.5 and 1")
    low, high = -12.0, 12.0
    for _ in range(60):
        middle = (low + high) / 2
        if expected_agreement(gold_a, gold_b, float(np.exp(middle))) > agreement:
            low = middle
        else:
            high = middle
    return float(np.exp((low + high) / 2))


def preference_labels(gold_a: np.ndarray, gold_b: np.ndarray, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Whether A is preferred to B, per pair, drawn with P(A > B) = sigmoid((g(A) - g(B)) / tau)."""
    p_a = torch.sigmoid(torch.from_numpy((gold_a - gold_b) / tau)).numpy()
    return rng.random(len(p_a)) < p_a
