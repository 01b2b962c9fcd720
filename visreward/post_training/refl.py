"""ReFL: fine-tune a generator by back-propagating a reward through its last denoising step and decoder.

    visreward refl --generator digits --reward rm/ --prompts prompts.txt --output gen-refl/ [--lora]

Each step samples latents from noise without gradient down to a random one of the last
`--last-steps` sampler steps, predicts x0 there with gradient, decodes it (the VAE decoder
for latent models) and maximises the reward of the decoded images. The reward's mean and its
spread (std) across each batch are logged; a spread that collapses to a fraction of its
starting value is the reward-hacking signal RewardDance watches for, and is warned about.

Rewards: a GAN-RM folder (its encoder's differentiable path) or vlm:PATH_OR_ID (the judge's
pointwise P(yes), with the processor's resize/normalise/patchify redone differentiably).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..config import option
from ..prompts import read_prompts
from .finetune import FineTuneConfig, TrainingImages, finetune


@dataclass
class ReFLConfig(FineTuneConfig):
    reward: str = option("rm", "reward model: a GAN-RM folder or vlm:PATH_OR_ID")
    prompts: list[str] = option([], "prompts, or one .txt file with a prompt per line")
    num_inference_steps: int = option(20, "sampler steps from noise to image")
    last_steps: int = option(5, "the gradient step is drawn from the last this-many sampler steps")
    collapse_ratio: float = option(0.2, "warn when the batch reward std falls below this fraction of its start")


def draw_prompts(data: TrainingImages, batch_size: int, rng: torch.Generator) -> dict:
    index = torch.randint(0, len(data), (batch_size,), generator=rng)
    return {"prompts": [data.prompts[i] for i in index.tolist()]}


def make_refl_loss(reward_model, config: ReFLConfig):
    baseline: list[float] = []
    warned = []

    def refl_loss(denoiser, module, reference, batch: dict, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        prompts = batch["prompts"]
        device = next(module.parameters()).device
        objective = denoiser.objective
        condition = denoiser.condition(prompts)
        schedule = torch.linspace(objective.num_train_timesteps - 1, 0, config.num_inference_steps).round().long()
        stop = config.num_inference_steps - 1 - int(torch.randint(0, config.last_steps, (1,), generator=rng))
        x = torch.randn(denoiser.latent_shape(len(prompts)), generator=rng).to(device)
        at = lambda i: schedule[i].repeat(len(prompts)).to(device)  # noqa: E731
        with torch.no_grad():
            for i in range(stop):
                x0 = objective.predict_x0(x, denoiser.predict(module, x, at(i), condition), at(i))
                x = objective.step(x, x0, at(i), at(i + 1))
        x0 = objective.predict_x0(x, denoiser.predict(module, x, at(stop), condition), at(stop))
        rewards = reward_model(denoiser.decode(x0), prompts)
        spread = rewards.detach().std().item() if len(rewards) > 1 else 0.0
        if len(baseline) < 5:
            baseline.append(spread)
        start = sum(baseline) / len(baseline)
        if start > 0 and spread < config.collapse_ratio * start and not warned:
            warned.append(True)
            warnings.warn(f"ReFL: reward spread collapsed to {spread:.3g} (from {start:.3g}): the generator may be "
                          "hacking the reward; inspect samples, lower --lr or stop earlier")
        return -rewards.mean(), {"reward_mean": rewards.detach().mean().item(), "reward_std": spread,
                                 "reward_std_ratio": spread / start if start > 0 else 1.0}

    return refl_loss


def run_refl(config: ReFLConfig) -> dict:
    from ..generators import load_generator
    from ..rewards import load_reward_model

    reward_model = load_reward_model(config.reward, device=None if config.device == "cpu" else config.device)
    reward_model.requires_grad_(False)
    prompts = read_prompts(config.prompts)
    generator = load_generator(config.generator)
    data = TrainingImages(torch.empty(0), prompts)
    return finetune(config, generator, data, make_refl_loss(reward_model, config), needs_reference=False, draw=draw_prompts)
