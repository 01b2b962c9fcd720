"""Seconds per Diffusion-DPO (and SFT) step on this machine: the bundled digits generator, a tiny
Stable Diffusion pipeline (random weights, 16x16 images), full fine-tuning and LoRA, the bundled
moving-digits video generator, and tiny AnimateDiff, CogVideoX and Wan pipelines (random weights,
8-9 frames of 16x16). Then GRPO's seconds per step, split into sampling, reward and training, for the
bundled generators and the tiny pipelines.

    python benchmarks/training.py          # ~7 minutes on a 2-core CPU (plus training moving-digits once)
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_pipelines import TINY_VIDEO_PIPELINES, save_tiny_stable_diffusion  # noqa: E402

from visreward import RewardTrainingConfig, train_reward_model  # noqa: E402
from visreward.generators import DiffusersGenerator, load_bundled_generator, load_generator, save_samples  # noqa: E402
from visreward.io.digits import digit_image, digit_prompt, motion_prompt, real_digits  # noqa: E402
from visreward.io.pairs import Pair  # noqa: E402
from visreward.io.samples import GeneratedSample  # noqa: E402
from visreward.post_training import (  # noqa: E402
    BestOfNConfig,
    DPOConfig,
    GRPOConfig,
    SFTConfig,
    build_pairs,
    run_best_of_n,
    run_dpo,
    run_grpo,
    run_sft,
    write_pairs,
)


def pairs_for(generator: str, reward: Path, work: Path, prompts: list[str]) -> Path:
    bon = work / f"bon-{Path(generator).name}"
    run_best_of_n(BestOfNConfig(generator=generator, reward=str(reward), prompts=prompts, n=4, repeats=4, keep_bottom=1,
                                output=str(bon), progress=False))
    return write_pairs(build_pairs(pq.read_table(bon / "scores.parquet").to_pylist(), group_by="group"), work / f"pairs-{bon.name}")


def clip_pairs(generator: str, work: Path, prompts: list[str]) -> tuple[Path, Path]:
    """(pairs, clips folder) from a video pipeline's own samples: the first of each prompt's two clips over the second
    (a step's cost does not depend on which clip is preferred)."""
    clips = save_samples(load_generator(generator).generate(prompts, 2, seed=0), work / f"clips-{Path(generator).name}")
    names = sorted(p.name for p in clips.glob("*.mp4"))
    pairs = [Pair(prompt, str(clips / names[2 * i]), str(clips / names[2 * i + 1]), 1.0, 0.0) for i, prompt in enumerate(prompts)]
    return write_pairs(pairs, work / f"pairs-{Path(generator).name}"), clips


def video_rows(work: Path, prompts: list[str]) -> list[tuple]:
    rows = []
    frames = {"animatediff": 8, "cogvideox": 9, "wan": 9, "ltx": 9}
    size = {"ltx": 32}  # LTXPipeline asks for multiples of 32
    for family, build in sorted(TINY_VIDEO_PIPELINES.items()):
        spec, side = work / f"{family}-gen", size.get(family, 16)
        DiffusersGenerator.from_pretrained(build(work / family), num_inference_steps=2, height=side, width=side,
                                           guidance_scale=1.0, num_frames=frames[family]).save_pretrained(spec)
        pairs, clips = clip_pairs(str(spec), work, prompts)
        for method in ("DPO", "SFT"):
            common = dict(generator=str(spec), output=str(work / f"{family}-{method}"), steps=12, batch_size=4,
                          log_every=12, progress=False)
            metrics = (run_dpo(DPOConfig(pairs=str(pairs), **common)) if method == "DPO"
                       else run_sft(SFTConfig(data=[str(clips)], **common)))
            rows.append((f"tiny {family} pipeline ({frames[family]} frames of {side}x{side})", method, 4, metrics["seconds_per_step"]))
    return rows


def bundled_video_rows(work: Path) -> list[tuple]:
    """The bundled moving-digits generator (trained on first use), full fine-tuning in fp32 and under bf16 autocast."""
    from accelerate.state import AcceleratorState

    load_bundled_generator(progress=False, name="moving-digits")
    pairs, clips = clip_pairs("moving-digits", work, [motion_prompt(d, "right") for d in range(10)])
    rows = []
    for method in ("DPO", "SFT"):
        for precision in ("no", "bf16"):
            AcceleratorState._reset_state(True)  # accelerate keeps one precision per process; this script measures two
            common = dict(generator="moving-digits", output=str(work / f"moving-{method}-{precision}"), steps=12,
                          batch_size=16, mixed_precision=precision, log_every=12, progress=False)
            metrics = (run_dpo(DPOConfig(pairs=str(pairs), **common)) if method == "DPO"
                       else run_sft(SFTConfig(data=[str(clips)], **common)))
            rows.append(("bundled moving-digits generator (4.5M-param UNet, 8 frames of 16x16)",
                         f"{method}{' bf16' if precision == 'bf16' else ''}", 16, metrics["seconds_per_step"]))
    return rows


def brightness(images, prompts):
    """A reward for generators no shipped reward model fits (tiny pipelines of random weights): mean pixel value."""
    return images.float().flatten(1).mean(dim=1)


def grpo_rows(work: Path, rm: Path) -> list[tuple]:
    """GRPO with its defaults (4 groups of 8 per step, 10 sampler steps, half of them trained): the bundled digits
    generator against a GAN-RM, the others against mean brightness."""
    frames = {"animatediff": 8, "cogvideox": 9, "wan": 9}
    specs = [("bundled digits generator (8x8)", "digits", [digit_prompt(d) for d in range(10)], None),
             ("bundled moving-digits generator (8 frames of 16x16)", "moving-digits",
              [motion_prompt(d, "right") for d in range(10)], brightness),
             ("tiny SD pipeline (16x16)", str(work / "sd-gen"), ["a red cube", "a cat"], brightness)]
    for family in sorted(frames):
        spec = work / f"{family}-gen"
        if spec.exists():
            specs.append((f"tiny {family} pipeline ({frames[family]} frames of 16x16)", str(spec), ["a red cube", "a cat"],
                          brightness))
    rows = []
    for name, spec, prompts, reward in specs:
        metrics = run_grpo(GRPOConfig(generator=spec, reward=[str(rm)], prompts=prompts, steps=3, progress=False,
                                      output=str(work / f"grpo-{Path(spec).name}"), stop_on_hacking=False), reward=reward)
        rows.append((name, "GAN-RM" if reward is None else "brightness", metrics["seconds_per_step"],
                     metrics["seconds_per_step_split"]))
    return rows


def main() -> None:
    work = Path(tempfile.mkdtemp())
    prompts = [digit_prompt(d) for d in range(10)]
    images, labels = real_digits("train")
    save_samples([GeneratedSample(digit_image(i), digit_prompt(int(l)), -1) for i, l in zip(images[:60], labels[:60])], work / "target")
    generator = load_bundled_generator(progress=False)
    save_samples(generator.generate(prompts, 6, seed=0), work / "generated")
    train_reward_model(RewardTrainingConfig(target=[str(work / "target")], generated=[str(work / "generated")],
                                            output=str(work / "rm"), progress=False))
    sd = save_tiny_stable_diffusion(work / "sd")
    DiffusersGenerator.from_pretrained(sd, num_inference_steps=4).save_pretrained(work / "sd-gen")
    rows = []
    for name, spec, batch in (("bundled digits generator (0.7M-param UNet, 8x8)", "digits", 32),
                              ("tiny SD pipeline (UNet2DCondition + VAE + CLIP text, 16x16)", str(work / "sd-gen"), 8)):
        pairs = pairs_for(spec, work / "rm", work, prompts)
        for method, lora in (("DPO", False), ("DPO", True), ("SFT", False)):
            common = dict(generator=spec, output=str(work / f"{method}-{lora}-{batch}"), steps=12, batch_size=batch,
                          log_every=12, lora=lora, progress=False)
            if method == "DPO":
                metrics = run_dpo(DPOConfig(pairs=str(pairs), **common))
            else:
                metrics = run_sft(SFTConfig(data=[str(work / f"bon-{Path(spec).name}")], **common))
            rows.append((name, f"{method}{' LoRA' if lora else ''}", batch, metrics["seconds_per_step"]))
    rows += video_rows(work, prompts)
    grpo = grpo_rows(work, work / "rm")
    rows += bundled_video_rows(work)  # last: it changes accelerate's precision
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| generator | method | batch (pairs / images) | seconds per step |")
    print("|---|---|---|---|")
    for name, method, batch, seconds in rows:
        print(f"| {name} | {method} | {batch} | {seconds:.3f} |")
    print("\n| GRPO: generator | reward | seconds per step (32 samples) | sampling | reward | training |")
    print("|---|---|---:|---:|---:|---:|")
    for name, reward, seconds, split in grpo:
        print(f"| {name} | {reward} | {seconds:.2f} | {split['sampling']:.2f} | {split['reward']:.2f} | {split['training']:.2f} |")


if __name__ == "__main__":
    main()
