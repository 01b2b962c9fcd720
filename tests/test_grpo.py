"""GRPO: the stochastic sampler's transitions and log-probabilities, and the trainer on the bundled kind of generator
and tiny pipelines built from configs."""

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny_pipelines import (
    TINY_VIDEO_PIPELINES,
    save_tiny_flux,
    save_tiny_sd3,
    save_tiny_sdxl,
    save_tiny_stable_diffusion,
)

from visreward.io.digits import digit_prompt
from visreward.post_training import GRPOConfig, run_grpo
from visreward.post_training import grpo as grpo_module
from visreward.post_training.grpo import group_advantages
from visreward.post_training.policy import StochasticSampler, gaussian_log_prob

DIGITS = [digit_prompt(d) for d in range(10)]


def brightness(images, prompts):
    """A synthetic reward: mean pixel value."""
    return images.float().flatten(1).mean(dim=1)


def _schedule_holder(scheduler, prediction_type: str):
    """Just enough of a denoiser for the sampler's coefficients: a real scheduler and a prediction type."""
    return SimpleNamespace(objective=SimpleNamespace(prediction_type=prediction_type), guidance_scale=1.0,
                           sampling_scheduler=lambda steps: scheduler)


# --- the math, with literal numbers -------------------------------------------------------------------------------

def test_the_gaussian_log_probability_is_the_density_written_out():
    sample, mean = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 2.5]])
    # each element: -(0.5^2) / (2 * 0.5^2) - log 0.5 - log sqrt(2 pi) = -0.5 + 0.693147 - 0.918939
    assert gaussian_log_prob(sample, mean, 0.5).item() == pytest.approx(-0.725791, abs=1e-6)


def test_flow_grpo_sde_step_by_hand():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    scheduler.set_timesteps(sigmas=[1.0, 0.5, 0.25])  # then 0
    sampler = StochasticSampler(_schedule_holder(scheduler, "flow"), 3, noise_level=0.7)
    x, v = torch.ones(1, 2), torch.full((1, 2), 2.0)
    # step 1: t = 0.5, dt = -0.25, sigma_t = 0.7 sqrt(0.5 / 0.5) = 0.7, std = 0.7 sqrt(0.25) = 0.35
    assert sampler.stds[1] == pytest.approx(0.35)
    # mean = x (1 + 0.49 (-0.25) / 1) + v (1 + 0.49 * 0.5 / 1) (-0.25) = 0.8775 - 2 * 0.31125
    assert torch.allclose(sampler.mean(v, x, 1), torch.full((1, 2), 0.255))
    # step 0 at t = 1: the second sigma stands in below the root, sigma_t = 0.7 sqrt(1 / 0.5), std = sigma_t sqrt(0.5)
    assert sampler.stds[0] == pytest.approx(0.7)
    euler = StochasticSampler(_schedule_holder(scheduler, "flow"), 3, noise_level=0.0)
    assert torch.allclose(euler.mean(v, x, 1), x - 0.25 * v) and euler.stochastic_steps == []
    cps = StochasticSampler(_schedule_holder(scheduler, "flow"), 3, noise_level=0.5, sde="cps")
    # std = 0.25 sin(pi / 4) = 0.176777; mean = (x - 0.5 v) 0.75 + (x + 0.5 v) sqrt(0.0625 - 0.03125) = 0 + 2 * 0.176777
    assert cps.stds[1] == pytest.approx(0.176777, abs=1e-6)
    assert torch.allclose(cps.mean(v, x, 1), torch.full((1, 2), 0.353553), atol=1e-5)
    assert cps.stochastic_steps == [0, 1]  # its last step (sigma_next = 0) is deterministic


