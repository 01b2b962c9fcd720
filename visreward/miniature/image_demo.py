"""`make demo`: the GAN-RM paper in miniature, on the bundled digits generator and real digits.

The paper's setting: a base generator trained on all the data, and a few hundred target images
with a look the base produces only sometimes. Here the look is *bold* digits (ink mass in the
top 30% of their own class); the base generator draws bold digits about a third of the time.

Per seed (sampling, reward training and fine-tuning all depend on it):
1. the GAN-RM loop from the same base generator, `--rounds` rounds of SFT and of DPO: each round
   trains a reward model on the targets vs fresh samples, takes best/worst of N per prompt
   group, fine-tunes;
2. Best-of-N for N = 1..32 with the round-1 reward model (trained on base samples);
3. reward models on 50..400 target images: held-out AUC and Best-of-16 gain;
4. every generator sampled on the same prompts and seeds and judged by measures that share
   nothing with the reward (pixel space and a classifier trained on held-out real digits):
   ink mass (the style statistic), digit accuracy, Frechet distance to held-out target digits,
   diversity within a prompt, and the distance to the nearest target image (copying check);
   GRPO from the same base against the round-1 DPO reward model joins them (its ink mass and accuracy are also
   logged every step, for the report's curve);
5. reward probes: noise, blank, saturated, checkerboard and a gradient-ascent input, placed
   among the held-out target digits' scores.
Then the table (mean +- sd over seeds), demo_metrics.json, and report.html.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import write_text
from ..core.config import save_config
from ..core.errors import VisrewardError
from ..core.options import DemoConfig
from ..core.progress import time_left
from ..evaluation.metrics import mean_sd
from ..io.digits import bold_indices, digit_prompt, ink, real_digits, write_digits_folder

JUDGED = ("ink", "toward_target", "accuracy", "frechet", "diversity", "nearest_target")
BEST_OF = (1, 2, 4, 8, 16, 32)


@dataclass
class References:
    """What the judges compare with: held-out bold digits, and the target set itself (for copying)."""

    heldout_target: torch.Tensor  # [M,64] pixels of evaluation-split bold digits
    target: torch.Tensor          # [T,64] pixels of the target set
    heldout_nearest: float        # median distance of a held-out target digit to its nearest target image
    base_ink: float | None = None

    @property
    def target_ink(self) -> float:
        return float(ink(self.heldout_target.view(-1, 8, 8).numpy()).mean())


def judge(images: torch.Tensor, prompts: list[str], refs: References) -> dict:
    """Judges independent of every reward model: pixel statistics and a held-out classifier."""
    from ..evaluation.generation import (
        digit_accuracy,
        digit_pixels,
        nearest_neighbour_distance,
        within_prompt_diversity,
    )
    from ..evaluation.metrics import frechet_distance, moved_toward

    pixels = digit_pixels(images)
    mean_ink = float(ink(pixels.view(-1, 8, 8).numpy()).mean())
    base = refs.base_ink if refs.base_ink is not None else mean_ink
    return {"ink": mean_ink, "toward_target": moved_toward(mean_ink, base, refs.target_ink),
            "accuracy": digit_accuracy(images, prompts), "frechet": frechet_distance(pixels, refs.heldout_target),
            "diversity": within_prompt_diversity(pixels, prompts),
            "nearest_target": float(nearest_neighbour_distance(pixels, refs.target).median())}


def _references(target_indices: np.ndarray, look: float) -> References:
    from ..evaluation.generation import nearest_neighbour_distance

    train_images, _ = real_digits("train")
    eval_images, _ = real_digits("evaluation")
    target = torch.from_numpy(train_images[target_indices]).reshape(len(target_indices), -1)
    heldout = torch.from_numpy(eval_images[bold_indices("evaluation", look)]).reshape(-1, 64)
    heldout, target = (torch.round(x * 255) / 255 for x in (heldout, target))
    return References(heldout, target, float(nearest_neighbour_distance(heldout, target).median()))


def _honest_auc(model, features: torch.Tensor, heldout_target_features: torch.Tensor) -> float:
    """AUC of held-out target digits vs fresh base samples: images no reward model trained or stopped on."""
    from ..evaluation.metrics import roc_auc

    return roc_auc(model.score_features(heldout_target_features).numpy(), model.score_features(features).numpy())


@dataclass
class _Evaluation:
    """The base's evaluation samples of one seed (max(BEST_OF) per prompt) and what every row is judged against."""
    prompts: list[str]  # eval_per_digit per digit
    groups: torch.Tensor  # [prompts, max(BEST_OF), 3, H, W]
    seeds: list[int]  # each sample's seed
    features: torch.Tensor  # the round-1 reward's encoder features of the groups, [prompts, max(BEST_OF), D]
    heldout_features: torch.Tensor  # of the held-out bold digits


