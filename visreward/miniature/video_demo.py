"""`visreward demo --video`: the GAN-RM paper in miniature for video, on the bundled moving-digits generator.

The base generator learnt from clips of real digits moving right, left, down or up, each at its own
speed (0.25 to 1 pixel a frame). It draws *slow, steady* clips (speed in the slowest 30% of its
training clips) only sometimes (about 30% of its clips, by the judge below). The target is a few
hundred slow training clips: a motion look, as the paper's target videos are.

Per seed (sampling, reward training and fine-tuning all depend on it):
1. the GAN-RM loop from the same base generator, `--rounds` rounds of SFT and of DPO: each round
   trains a video reward model (frame features pooled over time) on the target clips vs fresh
   samples, keeps the best (and worst) of N per prompt group, fine-tunes;
2. Best-of-4 and Best-of-16 with the round-1 reward model;
3. every generator sampled on the same prompts and seeds and judged by measures that share nothing
   with the reward (pixels, and a classifier trained on held-out digits): the speed of the ink's
   centroid (the motion statistic), whether it moves the way the prompt says, digit accuracy on
   every frame, temporal consistency of the digit across frames, diversity within a prompt.
Then the table (mean +- sd over seeds), demo_metrics.json, and report.html with animated previews.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..core.errors import VisrewardError
from ..core.options import VideoDemoConfig
from ..core.progress import time_left
from ..evaluation.generation import moving_digit_tensors
from ..evaluation.metrics import mean_sd
from ..io.digits import DIRECTIONS, motion_prompt, moving_digits, slow_rows, write_clips_folder
from .clip_judge import JUDGED, LABELS, judge
from .image_demo import prepare_run, seed_table, write_metrics


def demo_prompts(directions: list[str]) -> list[str]:
    unknown = next((d for d in directions if d not in DIRECTIONS), None)
    if unknown is not None:
        raise VisrewardError(f"--directions: unknown motion '{unknown}' (have: {', '.join(DIRECTIONS)})")
    return [motion_prompt(digit, motion) for digit in range(10) for motion in directions]


def run_loops(config: VideoDemoConfig, seed: int, out: Path, target: Path, generator_dir: str) -> dict[str, list[dict]]:
    """`config.rounds` rounds of the GAN-RM loop with DPO and with SFT, each from the base generator."""
    from ..post_training.rounds import RoundsConfig, run_rounds

    runs = {}
    for method, steps, lr, repeats in (("dpo", config.dpo_steps, config.dpo_lr, config.dpo_repeats),
                                       ("sft", config.sft_steps, config.sft_lr, config.sft_repeats)):
        print(f"   seed {seed}: {config.rounds} rounds of {method.upper()}")
        runs[method] = run_rounds(RoundsConfig(
            generator=generator_dir, target=[str(target)], prompts=demo_prompts(config.directions),
            output=str(out / f"rounds-{method}"), rounds=config.rounds, method=method, n=config.n, repeats=repeats,
            steps=steps, lr=lr, negatives_per_prompt=config.negatives_per_prompt, pool_per_prompt=config.pool_per_prompt,
            frames=config.frames, pooling=config.pooling, beta=config.beta, batch_size=config.batch_size,
            mixed_precision=config.mixed_precision, probe_samples=config.probe_samples, seed=seed,
            cache_dir=config.cache_dir, progress=False))
    return runs


def run_seed(config: VideoDemoConfig, seed: int, out: Path, target: Path, heldout: torch.Tensor,
             target_speed: float, generator_dir: str) -> dict:
    from ..encoders.features import encode_tensors
    from ..evaluation.metrics import roc_auc
    from ..generators import load_generator
    from ..rewards.discriminative import DiscriminativeRewardModel

    runs = run_loops(config, seed, out, target, generator_dir)
    grpo = _grpo(config, seed, out, generator_dir, target_speed) if config.grpo_steps else None
    print(f"   seed {seed}: sampling and judging every generator on the same prompts and seeds")
    base = load_generator(generator_dir)
    eval_prompts = [p for p in demo_prompts(config.directions) for _ in range(config.eval_per_prompt)]
    clips, _, seeds = base.generate_tensors(eval_prompts, 16, 900_000_000 + seed * 1_000_000)
    groups = clips.view(len(eval_prompts), 16, *clips.shape[1:])
    reward = DiscriminativeRewardModel.from_pretrained(out / "rounds-dpo" / "round-1" / "rm", backend="auto",
                                                       cache_dir=config.cache_dir)
    scores = reward.score_features(encode_tensors(reward.encoder, clips)).view(len(eval_prompts), 16)
    heldout_scores = reward.score_features(encode_tensors(reward.encoder, heldout))

    base_row = judge(groups[:, 0], eval_prompts, target_speed)
    rows, samples = {"base": base_row}, {"base": groups[:, 0]}
    for n in (4, 16):
        chosen = groups[torch.arange(len(eval_prompts)), scores[:, :n].argmax(dim=1)]
        rows[f"Best-of-{n}"] = judge(chosen, eval_prompts, target_speed, base_row["speed"])
        samples[f"Best-of-{n}"] = chosen
    for method in ("sft", "dpo"):
        for info in runs[method]:
            name = f"{method.upper()} round {info['round']}"
            tuned = load_generator(info["next_generator"]).generate_from_seeds(eval_prompts, seeds[::16])
            rows[name], samples[name] = judge(tuned, eval_prompts, target_speed, base_row["speed"]), tuned
    if grpo is not None:
        tuned = load_generator(str(out / "grpo")).generate_from_seeds(eval_prompts, seeds[::16])
        rows["GRPO"], samples["GRPO"] = judge(tuned, eval_prompts, target_speed, base_row["speed"]), tuned
    return {"seed": seed, "rows": rows, "rounds": runs, "grpo": grpo, "samples": samples,
            "reward_heldout_auc": roc_auc(heldout_scores.numpy(), scores[:, 0].numpy()),
            "scores": {"heldout_target": heldout_scores.tolist(), "base": scores[:, 0].tolist()}}


def _grpo(config: VideoDemoConfig, seed: int, out: Path, generator_dir: str, target_speed: float) -> dict:
    from .image_demo import demo_grpo

    def judged(clips: torch.Tensor, step_prompts: list[str]) -> dict:
        measures = judge(clips, step_prompts, target_speed)
        return {"speed": measures["speed"], "accuracy": measures["accuracy"]}

    return demo_grpo(out, generator_dir, demo_prompts(config.directions), seed, judged, ("speed", "accuracy"),
                     steps=config.grpo_steps, lr=config.grpo_lr, beta=config.grpo_beta,
                     mixed_precision=config.mixed_precision)


def format_table(rows: dict, target_speed: float) -> str:
    def cell(value: tuple[float, float], digits: int) -> str:
        return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"

    header = [f"{LABELS['speed']} (target {target_speed:.2f})"] + [LABELS[key] for key in JUDGED[1:]]
    lines = ["| generator | " + " | ".join(header) + " |", "|---|" + "---:|" * len(JUDGED)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(r[key], 3 if key in ("accuracy", "direction", "consistency") else 2)
                                               for key in JUDGED) + " |")
    return "\n".join(lines)


def _preview_prompts(prompts: list[str], directions: list[str]) -> list[int]:
    """Ten prompts for the previews, one per digit: digit d moving in the (d mod k)-th of the k directions."""
    return [prompts.index(motion_prompt(d, directions[d % len(directions)])) for d in range(10)]


def _look_rows(split: str, config: VideoDemoConfig) -> np.ndarray:
    """The split's clips with the target look, in the prompted directions."""
    rows = slow_rows(split, config.look)
    return rows[np.isin(moving_digits(split).motion[rows], config.directions)]


