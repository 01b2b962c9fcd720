"""A fixed probe set for the trainers that do not sample while they train (SFT, Diffusion-DPO).

Their losses see only the training images, so they cannot see the policy forgetting what a prompt asks. Every
`--probe-every` steps the policy samples the same prompts from the same noise, and the hacking monitors
(monitors.py) read the samples: the generator's independent check (the digit classifier, or the prompt agreement
of a train-generator folder), and with `--reward` the reward's spread, above-target and off-manifold fractions. The
first probe, before any update, is the baseline; an alarm the starting generator already raises is reported once
and not held against the run.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch

from ..core.options import HackingOptions, ProbeOptions
from .monitors import HackingMonitor, independent_check_for, limits_of, rewards_and_features


class ProbeSet:
    def __init__(self, prompts: list[str], options: HackingOptions | ProbeOptions, reward_model, agreement, seed: int):
        distinct = sorted(set(prompts))
        self.prompts = [distinct[i % len(distinct)] for i in range(options.probe_samples)]
        self.every, self.steps, self.seed = options.probe_every, options.probe_steps, seed
        self.reward_model = reward_model
        limits = dataclasses.replace(limits_of(options), independent_drop=options.probe_drop)
        self.monitor = HackingMonitor(reward_model, limits, warmup=1, smoothing=1.0, agreement=agreement)
        self.excused: set[str] = set()  # alarms the starting generator already raised
        self.warned = False  # a run that does not stop on hacking warns once

    def due(self, done: int) -> bool:
        """Whether a probe is due after `done` optimizer steps (the baseline at 0 included)."""
        return done % self.every == 0

    def check(self, accelerator, denoiser, module) -> tuple[dict, str | None]:
        """Sample the probe set with the current weights and read it; returns (logs, the alarms' reason or None).
        The first call is the baseline."""
        baseline = not self.monitor.seen
        images = self._sample(accelerator, denoiser, accelerator.unwrap_model(module))
        rewards, features = self._rewards(images)
        logs = self.monitor.update(rewards, images, self.prompts, features)
        alarms = self.monitor.alarms_by_signal()
        if baseline and alarms:
            self.excused = set(alarms)
            warnings.warn("probe set: the starting generator already raises " + "; ".join(alarms.values())
                          + " (not held against this run)")
        reason = "; ".join(f"probe set: {text}" for signal, text in alarms.items() if signal not in self.excused)
        return {f"probe_{k}": v for k, v in logs.items()}, reason or None

    def _sample(self, accelerator, denoiser, model) -> torch.Tensor:
        device = next(model.parameters()).device
        noise = torch.randn(denoiser.latent_shape(len(self.prompts)), generator=torch.Generator().manual_seed(self.seed))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), accelerator.autocast():
                x0 = denoiser.sample_x0(model, noise.to(device), self.prompts, self.steps, self.steps - 1)
                return denoiser.decode(x0).float().clamp(0, 1)
        finally:
            model.train(was_training)

    def _rewards(self, images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.reward_model is None:
            return None, None
        with torch.no_grad():
            return rewards_and_features(self.reward_model, images, self.prompts)

    def state_dict(self) -> dict:
        return {"monitor": self.monitor.state_dict(), "excused": sorted(self.excused)}

    def load_state_dict(self, state: dict) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.excused = set(state["excused"])


def probe_set_for(config: ProbeOptions, generator, prompts: list[str]) -> ProbeSet | None:
    """The probe set of a run on `generator` (config.generator names it), or None where there is nothing to watch
    (probing off, or neither a reward nor an independent check)."""
    if config.probe_every <= 0 or config.probe_samples <= 0:
        return None
    agreement = independent_check_for(generator, config.generator, config.agreement_encoder)
    reward_model = None
    if config.reward:
        from ..core.distributed import local_device
        from ..rewards.loader import load_reward_model

        reward_model = load_reward_model(config.reward, device=None if config.device == "cpu" else local_device(config.device))
        reward_model.requires_grad_(False)
    if agreement is None and reward_model is None:
        return None
    return ProbeSet(prompts, config, reward_model, agreement, seed=config.seed + 7_777_777)
