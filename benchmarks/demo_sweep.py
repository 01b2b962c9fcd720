"""The sweeps behind the demo's defaults.

    python benchmarks/demo_sweep.py [--output sweep_out] [--seeds 0 1]
    python benchmarks/demo_sweep.py --sft-selection [--seeds 0 1 2]

The first: one GAN-RM round from the bundled generator, per setting.
A reward model is trained once per seed (400 bold target digits vs base samples, as in the
demo), Best-of-N selects from base samples, and SFT / Diffusion-DPO fine-tune one round on its
selections with each learning rate, beta and step count. Every setting is judged like the
demo's table (visreward.miniature.image_demo.judge: pixel statistics and a held-out digit classifier), on the
same prompts and seeds, and printed as a markdown table of means over the seeds.

--sft-selection: two rounds of the GAN-RM loop with SFT (`visreward rounds`, as the demo runs
them), per way of selecting the SFT images (best-of-N groups per prompt and samples kept per
group), judged after each round.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SFT = [(1e-5, 50), (1e-5, 100), (3e-5, 100), (1e-4, 100)]
DPO = [(1e-6, 5000, 100), (2e-6, 5000, 100), (3e-6, 5000, 100), (1e-5, 5000, 100), (2e-6, 1000, 100), (2e-6, 20000, 100)]
KEYS = ("ink", "toward_target", "accuracy", "frechet", "diversity")
SELECTIONS = {"8 groups, best 1": dict(repeats=8, keep=1), "16 groups, best 1": dict(repeats=16, keep=1),
              "8 groups, best 2": dict(repeats=8, keep=2), "8 groups, best 4": dict(repeats=8, keep=4)}


@dataclass
class Round1:
    """What every sweep of one seed starts from: the bundled generator, a GAN-RM trained as the demo's round 1 trains
    it (400 bold target digits against 40 base samples per digit), and the judges' prompts, seeds and base row."""

    generator: str
    prompts: list[str]
    out: Path
    reward: Path
    eval_prompts: list[str]
    eval_seeds: list[int]
    refs: object
    rows: dict

    def judge(self, generator_dir: Path) -> dict:
        from visreward.generators import load_generator
        from visreward.miniature.image_demo import judge

        images = load_generator(str(generator_dir)).generate_from_seeds(self.eval_prompts, self.eval_seeds)
        return judge(images, self.eval_prompts, self.refs)


def round_one(seed: int, output: Path) -> Round1:
    from visreward import RewardTrainingConfig, train_reward_model
    from visreward.generators import save_samples
    from visreward.generators.bundled import bundled_generator_dir, load_bundled_generator
    from visreward.io.digits import digit_prompt, write_digits_folder
    from visreward.miniature.image_demo import DemoConfig, _references, _target_indices, judge

    base = load_bundled_generator()
    indices = _target_indices(DemoConfig())[:400]
    refs = _references(indices, DemoConfig().look)
    prompts = [digit_prompt(d) for d in range(10)]
    out = output / f"seed-{seed}"
    target = write_digits_folder(out / "target", "train", indices)
    save_samples(base.generate(prompts, 40, 10_000_000 + seed * 100_000), out / "negatives")
    train_reward_model(RewardTrainingConfig(target=[str(target)], generated=[str(out / "negatives")],
                                            output=str(out / "rm"), seed=seed, progress=False))
    eval_prompts = [p for p in prompts for _ in range(16)]
    eval_seeds = list(range(900_000_000 + seed * 1_000_000, 900_000_000 + seed * 1_000_000 + len(eval_prompts)))
    rows = {"base": judge(base.generate_from_seeds(eval_prompts, eval_seeds), eval_prompts, refs)}
    refs.base_ink = rows["base"]["ink"]
    return Round1(str(bundled_generator_dir()), prompts, out, out / "rm", eval_prompts, eval_seeds, refs, rows)