def test_ddpo_ddim_step_by_hand():
    from diffusers import DDIMScheduler

    # beta 0.1 throughout: alpha_bar_t = 0.9^(t+1); 2 steps of 10: timesteps 5, 0; the last goes to alpha_bar = 1
    scheduler = DDIMScheduler(num_train_timesteps=10, beta_start=0.1, beta_end=0.1, beta_schedule="linear",
                              clip_sample=False)
    scheduler.set_timesteps(2)
    sampler = StochasticSampler(_schedule_holder(scheduler, "epsilon"), 2, noise_level=1.0)
    # variance = (1 - 0.9) / (1 - 0.531441) (1 - 0.531441 / 0.9) = 0.0873977
    assert sampler.stds[0] == pytest.approx(math.sqrt(0.0873977), abs=1e-6) and sampler.stochastic_steps == [0]
    x, eps = torch.ones(1, 1), torch.full((1, 1), 0.5)
    x0 = (1 - math.sqrt(1 - 0.531441) * 0.5) / math.sqrt(0.531441)
    expected = math.sqrt(0.9) * x0 + math.sqrt(1 - 0.9 - 0.0873977) * 0.5
    assert sampler.mean(eps, x, 0).item() == pytest.approx(expected, abs=1e-5)


def test_advantages_are_relative_to_each_group_and_clipped():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    advantages = group_advantages(rewards, 3, global_std=False, clip=5.0)
    assert torch.allclose(advantages[:3], torch.tensor([-1.0, 0.0, 1.0]) / 1.0001, atol=1e-4)  # std 1 (+1e-4)
    assert torch.equal(advantages[3:], torch.zeros(3))  # a group whose samples all score alike teaches nothing
    assert group_advantages(torch.tensor([0.0, 1.0]), 2, False, clip=0.5).tolist() == [-0.5, 0.5]


# --- the sampler against the generators' own samplers -------------------------------------------------------------

def _predict(denoiser):
    return lambda noisy, timesteps, condition: denoiser.predict(denoiser.module, noisy, timesteps, condition)


def _rollout(sampler, denoiser, noise, prompts):
    generators = [torch.Generator().manual_seed(100 + k) for k in range(len(prompts))]
    return sampler.rollout(_predict(denoiser), noise, prompts, generators)


def test_at_noise_level_zero_the_sampler_reproduces_the_bundled_generators_samples(tiny_generator):
    prompts = [digit_prompt(2), digit_prompt(7)]
    theirs = tiny_generator.generate_from_seeds(prompts, [3, 4])
    denoiser = tiny_generator.denoiser()
    trajectory = _rollout(StochasticSampler(denoiser, 10, 0.0), denoiser, tiny_generator.initial_noise([3, 4]), prompts)
    assert (denoiser.decode(trajectory.latents[:, -1]) - theirs).abs().max() < 1e-4


VIDEO_FRAMES = {"animatediff": 8, "cogvideox": 9}  # 4k + 1 frames for a 4x temporal VAE
IMAGE_PIPELINES = {"sd": save_tiny_stable_diffusion, "sdxl": save_tiny_sdxl, "sd3": save_tiny_sd3,
                   "flux-dev": save_tiny_flux}


@pytest.mark.parametrize("name", sorted(IMAGE_PIPELINES) + ["animatediff", "cogvideox"])
def test_at_noise_level_zero_the_sampler_reproduces_the_pipelines_own_images(name, tmp_path):
    """Against diffusers' own __call__ from the same noise, with the scheduler GRPO steps with: a flow model's own
    Euler; DDIM for the DDPM family (SD's PNDM and SDXL's Euler are replaced by DDIM from their config, as DDPO does;
    AnimateDiff's and CogVideoX's are DDIM already)."""
    from diffusers import DDIMScheduler

    from visreward.generators import DiffusersGenerator

    build = IMAGE_PIPELINES.get(name) or TINY_VIDEO_PIPELINES[name]
    size = dict(height=16, width=16, **({} if name in IMAGE_PIPELINES else {"num_frames": VIDEO_FRAMES[name]}))
    folder = build(tmp_path)
    ours, theirs = (DiffusersGenerator.from_pretrained(folder, num_inference_steps=3, **size) for _ in range(2))
    stepper = theirs.pipeline.scheduler
    if ours.denoiser().objective.prediction_type != "flow" and "eta" not in inspect.signature(stepper.step).parameters:
        theirs.pipeline.scheduler = DDIMScheduler.from_config(stepper.config)
    expected = theirs.generate_from_seeds(["a red cube"], [7])
    denoiser = ours.denoiser()
    noise = torch.randn(denoiser.latent_shape(1), generator=torch.Generator().manual_seed(7))
    trajectory = _rollout(StochasticSampler(denoiser, 3, 0.0), denoiser, noise, ["a red cube"])
    with torch.no_grad():
        images = denoiser.decode(trajectory.latents[:, -1])
    assert (images - expected).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["ddim", "flow"])
