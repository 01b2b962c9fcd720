"""GRPO: online RL of a generator against any reward, with group-relative advantages (Flow-GRPO, DanceGRPO, DDPO).

    visreward grpo --generator digits --reward rm/ --prompts prompts.txt --output gen-grpo/ [--lora]
    accelerate launch --num_processes 8 -m visreward.cli grpo ... --device cuda

Each step draws --prompts-per-step prompts (alike on every process) and samples --group-size images of each with
the stochastic sampler of policy.py, recording every transition's log-probability. The processes split each step's
samples; sample k's noise comes from (seed, step, k) alone, so the samples do not depend on the number of processes.
The rewards of all processes are gathered, and each sample's advantage is its reward against its group's mean, over
the group's std (or the step's, --global-std), clipped to +-adv_clip. Training then recomputes each trained
transition's log-probability under the policy and minimises the PPO-clipped objective, plus beta times the KL to
the reference, ||mean - mean_ref||^2 / 2 std^2. The reward needs no gradient: any judge works, remote ones too.

Logged every step, besides the loss: the reward's mean and std, its within-group std, approximate KL, the clip
fraction, the probability ratio's largest deviation from 1 at the first update of a step (it must be 0: otherwise the
sampler and the trainer compute different things), and ReFL's hacking monitors (monitors.py). When one fires, GRPO
warns and, with --stop-on-hacking (default), keeps the weights of the step before and stops.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import VisrewardError
from ..core.options import GRPOConfig
from ..io.prompts import read_prompts
from .finetune import (
    Training,
    fall_back,
    finish_run,
    first_reason,
    on_every_rank,
    prepare_training,
    save_checkpoint,
    start_run,
    step_seed,
    trainable_weights,
)
from .monitors import HackingMonitor, independent_check_for, limits_of
from .policy import StochasticSampler, Trajectory

RATIO_TOLERANCE = 1e-3  # the first update's ratio may differ from 1 by float rounding, never by more


@dataclass
class Samples:
    """One process's share of a step's samples."""

    trajectory: Trajectory
    images: torch.Tensor      # decoded outputs [n,3,H,W] (clips: [n,T,3,H,W])
    rewards: torch.Tensor     # [n]
    features: torch.Tensor | None  # the reward's encoder features of the images, where it has them
    advantages: torch.Tensor  # [n]
    logs: dict


def group_advantages(rewards: torch.Tensor, group_size: int, global_std: bool, clip: float) -> torch.Tensor:
    """(r - group mean) / (group std, or the std of all rewards), clipped; rewards [N] hold consecutive groups."""
    groups = rewards.float().view(-1, group_size)
    std = rewards.float().std() if global_std else groups.std(dim=1, keepdim=True)
    return ((groups - groups.mean(dim=1, keepdim=True)) / (std + 1e-4)).clamp(-clip, clip).flatten()


def step_prompts(prompts: list[str], config: GRPOConfig, step: int) -> list[str]:
    """The step's prompts, one per group, alike on every process (without repetition while there are enough)."""
    rng = torch.Generator().manual_seed(step_seed(config, step))
    order = torch.cat([torch.randperm(len(prompts), generator=rng)
                       for _ in range(-(-config.prompts_per_step // len(prompts)))])
    return [prompts[i] for i in order[: config.prompts_per_step].tolist()]


def sample_seed(config: GRPOConfig, step: int, index: int) -> int:
    return (step_seed(config, step) * 65_536 + index) * 7 + 3


def _score(reward, images: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(rewards, the reward's encoder features of the images where it has them: the monitors reuse them)."""
    if hasattr(reward, "score_features"):  # GAN-RM: one encoder pass (its fast runtime) serves reward and monitor
        from ..encoders.features import encode_tensors

        features = encode_tensors(reward.encoder, images)
        return reward.score_features(features, prompts), features
    scores = reward.score(images, prompts) if hasattr(reward, "score") else reward(images, prompts)
    return torch.as_tensor(np.asarray(scores, dtype=np.float32) if not torch.is_tensor(scores) else scores).float().cpu(), None


def collect(training: Training, sampler: StochasticSampler, reward, prompts: list[str], config: GRPOConfig,
            step: int, seconds: dict) -> Samples:
    """Sample this process's share of the step's groups, score it, and compute advantages over whole groups."""
    accelerator, denoiser = training.accelerator, training.denoiser
    total = len(prompts) * config.group_size
    share = total // accelerator.num_processes
    indices = range(accelerator.process_index * share, (accelerator.process_index + 1) * share)
    policy = accelerator.unwrap_model(training.module)
    predict = lambda noisy, timesteps, condition: denoiser.predict(policy, noisy, timesteps, condition)  # noqa: E731
    trajectories, images = [], []
    window = _window(sampler, config, step)
    began = time.perf_counter()
    for start in range(0, share, config.sample_batch_size):
        chunk = indices[start : start + config.sample_batch_size]
        generators = [torch.Generator().manual_seed(sample_seed(config, step, k)) for k in chunk]
        noise = torch.stack([torch.randn(denoiser.latent_shape(1)[1:], generator=g) for g in generators])
        with accelerator.autocast():
            trajectory = sampler.rollout(predict, noise.to(accelerator.device), [prompts[k // config.group_size] for k in chunk],
                                         generators, window)
        with torch.no_grad():
            images.append(denoiser.decode(trajectory.latents[:, -1]).float().cpu())
        trajectories.append(trajectory)
    seconds["sampling"] += time.perf_counter() - began
    trajectory = Trajectory(torch.cat([t.latents for t in trajectories]), torch.cat([t.log_probs for t in trajectories]),
                            [p for t in trajectories for p in t.prompts], trajectories[0].stochastic)
    images = torch.cat(images)
    began = time.perf_counter()
    rewards, features = _score(reward, images, trajectory.prompts)
    seconds["reward"] += time.perf_counter() - began
    everyone = accelerator.gather(rewards.to(accelerator.device)).cpu()  # in process order: the global sample order
    advantages = group_advantages(everyone, config.group_size, config.global_std, config.adv_clip)
    group_std = float(everyone.view(-1, config.group_size).std(dim=1).mean())
    return Samples(trajectory, images, rewards, features, advantages[indices.start : indices.stop],
                   {"reward_mean_all": float(everyone.mean()), "reward_group_std": group_std})


def _window(sampler: StochasticSampler, config: GRPOConfig, step: int) -> list[int] | None:
    """The step's window of stochastic steps (--sde-window-size), alike on every process; None: every step."""
    if not config.sde_window_size:
        return None
    start_range = config.sde_window_range or [0, config.sample_steps // 2]
    if len(start_range) != 2:
        raise VisrewardError(f"--sde-window-range {' '.join(map(str, start_range))}: expected START END")
    return sampler.window(config.sde_window_size, start_range, torch.Generator().manual_seed(step_seed(config, step) + 17))


def _trained_steps(trajectory: Trajectory, config: GRPOConfig, rng: torch.Generator) -> list[int]:
    """A window's steps are all trained; without one, --train-timestep-fraction of the stochastic steps."""
    steps = trajectory.stochastic
    if config.sde_window_size:
        return steps
    count = max(1, round(config.train_timestep_fraction * len(steps)))
    return sorted(steps[i] for i in torch.randperm(len(steps), generator=rng)[:count].tolist())


def train_on(training: Training, sampler: StochasticSampler, samples: Samples, config: GRPOConfig, step: int,
             ema=None) -> dict:
    """The PPO-clipped policy update over the samples' trained transitions (the EMA follows each update); returns the
    averaged signals."""
    accelerator, denoiser, module = training.accelerator, training.denoiser, training.module
    device = accelerator.device
    latents, old = samples.trajectory.latents.to(device), samples.trajectory.log_probs.to(device)
    advantages = samples.advantages.to(device)
    policy = lambda noisy, timesteps, condition: denoiser.predict(module, noisy, timesteps, condition)  # noqa: E731
    signals: dict[str, list[float]] = {}
    first_ratio_error = None
    for epoch in range(config.inner_epochs):
        rng = torch.Generator().manual_seed(step_seed(config, step) * 64 + epoch)
        order = torch.randperm(len(advantages), generator=rng)  # alike on every process: each its own samples
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size].to(device)
            prompts = [samples.trajectory.prompts[i] for i in batch.tolist()]
            condition, unconditional = sampler.conditions(prompts)
            # drawn per batch from its own seed: alike on every rank, and the same for any number of ranks
            batch_rng = torch.Generator().manual_seed((step_seed(config, step) * 64 + epoch) * 4096 + start)
            trained = _trained_steps(samples.trajectory, config, batch_rng)
            for n, i in enumerate(trained):
                sync = contextlib.nullcontext() if n == len(trained) - 1 else accelerator.no_sync(module)
                with sync:
                    loss, logs = _transition_loss(training, sampler, policy, latents[batch, i], latents[batch, i + 1],
                                                  old[batch, i], advantages[batch], i, condition, unconditional, config)
                    accelerator.backward(loss / len(trained))
                if first_ratio_error is None:
                    first_ratio_error = logs["ratio_error"]
                for key, value in logs.items():
                    signals.setdefault(key, []).append(value)
            accelerator.clip_grad_norm_(module.parameters(), config.max_grad_norm)
            training.optimizer.step()
            training.optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(_trainable(training))
    return {**{k: float(np.mean(v)) for k, v in signals.items() if k != "ratio_error"},
            "first_ratio_error": first_ratio_error}


def _transition_loss(training: Training, sampler: StochasticSampler, policy, x, x_next, old_log_prob, advantages, i,
                     condition, unconditional, config: GRPOConfig) -> tuple[torch.Tensor, dict]:
    with training.accelerator.autocast():
        log_prob, mean = sampler.log_prob(policy, x, x_next, i, condition, unconditional)
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = torch.clamp(ratio, 1 - config.clip_range, 1 + config.clip_range)
    policy_loss = torch.maximum(-advantages * ratio, -advantages * clipped).mean()
    log_ratio = (log_prob - old_log_prob).detach()
    logs = {"policy_loss": float(policy_loss.detach()), "approx_kl": float(0.5 * (log_ratio**2).mean()),
            "clip_fraction": float(((ratio - 1).abs() > config.clip_range).float().mean()),
            "ratio_error": float((ratio.detach() - 1).abs().max())}
    if config.beta <= 0:
        return policy_loss, logs
    reference_mean = sampler.mean(sampler.prediction(training.reference, x, i, condition, unconditional), x, i)
    kl = ((mean - reference_mean) ** 2).mean(dim=tuple(range(1, mean.ndim))) / (2 * sampler.stds[i] ** 2)
    logs["kl"] = float(kl.mean().detach())
    return policy_loss + config.beta * kl.mean(), logs


def _trainable(training: Training) -> list[torch.nn.Parameter]:
    return [p for p in training.accelerator.unwrap_model(training.module).parameters() if p.requires_grad]


def _ema(training: Training, config: GRPOConfig):
    """diffusers' EMAModel of the trainable weights (--ema-decay), saved in every checkpoint; None without one."""
    if not config.ema_decay:
        return None
    if not 0 < config.ema_decay < 1:
        raise VisrewardError(f"--ema-decay {config.ema_decay}: expected a decay in (0, 1), or 0 for none")
    from diffusers.training_utils import EMAModel

    ema = EMAModel(_trainable(training), decay=config.ema_decay)
    training.accelerator.register_for_checkpointing(ema)
    return ema


def _kept_weights(training: Training, ema) -> dict:
    """What a stopped run falls back to: the trainable weights, or their EMA where there is one (it is what is saved)."""
    module = training.accelerator.unwrap_model(training.module)
    if ema is None:
        return trainable_weights(module)
    names = [name for name, p in module.named_parameters() if p.requires_grad]
    return {name: shadow.detach().to("cpu", copy=True) for name, shadow in zip(names, ema.shadow_params)}


def _check(accelerator, monitor, samples: Samples, logs: dict, config: GRPOConfig, warned: set) -> str | None:
    """Every rank's monitors on its own samples; any rank's alarm stops all (the first rank's reason is kept)."""
    logs.update(monitor.update(samples.rewards, samples.images, samples.trajectory.prompts, samples.features))
    if logs["first_ratio_error"] > RATIO_TOLERANCE and "ratio" not in warned:
        warned.add("ratio")
        warnings.warn(f"GRPO: the probability ratio at the first update is {1 + logs['first_ratio_error']:.6f}, not 1: "
                      "the sampler and the trainer compute different transitions (precision, dropout, batch effects)")
    alarms = "; ".join(monitor.alarms()) or None
    if alarms and "hacking" not in warned:
        warned.add("hacking")
        warnings.warn(f"GRPO: the generator may be hacking the reward ({alarms}); "
                      + ("stopping" if config.stop_on_hacking else "inspect samples, lower --lr or raise --beta"))
    return first_reason(accelerator, alarms) if config.stop_on_hacking else None


@dataclass
class GRPORun:
    """What a GRPO run holds between steps."""
    training: Training
    generator: object
    reward: object
    prompts: list[str]
    sampler: StochasticSampler
    monitor: HackingMonitor
    ema: object  # diffusers' EMAModel, or None


def _check_config(config: GRPOConfig) -> None:
    if config.group_size < 2:
        raise VisrewardError(f"--group-size {config.group_size}: a group needs 2 or more samples to compare")
    if config.noise_level is not None and config.noise_level <= 0:
        raise VisrewardError(f"--noise-level {config.noise_level}: GRPO needs a stochastic sampler (> 0); "
                             "the deterministic one has no transition probabilities to train")


def _set_up(config: GRPOConfig, reward) -> GRPORun:
    """The reward (unless given), the generator prepared for training, the stochastic sampler, the monitors, the EMA."""
    from ..core.distributed import local_device
    from ..generators import load_generator
    from ..rewards.loader import load_rewards

    _check_config(config)
    prompts = read_prompts(config.prompts)
    if reward is None:
        reward = load_rewards(config.reward, device=None if config.device == "cpu" else local_device(config.device),
                              normalise=config.normalise, backend=config.backend)
    generator = load_generator(config.generator)
    training = prepare_training(config, generator, needs_reference=config.beta > 0)
    processes = training.accelerator.num_processes
    if (config.prompts_per_step * config.group_size) % processes:
        raise VisrewardError(f"--prompts-per-step {config.prompts_per_step} x --group-size {config.group_size} samples "
                             f"do not split evenly over {processes} processes")
    flow = training.denoiser.objective.prediction_type == "flow"
    noise_level = config.noise_level if config.noise_level is not None else (0.7 if flow else 1.0)
    sampler = StochasticSampler(training.denoiser, config.sample_steps, noise_level, config.sde, guidance=not config.no_cfg)
    agreement = independent_check_for(generator, config.generator, config.agreement_encoder)
    monitor = HackingMonitor(reward, limits_of(config), agreement=agreement)
    return GRPORun(training, generator, reward, prompts, sampler, monitor, _ema(training, config))


def _step(run: GRPORun, config: GRPOConfig, step: int, seconds: dict, watch) -> tuple[Samples, dict]:
    """Sample the step's groups, score them, train on them; the samples and the step's logs."""
    samples = collect(run.training, run.sampler, run.reward, step_prompts(run.prompts, config, step), config, step,
                      seconds)
    began = time.perf_counter()
    logs = {**samples.logs, **train_on(run.training, run.sampler, samples, config, step, run.ema),
            **(watch(samples.images, samples.trajectory.prompts) if watch else {})}
    seconds["training"] += time.perf_counter() - began
    if not on_every_rank(run.training.accelerator, np.isfinite(logs["policy_loss"])):
        raise VisrewardError(f"the loss became non-finite at step {step}: lower --lr")
    return samples, logs


def run_grpo(config: GRPOConfig, reward=None, watch=None) -> dict:
    """Train config.generator with GRPO against `reward` (any object with score(images, prompts) or a callable; by
    default the one config.reward names). `watch(images, prompts) -> dict` adds the caller's own statistics of each
    step's samples to the logs (the demo's judges). Returns the metrics written to output/metrics.json."""
    from tqdm.auto import tqdm

    run = _set_up(config, reward)
    training, ema = run.training, run.ema
    accelerator = training.accelerator
    start_step, history = start_run(training, config, run.monitor)
    snapshots = deque([(start_step, _kept_weights(training, ema))], maxlen=2)
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc=Path(config.output).name,
               disable=not (config.progress and accelerator.is_main_process))
    stopped, warned, started = None, set(), time.time()
    seconds = {"sampling": 0.0, "reward": 0.0, "training": 0.0}
    for step in bar:
        samples, logs = _step(run, config, step, seconds, watch)
        reason = _check(accelerator, run.monitor, samples, logs, config, warned)
        if reason or (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            row = {"step": step + 1, **logs, "seconds_per_step": (time.time() - started) / (step + 1 - start_step)}
            history.append(row)
            accelerator.log({k: v for k, v in row.items() if k != "step"}, step=step + 1)
            bar.set_postfix({"reward": f"{logs['reward_mean_all']:.3g}", "std": f"{logs['reward_group_std']:.3g}"})
        if reason:
            stopped = fall_back(accelerator, training.module, snapshots, step, reason)
            break
        if (step + 1) % config.log_every == 0:
            snapshots.append((step + 1, _kept_weights(training, ema)))
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save_checkpoint(accelerator, Path(config.output) / "checkpoints", step + 1, history, run.monitor.state_dict())
    if ema is not None and not stopped:
        ema.copy_to(_trainable(training))
    done = max(1, (stopped["step"] if stopped else config.steps) - start_step)
    metrics = {"steps": config.steps, "history": history, "stopped": stopped, "noise_level": run.sampler.noise_level,
               "seconds_per_step": (time.time() - started) / done,
               "seconds_per_step_split": {k: v / done for k, v in seconds.items()}}
    return finish_run(training, run.generator, config, metrics)