def run_video_demo(config: VideoDemoConfig) -> dict:
    from .report import save_clip_grids, write_report

    if config.eval_per_prompt < 2:
        raise VisrewardError("--eval-per-prompt: diversity is measured within a prompt, which needs 2 or more")
    started = time.time()
    out, generator_dir = prepare_run(config, "moving-digits")
    prompts = demo_prompts(config.directions)
    slow = np.random.default_rng(0).permutation(_look_rows("train", config))
    if config.n_target > len(slow):
        raise VisrewardError(f"--n-target: only {len(slow)} training clips have the slowest-{config.look:.0%} look")
    target_rows = moving_digits("train").subset(slow[: config.n_target])
    target = write_clips_folder(out / "target", "train", target_rows)
    heldout_rows = moving_digits("evaluation").subset(_look_rows("evaluation", config))
    heldout = moving_digit_tensors("evaluation", heldout_rows)
    target_speed = float(heldout_rows.speed.mean())

    print(f"2/3 {config.seeds} seed(s): GAN-RM loop, Best-of-N, judges")
    per_seed, seeds_started = [], time.time()
    for done, seed in enumerate(range(config.seed, config.seed + config.seeds), start=1):
        per_seed.append(run_seed(config, seed, out / f"seed-{seed}", target, heldout, target_speed, generator_dir))
        print("   " + time_left("seed", done, config.seeds, seeds_started))
    print("3/3 report")
    shown = _preview_prompts(prompts, config.directions)
    by_prompt = {p: [i for i, q in enumerate(target_rows.prompts()) if q == prompts[p]] or [0] for p in shown}
    examples = [by_prompt[p][j % len(by_prompt[p])] for j in range(2) for p in shown]  # a prompt with no target: the first
    first = per_seed[0]["samples"]
    preview = {name: clips.view(len(prompts), config.eval_per_prompt, *clips.shape[1:])[shown, 0] for name, clips in first.items()}
    save_clip_grids(preview, moving_digit_tensors("train", target_rows.subset(examples)), out / "assets")
    heldout_judged = judge(heldout, heldout_rows.prompts(), target_speed)
    reference = {"target_speed": target_speed, "heldout_target": {k: v for k, v in heldout_judged.items() if k != "toward_target"},
                 "judges": "the ink's centroid track and pixels of 8-bit 16x16 frames, and an SVM trained on frame "
                           "windows of held-out evaluation-split digits"}
    summary = {"rows": seed_table(per_seed, "rows"), "reward_heldout_auc": mean_sd([r["reward_heldout_auc"] for r in per_seed])}
    results = write_metrics(out, reference, summary, per_seed, started)
    write_report(out)
    print()
    print(format_table(summary["rows"], target_speed))
    print(f"\n{config.seeds} seed(s), {len(prompts) * config.eval_per_prompt} clips per row and seed; held-out slow clips: "
          + ", ".join(f"{LABELS[k]} {v:.3f}" for k, v in reference["heldout_target"].items()))
    print(f"\nreport: {out / 'report.html'}   metrics: {out / 'demo_metrics.json'}   ({results['seconds']:.0f}s)")
    return results