def test_the_training_pass_recomputes_the_sampled_log_probabilities(kind, tiny_generator, tmp_path):
    """The on-policy ratio at the first update is exactly 1: the trainer's log-probability of each recorded transition
    equals the sampler's, at batch sizes 1 and 4 (with guidance, whose unconditional branch is detached)."""
    from visreward.generators import DiffusersGenerator

    if kind == "ddim":
        denoiser, prompts = tiny_generator.denoiser(), [digit_prompt(d) for d in (1, 2, 3, 4)]
    else:
        denoiser = DiffusersGenerator.from_pretrained(save_tiny_sd3(tmp_path), height=16, width=16).denoiser()
        denoiser.guidance_scale, prompts = 4.0, ["a red cube", "a cat", "a dog", "a tree"]
    sampler = StochasticSampler(denoiser, 4, 1.0 if kind == "ddim" else 0.7)
    trajectory = _rollout(sampler, denoiser, torch.randn(denoiser.latent_shape(4), generator=torch.Generator().manual_seed(0)),
                          prompts)
    assert trajectory.log_probs[:, sampler.stochastic_steps].abs().min() > 0
    for size in (1, 4):
        condition, unconditional = sampler.conditions(prompts[:size])
        for i in sampler.stochastic_steps:
            log_prob, _ = sampler.log_prob(_predict(denoiser), trajectory.latents[:size, i],
                                           trajectory.latents[:size, i + 1], i, condition, unconditional)
            assert torch.allclose(log_prob, trajectory.log_probs[:size, i], atol=1e-5)
            assert log_prob.requires_grad


def test_a_window_makes_only_its_steps_stochastic_and_the_others_the_deterministic_step(tiny_generator):
    """Flow-GRPO-Fast's window: steps outside it are the noiseless DDIM step (log-probability 0), steps inside are
    drawn; so before the window the rollout follows the deterministic sampler exactly, and after it differs."""
    denoiser = tiny_generator.denoiser()
    prompts = [digit_prompt(2), digit_prompt(7)]
    noise = tiny_generator.initial_noise([3, 4])
    generators = lambda: [torch.Generator().manual_seed(100 + k) for k in range(2)]  # noqa: E731
    windowed = StochasticSampler(denoiser, 5, 1.0).rollout(_predict(denoiser), noise, prompts, generators(), [1, 2])
    plain = StochasticSampler(denoiser, 5, 0.0).rollout(_predict(denoiser), noise, prompts, generators())
    assert windowed.stochastic == [1, 2]
    assert (windowed.log_probs[:, [0, 3, 4]] == 0).all() and (windowed.log_probs[:, [1, 2]] != 0).all()
    assert torch.equal(windowed.latents[:, 1], plain.latents[:, 1])
    assert (windowed.latents[:, 2] - plain.latents[:, 2]).abs().max() > 1e-3


