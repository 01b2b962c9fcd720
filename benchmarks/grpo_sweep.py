"""The sweep behind GRPO's defaults on the bundled digits generator.

    python benchmarks/grpo_sweep.py [--output grpo_sweep_out] [--seeds 0 1] [--steps 40]

Per seed, a GAN-RM is trained as the demo's round 1 trains it (400 bold target digits against 40 base samples per
digit). GRPO then fine-tunes the bundled generator against it, once per setting (learning rate, beta, group size,
clip range, noise level, trained steps), and every result is judged like the demo's table (visreward.miniature.image_demo.judge:
pixel statistics and a classifier trained on held-out real digits, sharing nothing with the reward) on fresh prompts
and seeds. The table prints means over the seeds, with the step the monitors stopped at, if they did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BASE = dict(lr=3e-5, beta=0.04, group_size=8, clip_range=1e-4, noise_level=None, train_timestep_fraction=0.5)
SETTINGS = {
    "defaults": {},
    "lr 1e-5": dict(lr=1e-5),
    "lr 1e-4": dict(lr=1e-4),
    "beta 0": dict(beta=0.0),
    "beta 0.4": dict(beta=0.4),
    "group 4": dict(group_size=4),
    "clip 1e-3": dict(clip_range=1e-3),
    "eta 0.5": dict(noise_level=0.5),
    "every step trained": dict(train_timestep_fraction=1.0),
}
KEYS = ("ink", "toward_target", "accuracy", "frechet", "diversity")


def sweep_seed(seed: int, output: Path, steps: int, names: list[str]) -> dict[str, dict]:
    from demo_sweep import round_one

    from visreward.post_training import GRPOConfig, run_grpo

    start = round_one(seed, output)
    rows = start.rows
    for name in names:
        run = start.out / name.replace(" ", "-")
        metrics = run_grpo(GRPOConfig(generator=start.generator, reward=[str(start.reward)], prompts=start.prompts,
                                      output=str(run), steps=steps, seed=seed, progress=False,
                                      **{**BASE, **SETTINGS[name]}))
        rows[name] = {**start.judge(run), "stopped_at": (metrics["stopped"] or {}).get("step", 0),
                      "reward": metrics["history"][-1]["reward_mean_all"] - metrics["history"][0]["reward_mean_all"],
                      "seconds_per_step": metrics["seconds_per_step"]}
        print(name, json.dumps(rows[name]), file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="grpo_sweep_out")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    per_seed = [sweep_seed(seed, Path(args.output), args.steps, args.settings) for seed in args.seeds]
    print(f"| GRPO, {args.steps} steps (means over seeds {', '.join(map(str, args.seeds))}) | " + " | ".join(KEYS)
          + " | reward gain (first to last step) | stopped at step (0: ran to the end) |")
    print("|---" * (len(KEYS) + 3) + "|")
    for name in per_seed[0]:
        cells = [f"{np.mean([run[name][k] for run in per_seed]):.3f}" for k in KEYS]
        extra = [f"{np.mean([run[name].get(k, 0) for run in per_seed]):.3f}" for k in ("reward", "stopped_at")]
        print(f"| {name} | " + " | ".join(cells + extra) + " |")


if __name__ == "__main__":
    main()
