import numpy as np
import pytest
import torch

from visreward.evaluation.generation import digit_accuracy, within_prompt_diversity
from visreward.evaluation.metrics import binary_metrics, frechet_distance, roc_auc
from visreward.io.digits import digit_prompt, real_digits


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    # N(0, I) vs N(m, 4I): |m|^2 + tr(I + 4I - 2*2I) = |m|^2 + 3
    b = rng.normal(size=(20000, 3)) * 2 + np.array([1.0, 0.0, 2.0])
    assert frechet_distance(a, b) == pytest.approx(5.0 + 3.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(frechet_distance(rng.normal(size=(10, 50)), rng.normal(size=(30, 50))))  # singular covariances


def test_within_prompt_diversity_ignores_other_prompts():
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [100.0, 0.0], [100.0, 0.0]])
    assert within_prompt_diversity(features, ["a", "a", "b", "b"]) == pytest.approx((5.0 + 0.0) / 2)


def test_digit_classifier_reads_real_held_out_digits():
    images, labels = real_digits("train")
    pixels = torch.from_numpy(images).unsqueeze(1).expand(-1, 3, -1, -1)
    assert digit_accuracy(pixels, [digit_prompt(int(d)) for d in labels]) > 0.95
    assert digit_accuracy(pixels, [digit_prompt((int(d) + 1) % 10) for d in labels]) < 0.05


def test_auc_counts_ties_half_and_accuracy_uses_the_threshold():
    assert roc_auc(np.array([1.0, 2.0]), np.array([0.0, 2.0])) == pytest.approx(2.5 / 4)  # (1>0)+(2>0)+tie/2
    metrics = binary_metrics([1.0, -1.0], [-2.0, 0.5], curve=True)
    assert metrics["accuracy"] == 0.5 and metrics["roc"]["tpr"][-1] == 1.0