def test_windows_are_drawn_inside_their_range_and_ill_fitting_ones_are_one_line_errors(tiny_generator):
    from visreward.core.errors import VisrewardError

    sampler = StochasticSampler(tiny_generator.denoiser(), 10, 1.0)
    rng = torch.Generator().manual_seed(0)
    windows = {tuple(sampler.window(2, [1, 5], rng)) for _ in range(200)}
    assert windows == {(1, 2), (2, 3), (3, 4)}  # starts 1..3: the window ends by step 4
    for size, start_range in ((3, [0, 2]), (0, [0, 5]), (2, [0, 11])):
        with pytest.raises(VisrewardError, match="--sde-window-range"):
            sampler.window(size, start_range, rng)
    with pytest.raises(VisrewardError, match="all deterministic"):  # DDIM's last step, to abar = 1, has std 0
        sampler.window(1, [9, 10], rng)


# --- the trainer ------------------------------------------------------------------------------------------------

def _config(generator_dir, output, **overrides) -> GRPOConfig:
    settings = dict(generator=str(generator_dir), prompts=DIGITS, output=str(output), steps=3, group_size=4,
                    prompts_per_step=2, sample_steps=4, batch_size=4, lr=1e-4, progress=False, checkpoint_every=100)
    return GRPOConfig(**{**settings, **overrides})


def _weights(generator_dir: Path) -> dict:
    from visreward.generators import ConditionalGenerator

    return ConditionalGenerator.from_pretrained(generator_dir).unet.state_dict()


def _mean_brightness(generator_dir: Path, seeds) -> float:
    from visreward.generators import ConditionalGenerator

    generator = ConditionalGenerator.from_pretrained(generator_dir)
    return float(brightness(generator.generate_from_seeds([DIGITS[s % 10] for s in seeds], list(seeds)), None).mean())


def test_grpo_raises_a_synthetic_reward_on_fresh_prompts_and_seeds(tiny_generator_dir, tmp_path):
    metrics = run_grpo(_config(tiny_generator_dir, tmp_path / "grpo", steps=8, lr=6e-4, beta=0.0,
                               stop_on_hacking=False), reward=brightness)
    assert metrics["history"][0]["first_ratio_error"] < 1e-5  # the sampler and the trainer agree
    fresh = range(5000, 5064)  # seeds no training step drew from
    before, after = _mean_brightness(tiny_generator_dir, fresh), _mean_brightness(tmp_path / "grpo" / "generator", fresh)
    assert after > before + 0.02, (before, after)
    assert set(metrics["seconds_per_step_split"]) == {"sampling", "reward", "training"}


def test_a_larger_beta_keeps_the_policy_closer_to_the_reference(tiny_generator_dir, tmp_path):
    """Drift: how far the trained generator's (deterministic) samples move from the base generator's, same seeds."""
    from visreward.generators import ConditionalGenerator

    seeds = list(range(7000, 7032))
    prompts = [DIGITS[s % 10] for s in seeds]
    base = ConditionalGenerator.from_pretrained(tiny_generator_dir).generate_from_seeds(prompts, seeds)
    drift = {}
    for beta in (0.0, 50.0):
        metrics = run_grpo(_config(tiny_generator_dir, tmp_path / f"beta{beta}", steps=4, lr=3e-4, beta=beta, batch_size=8,
                                   stop_on_hacking=False), reward=brightness)
        trained = ConditionalGenerator.from_pretrained(tmp_path / f"beta{beta}" / "generator")
        drift[beta] = float((trained.generate_from_seeds(prompts, seeds) - base).abs().mean())
        if beta:
            kl = [row["kl"] for row in metrics["history"]]
            assert kl[0] < 1e-9 < kl[-1]  # one update per step: the first is computed at the reference itself
    assert drift[50.0] < 0.7 * drift[0.0], drift


