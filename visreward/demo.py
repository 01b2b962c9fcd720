"""`make demo`: the GAN-RM paper in miniature, on the bundled digits generator and real digits.

1. the bundled class-conditional diffusion generator (trained on first use, then cached);
2. 400 real target digits from the `reward` split (the generator never saw them);
3. the GAN-RM loop twice from the same base generator, 2 rounds of SFT and 2 of DPO:
   each round trains a reward model on the targets vs fresh samples (with bootstrapping),
   takes best/worst of N per prompt group, fine-tunes;
4. every row evaluated on the same prompts and seeds: Frechet distance to held-out real
   digits (encoder features), an independent digit classifier's accuracy on the requested
   digit, mean reward under a fixed judge (the round-1 reward model, trained on base
   samples), and within-prompt diversity;
5. a table on stdout, demo_metrics.json, and report.html.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import write_text
from .config import option, save_config
from .digits_data import digit_image, digit_prompt, real_digits
from .errors import VisrewardError
from .generators import GeneratedSample, load_bundled_generator, load_generator, save_samples

JUDGE = "rounds-dpo/round-1/rm"


@dataclass
class DemoConfig:
    output: str = option("demo_out", "folder for images, reward models, generators, metrics and report.html")
    n_target: int = option(400, "real target digits (the `reward` split)")
    eval_per_digit: int = option(16, "evaluation samples per digit for every table row")
    rounds: int = option(2, "rounds of the GAN-RM loop, for SFT and for DPO")
    n: int = option(8, "best-of-N samples per group inside the loop")
    repeats: int = option(8, "best-of-N groups per digit per round (80 SFT images / DPO pairs per round)")
    steps: int = option(100, "fine-tuning steps per round")
    lr: float = option(1e-5, "fine-tuning learning rate")
    beta: float = option(5000.0, "DPO beta")
    seed: int = option(0, "base seed")
    cache_dir: str | None = option(None, "cache for features and the bundled generator")


def _write_targets(out: Path, n: int) -> Path:
    images, labels = real_digits("reward")
    if n > len(images):
        raise VisrewardError(f"--n-target {n}: the reward split has only {len(images)} real digits")
    samples = [GeneratedSample(digit_image(image), digit_prompt(int(label)), -1) for image, label in zip(images[:n], labels[:n])]
    return save_samples(samples, out / "target")


def _evaluate(images: torch.Tensor, prompts: list[str], judge, reference: torch.Tensor) -> tuple[dict, torch.Tensor]:
    from .evaluation.generation import digit_accuracy, frechet_distance, within_prompt_diversity
    from .features import encode_tensors

    features = encode_tensors(judge.encoder, images)
    scores = judge.score_features(features)
    return {"frechet_distance": frechet_distance(features, reference), "classifier_accuracy": digit_accuracy(images, prompts),
            "mean_reward": float(scores.mean()), "diversity": within_prompt_diversity(features, prompts)}, scores


def _table(rows: list[dict]) -> str:
    header = f"| {'generator':<14} | {'Frechet dist. (lower)':>21} | {'classifier acc.':>15} | {'mean reward':>11} | {'diversity':>9} |"
    lines = [header, "|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|"]
    for row in rows:
        lines.append(f"| {row['name']:<14} | {row['frechet_distance']:>21.2f} | {row['classifier_accuracy']:>15.3f} | "
                     f"{row['mean_reward']:>+11.3f} | {row['diversity']:>9.2f} |")
    return "\n".join(lines)


def run_demo(config: DemoConfig) -> dict:
    from .discriminative import DiscriminativeRewardModel
    from .evaluation.metrics import binary_metrics, score_summary
    from .features import encode_tensors
    from .post_training.best_of_n import sample_and_score
    from .post_training.rounds import RoundsConfig, run_rounds
    from .report import save_grid, write_report

    started = time.time()
    out = Path(config.output)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    save_config(config, out / "demo_config.json")

    print("1/4 bundled generator (trained on the first run, then cached)")
    base = load_bundled_generator(config.cache_dir)
    target = _write_targets(out, config.n_target)
    prompts = [digit_prompt(d) for d in range(10)]

    print(f"2/4 GAN-RM loop: {config.rounds} rounds of DPO, then {config.rounds} of SFT, from the same base generator")
    runs = {}
    for method in ("dpo", "sft"):
        runs[method] = run_rounds(RoundsConfig(
            generator="digits", target=[str(target)], prompts=prompts, output=str(out / f"rounds-{method}"),
            rounds=config.rounds, method=method, n=config.n, repeats=config.repeats, steps=config.steps, lr=config.lr,
            beta=config.beta, seed=config.seed, cache_dir=config.cache_dir, progress=False))
        for info in runs[method]:
            print(f"   {method} round {info['round']}: reward model held-out AUC {info['rm_heldout']['auc']:.3f}, "
                  f"mean best-of-{config.n} reward {info['mean_best_reward']:+.2f}")

    print("3/4 evaluating every generator on the same prompts and seeds")
    judge = DiscriminativeRewardModel.from_pretrained(out / JUDGE, backend="auto", cache_dir=config.cache_dir)
    real_images, real_labels = real_digits("evaluation")
    real = torch.from_numpy(real_images).unsqueeze(1).expand(-1, 3, -1, -1)
    reference = encode_tensors(judge.encoder, real)
    eval_prompts = [p for p in prompts for _ in range(config.eval_per_digit)]
    eval_seed = config.seed + 900_000_000
    rows, grids = [], {}

    images16, _, seeds16, scores16 = sample_and_score(base, judge, eval_prompts, 16, eval_seed)
    groups = images16.view(len(eval_prompts), 16, *images16.shape[1:])
    group_scores = scores16.view(len(eval_prompts), 16)
    base_images = groups[:, 0]
    row, base_scores = _evaluate(base_images, eval_prompts, judge, reference)
    rows.append({"name": "base", **row})
    grids["base"] = base_images
    for n in (4, 16):
        best = group_scores[:, :n].argmax(dim=1)
        chosen = groups[torch.arange(len(eval_prompts)), best]
        rows.append({"name": f"Best-of-{n}", **_evaluate(chosen, eval_prompts, judge, reference)[0]})
        grids[f"best-of-{n}"] = chosen
    # the same first seed of each group as the base row, for side-by-side grids
    first_seeds = seeds16[::16]
    for method, name in (("sft", "SFT"), ("dpo", "DPO")):
        for info in runs[method]:
            tuned = load_generator(info["next_generator"])
            images = tuned.generate_from_seeds(eval_prompts, first_seeds)
            rows.append({"name": f"{name} round {info['round']}", **_evaluate(images, eval_prompts, judge, reference)[0]})
            grids[f"{method}-round-{info['round']}"] = images

    print("4/4 report")
    shown = list(range(0, len(eval_prompts), config.eval_per_digit))[:10]
    for name, images in grids.items():
        # row j holds the j-th sample of every digit: one digit per column
        save_grid(images[[i + j for j in range(4) for i in shown]], 10, out / "assets" / f"grid-{name}.png")
    order = torch.argsort(scores16, descending=True)
    save_grid(images16[order[:40]], 4, out / "assets" / "highest-scored.png")
    save_grid(images16[order[-40:]], 4, out / "assets" / "lowest-scored.png")
    real_scores = judge.score_features(reference)
    results = {
        "rows": rows,
        "judge": JUDGE,
        "judge_on_evaluation_split": {k: v for k, v in binary_metrics(real_scores, base_scores, curve=True).items()},
        "histograms": {"real": real_scores.tolist(), "generated": base_scores.tolist()},
        "rounds": runs,
        "seconds": time.time() - started,
    }
    write_text(out / "demo_metrics.json", json.dumps(results, indent=2) + "\n")
    write_report(out)

    print()
    print(_table(rows))
    judged = results["judge_on_evaluation_split"]
    print(f"\njudge (round-1 reward model) on held-out real vs base samples: AUC {judged['auc']:.3f}, "
          f"accuracy {judged['accuracy']:.3f}; reward (logit) distribution:")
    print(f"{'':18s} {'mean':>7s} {'std':>6s} {'p5':>7s} {'p50':>7s} {'p95':>7s}")
    for name, values in (("held-out real", real_scores), ("base generated", base_scores)):
        q = score_summary(values)
        print(f"{name:18s} {q['mean']:+7.2f} {q['std']:6.2f} {q['p5']:+7.2f} {q['p50']:+7.2f} {q['p95']:+7.2f}")
    print(f"{len(eval_prompts)} samples per row; Frechet distance in {judge.encoder.name} feature space vs "
          f"{len(real)} held-out real digits; diversity = mean pairwise feature distance within a digit")
    print(f"\nreport: {out / 'report.html'}   metrics: {out / 'demo_metrics.json'}   ({results['seconds']:.0f}s)")
    return results
