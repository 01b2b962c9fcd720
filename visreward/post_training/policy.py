"""GRPO's policy: a generator's sampler as a chain of Gaussian transitions, each with an exact log-probability.

Flow matching (SD3, FLUX, Wan, LTX-Video): Flow-GRPO's SDE step. With t = sigma, dt = sigma_next - sigma < 0
and noise level a, sigma_t = a * sqrt(t / (1 - t)) (at t = 1 the schedule's second sigma stands in for t below the
root, as Flow-GRPO does), mean = x (1 + sigma_t^2 dt / 2t) + v (1 + sigma_t^2 (1 - t) / 2t) dt and
std = sigma_t sqrt(-dt). `cps` is Coefficients-Preserving Sampling (arXiv 2509.05952): std = sigma_next sin(a pi/2),
mean = x0 (1 - sigma_next) + x1 sqrt(sigma_next^2 - std^2) with x0 = x - t v and x1 = x + (1 - t) v.

DDPM family (SD 1.x/2.x, SDXL, AnimateDiff, CogVideoX, the bundled generators): DDPO's step, DDIM with eta > 0:
std = eta sqrt(variance(t, t_prev)), mean = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - std^2) eps, x0 as the
scheduler's own step computes it (its clipping), eps from the prediction as DDIM computes it. A scheduler whose step takes no eta (PNDM, Euler,
DPM-Solver) is replaced by a DDIM scheduler from its config, as DDPO does.

At noise level 0 both are the deterministic sampler (Euler for flow, DDIM): `rollout` then reproduces the pipeline
sampling with that scheduler. A rollout may make only a window of its steps stochastic (Flow-GRPO-Fast, MixGRPO):
the others then take the deterministic step. Log-probabilities are computed in fp32 and averaged over the non-batch dimensions.
A step whose std is 0 (DDIM's last step to abar = 1, CPS's last step) is deterministic and never trained.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..core.errors import VisrewardError
from ..core.options import SDE_KINDS
from ..generators.denoisers import Denoiser

Predict = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]  # (noisy, timesteps, condition) -> prediction


@dataclass
class Trajectory:
    latents: torch.Tensor    # [B, S+1, ...]: the initial noise, then every step's sample; the last is the output
    log_probs: torch.Tensor  # [B, S]: log-probability of each transition under the sampling policy (0: deterministic)
    prompts: list[str]
    stochastic: list[int]    # the steps sampled stochastically: the only ones that can be trained


def gaussian_log_prob(sample: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log N(sample; mean, std^2), per element in fp32, averaged over all but the batch dimension."""
    sample, mean = sample.float(), mean.float()
    per_element = -((sample - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return per_element.mean(dim=tuple(range(1, sample.ndim)))


class StochasticSampler:
    """The sampler of `denoiser` with `steps` stochastic steps at `noise_level` (flow: a, DDIM: eta)."""

    def __init__(self, denoiser: Denoiser, steps: int, noise_level: float, sde: str = "sde", guidance: bool = True):
        if sde not in SDE_KINDS:
            raise VisrewardError(f"--sde {sde!r}: expected one of {', '.join(SDE_KINDS)}")
        if noise_level < 0:
            raise VisrewardError(f"--noise-level {noise_level}: must be >= 0")
        self.denoiser, self.steps, self.noise_level, self.sde = denoiser, steps, noise_level, sde
        self.flow = denoiser.objective.prediction_type == "flow"
        self.scheduler = self._scheduler(steps)
        self.timesteps = self.scheduler.timesteps
        if len(self.timesteps) != steps:
            raise VisrewardError(f"{type(self.scheduler).__name__} set {len(self.timesteps)} timesteps for {steps} steps")
        self.guidance_scale = denoiser.guidance_scale if guidance else 1.0
        self.stds = [self._std(i) for i in range(steps)]
        self.stochastic_steps = [i for i, std in enumerate(self.stds) if std > 0]

    def _scheduler(self, steps: int):
        scheduler = self.denoiser.sampling_scheduler(steps)
        if self.flow or "eta" in inspect.signature(scheduler.step).parameters:
            return scheduler
        from diffusers import DDIMScheduler

        ddim = DDIMScheduler.from_config(scheduler.config)
        ddim.set_timesteps(steps)
        return ddim

    # --- the transition's coefficients ----------------------------------------------------------------------------

    def _sigmas(self, i: int) -> tuple[float, float]:
        sigmas = self.scheduler.sigmas
        return float(sigmas[i]), float(sigmas[i + 1])

    def _alphas(self, i: int) -> tuple[float, float]:
        scheduler = self.scheduler
        t = int(self.timesteps[i])
        previous = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        now = float(scheduler.alphas_cumprod[t])
        before = float(scheduler.alphas_cumprod[previous]) if previous >= 0 else float(scheduler.final_alpha_cumprod)
        return now, before

    def _std(self, i: int) -> float:
        if self.noise_level == 0:
            return 0.0
        if self.flow:
            sigma, sigma_next = self._sigmas(i)
            if self.sde == "cps":
                return sigma_next * math.sin(self.noise_level * math.pi / 2)
            return self._sde_sigma(sigma) * math.sqrt(sigma - sigma_next)
        now, before = self._alphas(i)
        variance = (1 - before) / (1 - now) * (1 - now / before)
        return self.noise_level * math.sqrt(max(variance, 0.0))

    def _sde_sigma(self, sigma: float) -> float:
        below = float(self.scheduler.sigmas[1]) if sigma == 1 else sigma
        return self.noise_level * math.sqrt(sigma / (1 - below))

    def mean(self, prediction: torch.Tensor, x: torch.Tensor, i: int, deterministic: bool = False) -> torch.Tensor:
        """The transition's mean from x at step i given the (guided) model prediction, in fp32; `deterministic`:
        the noiseless step's, whatever the noise level."""
        prediction, x = prediction.float(), x.float()
        if self.flow:
            return self._flow_mean(prediction, x, i, deterministic)
        now, before = self._alphas(i)
        kind = self.scheduler.config.get("prediction_type", "epsilon")
        if kind == "epsilon":
            eps = prediction
        elif kind == "v_prediction":
            eps = math.sqrt(now) * prediction + math.sqrt(1 - now) * x
        else:
            raise VisrewardError(f"GRPO: prediction type {kind!r} is not supported by the DDIM step")
        # x0 as the scheduler computes it: DDIM clips it where its config says, CogVideoX's DDIM never does
        x0 = self.scheduler.step(prediction, self.timesteps[i], x).pred_original_sample
        std = 0.0 if deterministic else self.stds[i]
        return math.sqrt(before) * x0 + math.sqrt(max(1 - before - std**2, 0.0)) * eps

    def _flow_mean(self, velocity: torch.Tensor, x: torch.Tensor, i: int, deterministic: bool) -> torch.Tensor:
        sigma, sigma_next = self._sigmas(i)
        dt = sigma_next - sigma
        if deterministic or self.noise_level == 0:
            return x + dt * velocity  # Euler, as FlowMatchEulerDiscreteScheduler steps
        if self.sde == "cps":
            std = self.stds[i]
            x0, x1 = x - sigma * velocity, x + (1 - sigma) * velocity
            return x0 * (1 - sigma_next) + x1 * math.sqrt(max(sigma_next**2 - std**2, 0.0))
        level = self._sde_sigma(sigma) ** 2
        return x * (1 + level * dt / (2 * sigma)) + velocity * (1 + level * (1 - sigma) / (2 * sigma)) * dt

    # --- predictions, rollouts and log-probabilities -----------------------------------------------------------------

    def prediction(self, predict: Predict, x: torch.Tensor, i: int, condition: Any, unconditional: Any) -> torch.Tensor:
        """The model's prediction at step i as the pipeline guides it; the unconditional branch carries no gradient."""
        timesteps = self.timesteps[i].to(x.device).repeat(x.shape[0])
        scale = getattr(self.scheduler, "scale_model_input", None)  # flow matching: none
        inputs = x if scale is None else scale(x, self.timesteps[i])
        conditional = predict(inputs, timesteps, condition)
        if self.guidance_scale <= 1 or unconditional is None:
            return conditional
        with torch.no_grad():
            plain = predict(inputs, timesteps, unconditional)
        return plain + self.guidance_scale * (conditional - plain)

    def conditions(self, prompts: Sequence[str]) -> tuple[Any, Any]:
        unconditional = self.denoiser.unconditional(len(prompts)) if self.guidance_scale > 1 else None
        return self.denoiser.condition(prompts), unconditional

    def window(self, size: int, start_range: Sequence[int], rng: torch.Generator) -> list[int]:
        """`size` consecutive steps starting in [start_range[0], start_range[1] - size], drawn with `rng` (Flow-GRPO-Fast's
        sde_window_size and sde_window_range); the stochastic ones among them."""
        low, high = start_range
        if not (size >= 1 and 0 <= low and low + size <= high <= self.steps):
            raise VisrewardError(f"--sde-window-range {low} {high}: a window of {size} steps must fit in it, "
                                 f"within the {self.steps} sample steps")
        start = low + int(torch.randint(high - size - low + 1, (1,), generator=rng))
        steps = [i for i in range(start, start + size) if i in self.stochastic_steps]
        if not steps:
            raise VisrewardError(f"--sde-window-range {low} {high}: steps {start}..{start + size - 1} are all deterministic")
        return steps

    @torch.no_grad()
    def rollout(self, predict: Predict, noise: torch.Tensor, prompts: Sequence[str],
                generators: Sequence[torch.Generator], window: Sequence[int] | None = None) -> Trajectory:
        """Sample from `noise` with one noise generator per sample (the samples do not depend on the batch they
        were drawn in), recording every step's sample and log-probability. Only the steps in `window` (default:
        all) are stochastic; the others take the deterministic step."""
        condition, unconditional = self.conditions(prompts)
        stochastic = [i for i in self.stochastic_steps if window is None or i in window]
        x = noise.float() * getattr(self.scheduler, "init_noise_sigma", 1.0)
        latents, log_probs = [x], []
        for i in range(self.steps):
            mean = self.mean(self.prediction(predict, x, i, condition, unconditional), x, i, i not in stochastic)
            std = self.stds[i]
            if i not in stochastic:
                x = mean
                log_probs.append(torch.zeros(len(prompts), device=noise.device))
            else:
                eps = torch.stack([torch.randn(mean.shape[1:], generator=g) for g in generators]).to(mean.device)
                x = mean + std * eps
                log_probs.append(gaussian_log_prob(x, mean, std))
            latents.append(x)
        return Trajectory(torch.stack(latents, dim=1), torch.stack(log_probs, dim=1), list(prompts), stochastic)

    def log_prob(self, predict: Predict, x: torch.Tensor, x_next: torch.Tensor, i: int, condition: Any,
                 unconditional: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probability of x -> x_next at step i, the transition's mean), differentiably in the policy."""
        mean = self.mean(self.prediction(predict, x, i, condition, unconditional), x, i)
        return gaussian_log_prob(x_next, mean, self.stds[i]), mean
