"""Diffusion-DPO (Wallace et al., 2023): prefer x_w over x_l relative to a frozen reference denoiser.

    loss = -log sigmoid( -beta/2 * [ (|e_w - e_theta(x_w,t)|^2 - |e_l - e_theta(x_l,t)|^2)
                                   - (|e_w - e_ref(x_w,t)|^2  - |e_l - e_ref(x_l,t)|^2) ] )

with the same noise and timestep for both images of a pair, and the error measured against
each prediction type's own target (epsilon, v, or flow velocity).

    visreward dpo --generator digits --pairs pairs/ --output gen-dpo/ [--lora --beta 5000]

beta: 5000 is the paper's value for Stable Diffusion latents (4x64x64). On the bundled 8x8
digits generator (full fine-tuning, lr 1e-5, 100 steps of 32 pairs), a clear synthetic
preference (the brighter image of each pair) moved unseen samples' brightness from 0.313 to
0.360 with beta 5000 and to 0.339 with beta 1000; lr 1e-4 over-optimised within 30 steps
(chosen-image loss rising with the rejected one). The demo uses beta 5000, lr 1e-5.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
import torch.nn.functional as F

from ..core.errors import VisrewardError
from ..core.options import DPOConfig
from ..io.pairs import read_pairs
from .finetune import TrainingImages, decode_for_training, finetune
from .monitors import PreferenceLimits, PreferenceMonitor
from .probe_set import probe_set_for


def dpo_loss_terms(model_error: torch.Tensor, reference_error: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """Errors are per example, chosen half first then rejected half; returns (loss, logs)."""
    model_w, model_l = model_error.chunk(2)
    ref_w, ref_l = reference_error.chunk(2)
    inside = -0.5 * beta * ((model_w - model_l) - (ref_w - ref_l))
    loss = -F.logsigmoid(inside).mean()
    inside, model_w, model_l = inside.detach(), model_w.detach(), model_l.detach()
    return loss, {
        "implicit_accuracy": (inside > 0).float().mean().item(),
        "reward_margin": inside.mean().item(),
        "model_loss_chosen": model_w.mean().item(), "model_loss_rejected": model_l.mean().item(),
        "reference_loss": reference_error.mean().item(), "reference_loss_chosen": ref_w.mean().item(),
    }


def load_pairs(source: str, size: tuple[int, int], frames: int | None = None) -> TrainingImages:
    pairs = read_pairs(source)
    if not pairs:
        raise VisrewardError(f"{source}: no preference pairs")
    names = [f"{source}#{i}" for i in range(len(pairs))]
    chosen = decode_for_training([p.chosen for p in pairs], names, size, frames)
    rejected = decode_for_training([p.rejected for p in pairs], names, size, frames)
    return TrainingImages(chosen, [p.prompt for p in pairs], extra={"rejected": rejected})


def draw_pairs(data: TrainingImages, batch_size: int, rng: torch.Generator) -> dict:
    index = torch.randint(0, len(data), (batch_size,), generator=rng)
    images = torch.cat([data.images[index], data.extra["rejected"][index]]).float() / 255
    return {"images": images, "prompts": [data.prompts[i] for i in index.tolist()]}


def make_dpo_loss(beta: float, limits: PreferenceLimits | None = None, stop_on_hacking: bool = True,
                  sft_weight: float = 0.0):
    monitor = PreferenceMonitor(limits or PreferenceLimits())

    def dpo_loss(denoiser, module, reference, batch: dict, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        device = next(module.parameters()).device
        x0 = denoiser.encode_images(batch["images"].to(device))
        half = x0.shape[0] // 2
        # the same noise and timestep for the chosen and the rejected image of each pair
        noise = torch.randn(x0[:half].shape, generator=rng).to(x0).repeat(2, *([1] * (x0.ndim - 1)))
        timesteps = torch.randint(0, denoiser.objective.num_train_timesteps, (half,), generator=rng).to(device).repeat(2)
        noisy = denoiser.objective.noise(x0, noise, timesteps)
        condition = denoiser.condition(batch["prompts"] * 2)
        dims = tuple(range(1, x0.ndim))
        prediction = denoiser.predict(module, noisy.noisy, noisy.timesteps, condition)
        model_error = (prediction.float() - noisy.target.float()).pow(2).mean(dim=dims)
        reference_error = (reference(noisy.noisy, noisy.timesteps, condition).float() - noisy.target.float()).pow(2).mean(dim=dims)
        loss, logs = dpo_loss_terms(model_error, reference_error, beta)
        if sft_weight:
            loss = loss + sft_weight * model_error[:half].mean()
        logs = monitor.update({"loss": loss.item(), **logs})
        logs.pop("loss")
        alarms = monitor.alarms()
        if alarms and dpo_loss.stop_reason is None:
            dpo_loss.stop_reason = "; ".join(alarms)
            warnings.warn(f"DPO: {dpo_loss.stop_reason}; " + ("stopping" if stop_on_hacking else
                                                               "lower --lr, raise --beta or stop earlier"))
        return loss, logs

    dpo_loss.stop_reason = None
    dpo_loss.stops = stop_on_hacking
    dpo_loss.monitor = monitor
    return dpo_loss


def within_epochs(config: DPOConfig, pairs: int) -> DPOConfig:
    """`config` with fewer steps where its steps would pass over the pairs more than config.max_epochs times (every
    process draws its own batch of pairs each step)."""
    from accelerate import PartialState

    if not math.isfinite(config.max_epochs):
        return config
    state = PartialState(cpu=config.device == "cpu")
    per_step = config.batch_size * config.gradient_accumulation * state.num_processes
    steps = max(1, math.ceil(config.max_epochs * pairs / per_step))
    if steps >= config.steps:
        return config
    if state.is_main_process:
        print(f"DPO: {pairs} pairs; --max-epochs {config.max_epochs:g} allows {steps} of the {config.steps} steps asked")
    return dataclasses.replace(config, steps=steps)


def run_dpo(config: DPOConfig) -> dict:
    from ..generators import load_generator

    generator = load_generator(config.generator)
    data = load_pairs(config.pairs, generator.resolution, getattr(generator, "training_frames", None))
    config = within_epochs(config, len(data))
    limits = PreferenceLimits(config.chosen_error_ratio, config.saturated_loss)
    loss = make_dpo_loss(config.beta, limits, config.stop_on_hacking, config.sft_weight)
    return finetune(config, generator, data, loss, needs_reference=True, draw=draw_pairs,
                    probe=probe_set_for(config, generator, data.prompts))