def test_a_windowed_run_trains_only_the_window_steps(tiny_generator_dir, tmp_path, monkeypatch):
    trained = []
    real_log_prob = StochasticSampler.log_prob

    def recording(self, predict, x, x_next, i, *args):
        trained.append(i)
        return real_log_prob(self, predict, x, x_next, i, *args)

    monkeypatch.setattr(StochasticSampler, "log_prob", recording)
    metrics = run_grpo(_config(tiny_generator_dir, tmp_path / "window", steps=3, sample_steps=6, batch_size=8,
                               sde_window_size=2, sde_window_range=[1, 4]), reward=brightness)
    windows = [trained[2 * k : 2 * k + 2] for k in range(3)]  # one batch a step, both window steps trained
    assert len(trained) == 6 and all(w in ([1, 2], [2, 3]) for w in windows), trained
    assert all(row["first_ratio_error"] < 1e-5 for row in metrics["history"])


def test_the_saved_generator_is_diffusers_ema_of_the_trained_weights(tiny_generator_dir, tmp_path):
    """One update a step; EMAModel's warm-up decay is 0 at its first update and min(0.9, 2/11) at its second, so
    after two steps the EMA is 2/11 of step 1's weights plus 9/11 of step 2's."""
    raw = {}
    for steps in (1, 2):
        run_grpo(_config(tiny_generator_dir, tmp_path / f"raw{steps}", steps=steps, batch_size=8), reward=brightness)
        raw[steps] = _weights(tmp_path / f"raw{steps}" / "generator")
    run_grpo(_config(tiny_generator_dir, tmp_path / "ema", steps=2, batch_size=8, ema_decay=0.9), reward=brightness)
    ema = _weights(tmp_path / "ema" / "generator")
    assert max((raw[1][k] - raw[2][k]).abs().max() for k in ema) > 1e-5  # the two steps moved the weights
    assert all(torch.allclose(ema[k], 2 / 11 * raw[1][k] + 9 / 11 * raw[2][k], atol=1e-7) for k in ema)


