"""Reward-hacking monitors: per-batch signals that a policy is exploiting its reward, not learning the look.

RewardDance watches the spread of rewards across a batch (it collapses when every sample finds
the same exploit). That alone misses a generator drifting to noise with a steady spread, so
GAN-RM rewards add two signals from their calibration (measured at training time):
- `above_target`: the fraction of samples scoring above the highest held-out target image;
- `off_manifold`: the fraction whose features lie further from the training data than 99% of it;
and, where one applies, an independent check that shares nothing with the reward (for the bundled
digits generator: a digit classifier trained on held-out real digits agreeing with the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .digits_data import parse_digit
from .errors import VisrewardError


@dataclass
class MonitorLimits:
    collapse_ratio: float = 0.2   # spread below this fraction of its start
    above_target: float = 0.5     # more than this fraction above every held-out target score
    off_manifold: float = 0.5     # more than this fraction beyond the training data's 99th percentile
    independent_drop: float = 0.1  # independent agreement this far below its start


def digit_agreement(images: torch.Tensor, prompts: list[str]) -> float | None:
    """The bundled generator's independent check; None where prompts or images are not digits."""
    from .evaluation.generation import digit_accuracy

    if images.shape[-2:] != (8, 8):
        return None
    try:
        [parse_digit(p) for p in prompts]
    except VisrewardError:
        return None
    return digit_accuracy(images, prompts)


@dataclass
class HackingMonitor:
    reward_model: object
    limits: MonitorLimits = field(default_factory=MonitorLimits)
    warmup: int = 5
    smoothing: float = 0.2        # weight of the newest batch in the running (exponential) averages
    start: dict = field(default_factory=dict)
    seen: list = field(default_factory=list)
    running: dict = field(default_factory=dict)

    def update(self, rewards: torch.Tensor, images: torch.Tensor, prompts: list[str],
               features: torch.Tensor | None = None) -> dict:
        """Signals for one batch (rewards [B], the images they scored [B,3,H,W] in [0,1], and the reward's
        encoder features of them when the caller already has them; otherwise they are encoded here)."""
        rewards = rewards.detach().float().cpu()
        logs = {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0}
        calibration = getattr(self.reward_model, "calibration", None) or {}
        if calibration:
            logs["above_target"] = float((rewards > calibration["target_score_max"]).float().mean())
            with torch.no_grad():
                features = self.reward_model.encoder(images.detach()) if features is None else features.detach()
                distance = self.reward_model.feature_distance(features)
            logs["off_manifold"] = float((distance > calibration["feature_distance_p99"]).float().mean())
        agreement = digit_agreement(images.detach().cpu(), prompts)
        if agreement is not None:
            logs["independent_agreement"] = agreement
        if len(self.seen) < self.warmup:
            self.seen.append(logs)
            self.start = {k: sum(row[k] for row in self.seen) / len(self.seen) for k in logs}
        spread = self.start.get("reward_std", 0.0)
        logs["reward_std_ratio"] = logs["reward_std"] / spread if spread > 0 else 1.0
        self.running = {k: v if k not in self.running else (1 - self.smoothing) * self.running[k] + self.smoothing * v
                        for k, v in logs.items()}
        return logs

    def alarms(self) -> list[str]:
        """What the running averages say about hacking, one phrase each (batches are too noisy alone)."""
        logs, found = self.running, []
        if len(self.seen) >= self.warmup and logs["reward_std_ratio"] < self.limits.collapse_ratio:
            found.append(f"reward spread collapsed to {logs['reward_std_ratio']:.2f} of its start")
        if logs.get("above_target", 0.0) > self.limits.above_target:
            found.append(f"{logs['above_target']:.0%} of samples score above every held-out target image")
        if logs.get("off_manifold", 0.0) > self.limits.off_manifold:
            found.append(f"{logs['off_manifold']:.0%} of samples lie off the reward's training data")
        if "independent_agreement" in logs and len(self.seen) >= self.warmup and \
                logs["independent_agreement"] < self.start["independent_agreement"] - self.limits.independent_drop:
            found.append(f"independent check fell to {logs['independent_agreement']:.2f} "
                         f"from {self.start['independent_agreement']:.2f}")
        return found

    def state_dict(self) -> dict:
        return {"start": self.start, "seen": self.seen, "running": self.running}

    def load_state_dict(self, state: dict) -> None:
        self.start, self.seen, self.running = dict(state["start"]), list(state["seen"]), dict(state["running"])
