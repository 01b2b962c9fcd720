"""How well a reward separates target from generated images."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_curve


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def mean_sd(values) -> tuple[float, float]:
    """The mean of the seeds' values and their sample sd (0 for one seed)."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def moved_toward(value: float, base: float, target: float) -> float:
    """How far a measure moved from the base's value toward the target's: 0 at the base, 1 at the target."""
    return (value - base) / (target - base)


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half: P(score of a positive > score of a negative)."""
    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_metrics(positive_scores, negative_scores, threshold: float = 0.0, curve: bool = False) -> dict:
    """AUC, and accuracy at `threshold` (logit 0 = probability 0.5), of positives vs negatives."""
    pos, neg = _numpy(positive_scores), _numpy(negative_scores)
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    scores = np.concatenate([pos, neg])
    out = {
        "auc": roc_auc(pos, neg),
        "accuracy": float(((scores > threshold) == labels.astype(bool)).mean()),
        "n_positive": len(pos),
        "n_negative": len(neg),
    }
    if curve:
        fpr, tpr, _ = roc_curve(labels, scores)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return out


def score_summary(scores) -> dict:
    s = _numpy(scores)
    quantiles = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"n": len(s), "mean": float(s.mean()), "std": float(s.std()),
            **{f"p{q}": float(v) for q, v in zip((5, 25, 50, 75, 95), quantiles)}}


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID's formula, any encoder)."""
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) from the eigenvalues of A B (real, >= 0 for covariance matrices): stable when, with
    # fewer samples than dimensions, the covariances are singular and sqrtm is not.
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(eigenvalues).sum())