def _rounds(config: DemoConfig, seed: int, out: Path, target: Path, generator_dir: str, prompts: list[str]) -> dict:
    """The GAN-RM loop from the base, with DPO and with SFT: {method: its rounds' summaries}."""
    from ..post_training.rounds import RoundsConfig, run_rounds

    runs = {}
    for method, steps, lr in (("dpo", config.dpo_steps, config.dpo_lr), ("sft", config.sft_steps, config.sft_lr)):
        print(f"   seed {seed}: {config.rounds} rounds of {method.upper()}")
        runs[method] = run_rounds(RoundsConfig(
            generator=generator_dir, target=[str(target)], prompts=prompts, output=str(out / f"rounds-{method}"),
            rounds=config.rounds, method=method, n=config.n, repeats=config.repeats, steps=steps, lr=lr,
            negatives_per_prompt=config.negatives_per_prompt, pool_per_prompt=config.pool_per_prompt,
            beta=config.beta, probe_samples=config.probe_samples, seed=seed, cache_dir=config.cache_dir, progress=False))
    return runs


def _evaluation(config: DemoConfig, seed: int, generator_dir: str, prompts: list[str], reward) -> _Evaluation:
    from ..encoders.features import encode_tensors
    from ..generators import load_generator

    eval_prompts = [p for p in prompts for _ in range(config.eval_per_digit)]
    images, _, seeds = load_generator(generator_dir).generate_tensors(eval_prompts, max(BEST_OF),
                                                                     900_000_000 + seed * 1_000_000)
    groups = images.view(len(eval_prompts), max(BEST_OF), *images.shape[1:])
    features = encode_tensors(reward.encoder, images).view(len(eval_prompts), max(BEST_OF), -1)
    eval_images, _ = real_digits("evaluation")
    heldout_rgb = torch.from_numpy(eval_images[bold_indices("evaluation", config.look)]).unsqueeze(1).expand(-1, 3, -1, -1)
    return _Evaluation(eval_prompts, groups, seeds, features, encode_tensors(reward.encoder, heldout_rgb))


def _judged_rows(evaluation: _Evaluation, scores: torch.Tensor, runs: dict, grpo_dir: Path | None,
                 refs: References, base_row: dict) -> tuple[dict, dict, dict]:
    """(rows, Best-of-N by N, samples): every generator judged on the same prompts and seeds; `base_row` is the
    base's first sample of each group, judged."""
    from ..generators import load_generator

    prompts, groups = evaluation.prompts, evaluation.groups
    samples = {"base": groups[:, 0]}
    best_of = {1: base_row}  # Best-of-1 is the first sample of each group: the base row
    for n in BEST_OF[1:]:
        chosen = groups[torch.arange(len(prompts)), scores[:, :n].argmax(dim=1)]
        best_of[n] = judge(chosen, prompts, refs)
        if n in (4, 16):
            samples[f"Best-of-{n}"] = chosen
    rows = {"base": best_of[1], "Best-of-4": best_of[4], "Best-of-16": best_of[16]}
    tuned = {f"{method.upper()} round {info['round']}": info["next_generator"]
             for method in ("sft", "dpo") for info in runs[method]}
    if grpo_dir is not None:
        tuned["GRPO"] = str(grpo_dir)
    for name, generator in tuned.items():
        samples[name] = load_generator(generator).generate_from_seeds(prompts, evaluation.seeds[:: max(BEST_OF)])
        rows[name] = judge(samples[name], prompts, refs)
    return rows, best_of, samples


