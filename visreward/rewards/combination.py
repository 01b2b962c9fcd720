"""Several rewards as one: a weighted sum of per-reward normalised scores, with every sub-score kept.

    rm, judge = visreward.load_reward_model("rm/"), visreward.load_reward_model("vlm:judge/")
    reward = visreward.combine({"rm": rm, "judge": judge}, weights={"rm": 1.0, "judge": 0.5}, normalise="zscore")
    scores, info = reward.score_with_info(images, prompts)     # info["rewards"]: each reward's raw scores

Normalisations, per reward, before weighting:
  none    the raw score
  zscore  (score - mean) / std over a running window of that reward's recent scores (this batch included)
  rank    the rank within the batch, scaled to [0, 1] (ties share their mean rank): scale-free
`RunningWindow` also gives the statistics the reward server reports and watches for a collapsing
spread, RewardDance's sign of reward hacking.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import VisrewardError
from ..core.options import NORMALISATIONS
from .spread import spread


class RunningWindow:
    """The last `size` scores of one reward: summary statistics and a spread-collapse check."""

    def __init__(self, size: int = 1024, collapse_ratio: float = 0.2):
        self.values: deque[float] = deque(maxlen=size)
        self.collapse_ratio = collapse_ratio
        self.start_std: float | None = None  # the spread of the first full window
        self.collapsed = False

    def add(self, scores: np.ndarray) -> bool:
        """Take a batch's scores; True when this batch made the spread collapse."""
        self.values.extend(float(s) for s in np.asarray(scores, dtype=np.float64).ravel())
        if self.start_std is None and len(self.values) == self.values.maxlen:
            self.start_std = float(np.std(self.values))
        was_collapsed, self.collapsed = self.collapsed, self.spread_collapsed()
        return self.collapsed and not was_collapsed

    def summary(self) -> dict:
        if not self.values:
            return {"count": 0}
        values = np.fromiter(self.values, dtype=np.float64)
        q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
        return {"count": len(values), "mean": float(values.mean()), "std": float(values.std()),
                "p05": float(q[0]), "p25": float(q[1]), "p50": float(q[2]), "p75": float(q[3]), "p95": float(q[4]),
                "start_std": self.start_std, "spread_collapsed": self.spread_collapsed()}

    def spread_collapsed(self) -> bool:
        """The window's spread fell below collapse_ratio of the first full window's."""
        if self.start_std is None or self.start_std == 0:
            return False
        return float(np.std(self.values)) < self.collapse_ratio * self.start_std


def rank_in_batch(scores: np.ndarray) -> np.ndarray:
    """Ranks in [0, 1] (0 = lowest); tied scores share their mean rank; a single score gets 0.5."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        return np.full(len(scores), 0.5)
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(len(scores), dtype=np.float64)
    for value in np.unique(scores):
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return ranks / (len(scores) - 1)


@dataclass
class RewardCombiner:
    """Weighted sum of normalised sub-scores; keeps a running window per reward."""

    weights: dict[str, float]
    normalise: str = "none"
    window: int = 1024
    collapse_ratio: float = 0.2
    windows: dict[str, RunningWindow] = field(default_factory=dict)

    def __post_init__(self):
        if self.normalise not in NORMALISATIONS:
            raise VisrewardError(f"normalise must be one of {', '.join(NORMALISATIONS)}, not {self.normalise!r}")
        if not self.weights:
            raise VisrewardError("no rewards to combine")
        self.windows = {name: RunningWindow(self.window, self.collapse_ratio) for name in self.weights}

    def observe(self, name: str, scores: np.ndarray) -> None:
        window = self.windows[name]
        if window.add(scores):
            warnings.warn(f"reward {name!r}: its spread collapsed to below {self.collapse_ratio:.0%} of its start "
                          f"(std {np.std(window.values):.4g} vs {window.start_std:.4g}): the policy may be hacking it")

    def normalised(self, name: str, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.normalise == "rank":
            return rank_in_batch(scores)
        if self.normalise == "zscore":
            values = np.fromiter(self.windows[name].values, dtype=np.float64)
            std = values.std() if len(values) > 1 else 0.0
            return (scores - values.mean()) / std if std > 0 else np.zeros_like(scores)
        return scores

    def __call__(self, sub_scores: dict[str, np.ndarray]) -> np.ndarray:
        """The combined score of one batch; each reward's window is updated with it first."""
        unknown = set(sub_scores) - set(self.weights)
        if unknown:
            raise VisrewardError(f"unknown reward(s): {', '.join(sorted(unknown))}")
        for name, scores in sub_scores.items():
            self.observe(name, scores)
        return sum(self.weights[name] * self.normalised(name, scores) for name, scores in sub_scores.items())

    def stats(self) -> dict[str, dict]:
        return {name: window.summary() for name, window in self.windows.items()}


class CombinedReward:
    """Several in-process reward models behind one `score` / `reward_fn`, like a single model."""

    def __init__(self, rewards: dict, weights: dict[str, float] | None = None, normalise: str = "none",
                 window: int = 1024):
        self.rewards = dict(rewards)
        self.combiner = RewardCombiner({name: (weights or {}).get(name, 1.0) for name in self.rewards}, normalise, window)

    def score_with_info(self, images, prompts=None) -> tuple[np.ndarray, dict]:
        sub = {name: np.asarray(model.score(images, prompts), dtype=np.float64) for name, model in self.rewards.items()}
        return self.combiner(sub), {"rewards": sub}

    def score(self, images, prompts=None):
        import torch

        return torch.from_numpy(self.score_with_info(images, prompts)[0]).float()

    def reward_fn(self, images, prompts=None, metadata=None) -> tuple:
        scores, info = self.score_with_info(images, prompts)
        return scores, {**info, **spread(scores)}


def combine(rewards: dict, weights: dict[str, float] | None = None, normalise: str = "none",
            window: int = 1024) -> CombinedReward:
    """Rewards by name (loaded models) -> one reward: weighted sum of normalised scores, sub-scores in info."""
    return CombinedReward(rewards, weights, normalise, window)