def sweep_seed(seed: int, output: Path) -> dict[str, dict]:
    from visreward.io.formats import read_table
    from visreward.post_training import (
        BestOfNConfig,
        DPOConfig,
        SFTConfig,
        build_pairs,
        run_best_of_n,
        run_dpo,
        run_sft,
        write_pairs,
    )

    start = round_one(seed, output)
    generator, prompts, out, rows = start.generator, start.prompts, start.out, start.rows
    for n in (4, 16):
        bon = out / f"bon-{n}"
        run_best_of_n(BestOfNConfig(generator=generator, reward=str(out / "rm"), prompts=prompts, output=str(bon), n=n,
                                    repeats=8, keep_bottom=1, seed=20_000_000 + seed * 100_000, progress=False))
        write_pairs(build_pairs(read_table(bon / "scores.parquet").to_pylist(), group_by="group"), out / f"pairs-{n}", "trl")
    for lr, steps in SFT:
        run = out / f"sft-{lr}-{steps}"
        run_sft(SFTConfig(generator=generator, data=[str(out / "bon-16")], output=str(run), lr=lr, steps=steps,
                          seed=seed, progress=False))
        rows[f"SFT lr {lr:g}, {steps} steps"] = start.judge(run)
    for lr, beta, steps in DPO:
        run = out / f"dpo-{lr}-{beta}-{steps}"
        run_dpo(DPOConfig(generator=generator, pairs=str(out / "pairs-16"), output=str(run), lr=lr, beta=beta, steps=steps,
                          seed=seed, progress=False))
        rows[f"DPO lr {lr:g}, beta {beta:g}, {steps} steps"] = start.judge(run)
    return rows


def sweep_sft_selection(seed: int, output: Path) -> dict[str, dict]:
    import dataclasses

    from visreward.generators import load_generator
    from visreward.generators.bundled import bundled_generator_dir, load_bundled_generator
    from visreward.io.digits import digit_prompt, write_digits_folder
    from visreward.miniature.image_demo import DemoConfig, _references, _target_indices, judge
    from visreward.post_training.rounds import RoundsConfig, run_rounds

    refs = _references(_target_indices(DemoConfig())[:400], DemoConfig().look)
    prompts = [digit_prompt(d) for d in range(10)]
    target = write_digits_folder(output / "target", "train", _target_indices(DemoConfig())[:400])
    eval_prompts = [p for p in prompts for _ in range(16)]
    eval_seeds = list(range(900_000_000 + seed * 1_000_000, 900_000_000 + seed * 1_000_000 + len(eval_prompts)))
    rows = {"base": judge(load_bundled_generator().generate_from_seeds(eval_prompts, eval_seeds), eval_prompts, refs)}
    refs = dataclasses.replace(refs, base_ink=rows["base"]["ink"])
    for name, selection in SELECTIONS.items():
        runs = run_rounds(RoundsConfig(generator=str(bundled_generator_dir()), target=[str(target)], prompts=prompts,
                                       output=str(output / f"{name.replace(' ', '-').replace(',', '')}-{seed}"), rounds=2,
                                       method="sft", steps=50, lr=1e-5, seed=seed, progress=False, **selection))
        for info in runs:
            tuned = load_generator(info["next_generator"]).generate_from_seeds(eval_prompts, eval_seeds)
            rows[f"SFT, {name}, round {info['round']}"] = judge(tuned, eval_prompts, refs)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="sweep_out")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sft-selection", action="store_true", help="two SFT rounds per way of selecting images")
    args = parser.parse_args(argv)
    output = Path(args.output)
    sweep = sweep_sft_selection if args.sft_selection else sweep_seed
    runs = [sweep(seed, output) for seed in args.seeds]
    (output / ("sft_selection.json" if args.sft_selection else "sweep.json")).write_text(json.dumps(runs, indent=2))
    title = "two SFT rounds, N=16" if args.sft_selection else "one round from base, N=16, 80 selections"
    print(f"| setting ({title}; mean of {len(runs)} seed(s)) | "
          "ink mass | moved toward target | digit accuracy | Fréchet dist. (pixels) | diversity |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in runs[0]:
        values = [np.mean([run[name][key] for run in runs]) for key in KEYS]
        print(f"| {name} | {values[0]:.2f} | {values[1]:+.2f} | {values[2]:.3f} | {values[3]:.3f} | {values[4]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