def _target_sizes(config: DemoConfig, seed: int, out: Path, evaluation: _Evaluation, refs: References) -> dict:
    """Reward models on growing target sets: their honest AUC and what Best-of-16 gains with each."""
    from ..rewards.discriminative import RewardTrainingConfig, train_reward_model

    print(f"   seed {seed}: reward models on {', '.join(map(str, config.target_sizes))} target images")
    prompts, groups, features = evaluation.prompts, evaluation.groups, evaluation.features
    sizes = {}
    for size in config.target_sizes:
        subset = write_digits_folder(out / "target-size" / f"{size}" / "target", "train", _target_indices(config)[:size])
        rm, metrics = train_reward_model(RewardTrainingConfig(
            target=[str(subset)], generated=[str(out / "rounds-dpo" / "round-1" / "negatives")],
            output=str(out / "target-size" / f"{size}" / "rm"), seed=seed + 1, cache_dir=config.cache_dir, progress=False))
        chosen = groups[torch.arange(len(prompts)), rm.score_features(features[:, :16].flatten(0, 1)).view(-1, 16).argmax(1)]
        sizes[size] = {"heldout_auc": _honest_auc(rm, features[:, 0], evaluation.heldout_features),
                       "test_split_auc": metrics["heldout"]["auc"],
                       "best_of_16_ink_gain": judge(chosen, prompts, refs)["ink"] - refs.base_ink}
    return sizes


def _probes(config: DemoConfig, seed: int, runs: dict, evaluation: _Evaluation) -> dict:
    """Every round's reward model against the probes, as percentiles among held-out target scores."""
    from ..rewards.discriminative import DiscriminativeRewardModel
    from ..rewards.probes import probe_report

    probes = {}
    for method in ("sft", "dpo"):
        for info in runs[method]:
            rm = DiscriminativeRewardModel.from_pretrained(info["reward_model"], backend="auto", cache_dir=config.cache_dir)
            probes[f"{method}-round-{info['round']}"] = probe_report(rm, rm.score_features(evaluation.heldout_features),
                                                                     evaluation.groups[: config.probe_starts, 0], seed)
    return probes


def run_seed(config: DemoConfig, seed: int, out: Path, target: Path, refs: References, generator_dir: str) -> dict:
    """One seed of the demo: the rounds, GRPO, every generator judged, the target-size study, the probes."""
    from ..rewards.discriminative import DiscriminativeRewardModel

    prompts = [digit_prompt(d) for d in range(10)]
    runs = _rounds(config, seed, out, target, generator_dir, prompts)
    grpo = _grpo(config, seed, out, generator_dir, prompts) if config.grpo_steps else None
    print(f"   seed {seed}: sampling and judging every generator on the same prompts and seeds")
    reward = DiscriminativeRewardModel.from_pretrained(out / "rounds-dpo" / "round-1" / "rm", backend="auto",
                                                       cache_dir=config.cache_dir)
    evaluation = _evaluation(config, seed, generator_dir, prompts, reward)
    base_row = judge(evaluation.groups[:, 0], evaluation.prompts, refs)  # its own baseline: moved toward target 0
    refs = dataclasses.replace(refs, base_ink=base_row["ink"])
    scores = reward.score_features(evaluation.features.flatten(0, 1)).view(len(evaluation.prompts), -1)
    rows, best_of, samples = _judged_rows(evaluation, scores, runs, out / "grpo" if grpo is not None else None, refs,
                                          base_row)
    return {"seed": seed, "rows": rows, "best_of_n": {str(n): best_of[n] for n in BEST_OF},
            "target_sizes": _target_sizes(config, seed, out, evaluation, refs),
            "reward_heldout_auc": _honest_auc(reward, evaluation.features[:, 0], evaluation.heldout_features),
            "probes": _probes(config, seed, runs, evaluation), "rounds": runs, "grpo": grpo, "samples": samples,
            "scores": {"heldout_target": reward.score_features(evaluation.heldout_features).tolist(),
                       "base": scores[:, 0].tolist()}}