def test_an_interrupted_and_resumed_grpo_run_ends_bit_for_bit_like_an_uninterrupted_one(
        tiny_generator_dir, tmp_path, monkeypatch, capsys):
    """With an EMA: the checkpoint carries it, and the saved weights are the EMA's."""
    def config(name):
        return _config(tiny_generator_dir, tmp_path / name, steps=4, checkpoint_every=2, ema_decay=0.9)

    run_grpo(config("straight"), reward=brightness)
    real_collect, calls = grpo_module.collect, []

    def dies_at_step_four(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_collect(*args, **kwargs)

    monkeypatch.setattr(grpo_module, "collect", dies_at_step_four)
    with pytest.raises(KeyboardInterrupt):
        run_grpo(config("resumed"), reward=brightness)
    monkeypatch.setattr(grpo_module, "collect", real_collect)
    metrics = run_grpo(config("resumed"), reward=brightness)
    assert "resuming from" in capsys.readouterr().out
    straight_metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    timeless = lambda rows: [{k: v for k, v in row.items() if k != "seconds_per_step"} for row in rows]  # noqa: E731
    assert timeless(metrics["history"]) == timeless(straight_metrics["history"])
    straight, resumed = _weights(tmp_path / "straight" / "generator"), _weights(tmp_path / "resumed" / "generator")
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_two_processes_end_with_equal_weights_and_use_whole_groups_advantages(tiny_generator_dir, tmp_path):
    """Each rank samples half of each group. With the whole group's advantages, two processes of 2 samples take the
    same step as one process of 4 (DDP averages the two halves' gradients); advantages from a rank's own half would
    differ completely."""
    run_grpo(_config(tiny_generator_dir, tmp_path / "one", steps=2, prompts_per_step=1, beta=0.0), reward=brightness)
    worker = Path(__file__).with_name("grpo_worker.py")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(worker), str(tiny_generator_dir), str(tmp_path / "two")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    rank0, rank1 = (torch.load(tmp_path / f"two.rank{rank}.pt") for rank in (0, 1))
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    one = _weights(tmp_path / "one" / "generator")
    start = _weights(tiny_generator_dir)
    # mean absolute differences: Adam's first steps move each weight by about lr whatever its gradient's size, so
    # a weight whose gradient is rounding noise may move either way in either run
    moved = torch.cat([(one[name] - start[name]).abs().flatten() for name in one]).mean()
    apart = torch.cat([(one[name] - rank0[name]).abs().flatten() for name in one]).mean()
    assert moved > 1e-5 and apart < moved / 20, (moved, apart)


def test_the_grpo_command_trains_against_a_gan_rm_folder(tiny_generator_dir, rm_dir, tmp_path, capsys):
    from visreward.cli import main

    code = main(["grpo", "--generator", str(tiny_generator_dir), "--reward", str(rm_dir), "--prompts", *DIGITS[:2],
                 "--output", str(tmp_path / "grpo"), "--steps", "2", "--group-size", "4", "--prompts-per-step", "2",
                 "--sample-steps", "3", "--batch-size", "4", "--no-progress", "--no-stop-on-hacking"])
    assert code == 0
    assert "2 steps on 1 process(es)" in capsys.readouterr().out
    row = json.loads((tmp_path / "grpo" / "metrics.json").read_text())["history"][-1]
    assert {"reward_group_std", "approx_kl", "clip_fraction", "first_ratio_error", "kl", "above_target",
            "off_manifold", "independent_agreement"} <= set(row)
    assert (tmp_path / "grpo" / "generator" / "generator.json").exists()


@pytest.mark.parametrize("option, message", [({"group_size": 1}, "a group needs 2"),
                                             ({"noise_level": 0.0}, "needs a stochastic sampler")])
def test_settings_grpo_cannot_train_with_are_one_line_errors(option, message, tiny_generator_dir, tmp_path):
    from visreward.core.errors import VisrewardError

    with pytest.raises(VisrewardError, match=message):
        run_grpo(_config(tiny_generator_dir, tmp_path / "bad", **option), reward=brightness)


FAMILIES = {"sd-lora": save_tiny_stable_diffusion, "sdxl": save_tiny_sdxl, "sd3": save_tiny_sd3, "flux-dev": save_tiny_flux,
            **TINY_VIDEO_PIPELINES}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_grpo_trains_every_pipeline_family_with_its_sampler_and_trainer_agreeing(name, tiny_hf_encoders, tmp_path):
    """One small GRPO step per family (SD with LoRA): the first update's ratio is 1 (packed FLUX latents, LTX-Video's
    tokens, CogVideoX's frames-first clips included), and the saved generator loads. A CLIP given as the agreement
    encoder is the pipelines' independent check, on images and clips."""
    from visreward.generators import DiffusersGenerator, load_generator

    frames = {"animatediff": 8, "cogvideox": 9, "wan": 9, "ltx": 9}
    side = 32 if name == "ltx" else 16
    settings = dict(height=side, width=side, **({"num_frames": frames[name]} if name in frames else {}))
    DiffusersGenerator.from_pretrained(FAMILIES[name](tmp_path / "pipe"), **settings).save_pretrained(tmp_path / "gen")
    metrics = run_grpo(GRPOConfig(generator=str(tmp_path / "gen"), prompts=["a red cube", "a cat"], output=str(tmp_path / "grpo"),
                                  steps=1, group_size=2, prompts_per_step=2, sample_steps=3, batch_size=2,
                                  lora=name == "sd-lora", progress=False, stop_on_hacking=False,
                                  agreement_encoder=f"clip:{tiny_hf_encoders['clip']}"), reward=brightness)
    row = metrics["history"][0]
    assert row["first_ratio_error"] < 1e-4 and math.isfinite(row["policy_loss"]), row
    assert row["independent_agreement"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 samples of 2 prompts
    load_generator(str(tmp_path / "grpo"))
    assert (tmp_path / "grpo" / "adapter").is_dir() == (name == "sd-lora")
