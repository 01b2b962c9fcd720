"""ReFL: fine-tune a generator by back-propagating a reward through its last denoising step and decoder.

    visreward refl --generator digits --reward rm/ --prompts prompts.txt --output gen-refl/ [--lora]

Each step samples latents from noise without gradient down to a random one of the last
`--last-steps` sampler steps, predicts x0 there with gradient, decodes it (the VAE decoder
for latent models) and maximises the reward of the decoded images (or clips, for a video
pipeline and a video reward; `--frames-with-grad K` back-propagates through K random frames). Hacking monitors (see
monitors.py) are logged every step: the reward's spread across the batch (RewardDance's
signal), for GAN-RM rewards the fractions of samples above every held-out target score and off
the reward's training data, and for digit prompts an independent classifier's agreement. When
one fires, ReFL warns and, with --stop-on-hacking (default), stops and saves the generator as it
was up to two log intervals before (the monitors smooth over batches), with the reason in metrics.json.

Rewards: a GAN-RM folder (its encoder's differentiable path) or vlm:PATH_OR_ID (the judge's
pointwise P(yes), with the processor's resize/normalise/patchify redone differentiably).
"""

from __future__ import annotations

import warnings

import torch

from ..core.errors import VisrewardError
from ..core.options import ReFLConfig
from ..io.prompts import read_prompts
from .finetune import TrainingImages, finetune


def draw_prompts(data: TrainingImages, batch_size: int, rng: torch.Generator) -> dict:
    index = torch.randint(0, len(data), (batch_size,), generator=rng)
    return {"prompts": [data.prompts[i] for i in index.tolist()]}


def make_refl_loss(reward_model, config: ReFLConfig):
    from .monitors import HackingMonitor, limits_of, rewards_and_features

    monitor = HackingMonitor(reward_model, limits_of(config))

    def refl_loss(denoiser, module, reference, batch: dict, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        prompts = batch["prompts"]
        device = next(module.parameters()).device
        every_rank = torch.Generator().manual_seed(batch["shared_seed"])
        stop = config.num_inference_steps - 1 - int(torch.randint(0, config.last_steps, (1,), generator=every_rank))
        noise = torch.randn(denoiser.latent_shape(len(prompts)), generator=rng).to(device)
        x0 = denoiser.sample_x0(module, noise, prompts, config.num_inference_steps, stop)
        images = denoiser.decode(x0, config.frames_with_grad, rng) if x0.ndim == 5 else denoiser.decode(x0)
        rewards, features = rewards_and_features(reward_model, images, prompts)
        logs = monitor.update(rewards, images, prompts, features)
        alarms = monitor.alarms()
        if alarms and refl_loss.stop_reason is None:
            refl_loss.stop_reason = "; ".join(alarms)
            warnings.warn(f"ReFL: the generator may be hacking the reward ({refl_loss.stop_reason}); "
                          + ("stopping" if config.stop_on_hacking else "inspect samples, lower --lr or stop earlier"))
        return -rewards.mean(), logs

    refl_loss.stop_reason = None
    refl_loss.stops = config.stop_on_hacking
    refl_loss.monitor = monitor
    return refl_loss


def run_refl(config: ReFLConfig) -> dict:
    from ..core.distributed import local_device
    from ..generators import load_generator
    from ..rewards.loader import load_reward_model
    from .monitors import independent_check_for

    if not 1 <= config.last_steps <= config.num_inference_steps:
        raise VisrewardError(f"--last-steps {config.last_steps} is more than --num-inference-steps "
                             f"{config.num_inference_steps} (or below 1): the gradient step must be one of the sampler's")
    reward_model = load_reward_model(config.reward, device=None if config.device == "cpu" else local_device(config.device))
    if hasattr(reward_model, "check_differentiable"):  # VLM judges: tiling processors are refused here, not mid-run
        reward_model.check_differentiable()
    reward_model.requires_grad_(False)
    prompts = read_prompts(config.prompts)
    generator = load_generator(config.generator)
    data = TrainingImages(torch.empty(0), prompts)
    loss = make_refl_loss(reward_model, config)
    loss.monitor.agreement = independent_check_for(generator, config.generator, config.agreement_encoder)
    return finetune(config, generator, data, loss, needs_reference=False, draw=draw_prompts)