def _grpo(config: DemoConfig, seed: int, out: Path, generator_dir: str, prompts: list[str]) -> dict:
    from ..evaluation.generation import digit_accuracy

    def judged(images: torch.Tensor, step_prompts: list[str]) -> dict:
        return {"ink": float(ink(images.numpy()).mean()), "accuracy": digit_accuracy(images, step_prompts)}

    return demo_grpo(out, generator_dir, prompts, seed, judged, ("ink", "accuracy"), steps=config.grpo_steps,
                     lr=config.grpo_lr, beta=config.grpo_beta)


def demo_grpo(out: Path, generator_dir: str, prompts: list[str], seed: int, judged, measures: tuple[str, ...],
              **settings) -> dict:
    """GRPO (GRPOConfig `settings`) from the base against the round-1 DPO reward model, into out/grpo; every step
    also logs the `measures` of `judged(samples, prompts)`, the judges' own, on the training samples: a curve, not
    the table's row."""
    from ..post_training import GRPOConfig, run_grpo

    print(f"   seed {seed}: {settings['steps']} GRPO steps against the round-1 reward model")
    metrics = run_grpo(GRPOConfig(generator=generator_dir, reward=[str(out / "rounds-dpo" / "round-1" / "rm")],
                                  prompts=prompts, output=str(out / "grpo"), seed=seed, progress=False, **settings),
                       watch=judged)
    keys = ("step", *measures, "reward_mean_all", "reward_group_std")
    return {"stopped": metrics["stopped"], "seconds_per_step": metrics["seconds_per_step"],
            "curve": [{k: row[k] for k in keys} for row in metrics["history"]]}


def _target_indices(config: DemoConfig) -> np.ndarray:
    bold = np.random.default_rng(0).permutation(bold_indices("train", config.look))
    if config.n_target > len(bold) or max(config.target_sizes) > len(bold):
        raise VisrewardError(f"--n-target/--target-sizes: only {len(bold)} training digits have the top-{config.look:.0%} look")
    return bold


def seed_table(per_seed: list[dict], key: str) -> dict:
    """run[key][name][measure] of every seed's run -> {name: {measure: [mean, sd]}}."""
    return {name: {m: mean_sd([run[key][name][m] for run in per_seed]) for m in per_seed[0][key][name]}
            for name in per_seed[0][key]}


def summarise(per_seed: list[dict]) -> dict:
    """Every judged number as [mean, sd] over seeds."""
    return {**{key: seed_table(per_seed, key) for key in ("rows", "best_of_n", "target_sizes")},
            "reward_heldout_auc": mean_sd([run["reward_heldout_auc"] for run in per_seed]),
            "probes": {model: {probe: mean_sd([run["probes"][model][probe]["percentile"] for run in per_seed])
                               for probe in per_seed[0]["probes"][model]} for model in per_seed[0]["probes"]}}


def format_table(rows: dict, refs: dict) -> str:
    def cell(value: tuple[float, float], digits: int) -> str:
        return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"

    lines = [f"| generator | ink mass (target {refs['target_ink']:.2f}) | moved toward target | digit accuracy | "
             f"Fréchet dist. to held-out target (pixels) ↓ | diversity (pixels) | nearest-target dist. "
             f"(held-out target: {refs['heldout_nearest']:.2f}) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {cell(r['ink'], 2)} | {cell(r['toward_target'], 2)} | {cell(r['accuracy'], 3)} | "
                     f"{cell(r['frechet'], 2)} | {cell(r['diversity'], 3)} | {cell(r['nearest_target'], 3)} |")
    return "\n".join(lines)


def prepare_run(config, bundled: str) -> tuple[Path, str]:
    """The run folder (with demo_config.json) and the base generator's folder: config.generator, or the
    `bundled` generator when it names it (trained on first use, then cached)."""
    from ..generators.bundled import bundled_generator_dir, load_bundled_generator

    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "demo_config.json")
    print(f"1/3 base generator (the bundled {bundled} one trains on the first run, then is cached)")
    if config.generator != bundled:
        return out, config.generator
    load_bundled_generator(config.cache_dir, name=bundled)
    return out, str(bundled_generator_dir(config.cache_dir, bundled))


def write_metrics(out: Path, reference: dict, summary: dict, per_seed: list[dict], started: float) -> dict:
    """demo_metrics.json: the run's config, its references, the summary and every seed's numbers (not its samples)."""
    results = {"config": json.loads((out / "demo_config.json").read_text()), "reference": reference, **summary,
               "per_seed": [{k: v for k, v in run.items() if k != "samples"} for run in per_seed],
               "seconds": time.time() - started}
    write_text(out / "demo_metrics.json", json.dumps(results, indent=2) + "\n")
    return results


def run_demo(config: DemoConfig) -> dict:
    from .report import save_sample_grids, write_report

    started = time.time()
    out, generator_dir = prepare_run(config, "digits")
    indices = _target_indices(config)[: config.n_target]
    target = write_digits_folder(out / "target", "train", indices)
    refs = _references(indices, config.look)

    print(f"2/3 {config.seeds} seed(s): GAN-RM loop, Best-of-N, target-set sizes, judges, probes")
    per_seed, seeds_started = [], time.time()
    for done, seed in enumerate(range(config.seed, config.seed + config.seeds), start=1):
        per_seed.append(run_seed(config, seed, out / f"seed-{seed}", target, refs, generator_dir))
        print("   " + time_left("seed", done, config.seeds, seeds_started))
    print("3/3 report")
    labels = real_digits("train")[1][indices]
    per_digit = [np.flatnonzero(labels == d) for d in range(10)]
    examples = [int(rows[j % len(rows)]) for j in range(4) for rows in per_digit]  # one digit per column
    save_sample_grids(per_seed[0]["samples"], refs.target[examples].reshape(-1, 1, 8, 8).expand(-1, 3, -1, -1),
                      config.eval_per_digit, out / "assets")
    summary = summarise(per_seed)
    reference = {"target_ink": refs.target_ink, "heldout_nearest": refs.heldout_nearest,
                 "judges": "pixel space of 8-bit 8x8 digits and an SVM trained on the held-out evaluation split"}
    results = write_metrics(out, reference, summary, per_seed, started)
    write_report(out)
    print()
    print(format_table(summary["rows"], reference))
    print(f"\n{config.seeds} seed(s), {10 * config.eval_per_digit} samples per row and seed. Best-of-N ink by N: "
          + ", ".join(f"{n}: {summary['best_of_n'][str(n)]['ink'][0]:.2f}" for n in BEST_OF))
    print("target-set size -> held-out AUC, Best-of-16 ink gain: " + ", ".join(
        f"{size}: {v['heldout_auc'][0]:.3f}, {v['best_of_16_ink_gain'][0]:+.2f}" for size, v in summary["target_sizes"].items()))
    print(f"\nreport: {out / 'report.html'}   metrics: {out / 'demo_metrics.json'}   ({results['seconds']:.0f}s)")
    return results
