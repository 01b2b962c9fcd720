"""`make demo`: GAN-RM end to end on the bundled digits generator and real digits.

1. load (or train once and cache) the bundled class-conditional diffusion generator;
2. write real target digits (the `reward` split, never seen by the generator) and the
   generator's ordinary outputs as imagefolders, plus an unlabeled pool for bootstrapping;
3. train the reward model (frozen EfficientNet-Lite0 + MLP head, one bootstrap round);
4. evaluate on held-out real digits vs fresh generator samples and print the figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import write_text
from .config import option, save_config
from .digits_data import digit_image, digit_prompt, real_digits
from .generators import GeneratedSample, load_bundled_generator, save_samples


@dataclass
class DemoConfig:
    output: str = option("demo_out", "folder for the demo's images, reward model and metrics")
    n_target: int = option(400, "real target digits the reward model trains on")
    n_heldout: int = option(100, "held-out real digits, and as many fresh generated ones, for evaluation")
    n_generated: int = option(400, "generator outputs the reward model trains on")
    n_unlabeled: int = option(200, "further generator outputs ranked for bootstrapping")
    seed: int = option(0, "seed for sampling and training")
    cache_dir: str | None = option(None, "cache for features and the bundled generator")


def _write_real(images: np.ndarray, labels: np.ndarray, folder: Path) -> None:
    samples = [GeneratedSample(digit_image(image), digit_prompt(int(label)), -1) for image, label in zip(images, labels)]
    save_samples(samples, folder)


def _sample(generator, n: int, seed: int, folder: Path) -> None:
    per_digit = max(1, n // 10)
    save_samples(generator.generate([digit_prompt(d) for d in range(10)], per_digit, seed), folder)


def _histogram(values: list[float], lo: float, hi: float, bins: int = 12, width: int = 30) -> list[str]:
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = max(counts.max(), 1)
    return [f"{edges[i]:+7.2f} {'#' * round(width * c / top):<{width}} {c}" for i, c in enumerate(counts)]


def run_demo(config: DemoConfig) -> dict:
    from .discriminative import DiscriminativeRewardModel, RewardTrainingConfig, train_reward_model
    from .evaluation.evaluate import EvalConfig, evaluate_reward_model
    from .images import SkipLog

    started = time.time()
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "demo_config.json")

    print("1/4 bundled generator (trained on the first run, then cached)")
    generator = load_bundled_generator(config.cache_dir)

    print("2/4 writing real target digits and generator samples")
    images, labels = real_digits("reward")
    if config.n_target + config.n_heldout > len(images):
        raise ValueError(f"the reward split has {len(images)} digits; n_target + n_heldout must not exceed it")
    _write_real(images[: config.n_target], labels[: config.n_target], out / "target")
    _write_real(images[config.n_target : config.n_target + config.n_heldout],
                labels[config.n_target : config.n_target + config.n_heldout], out / "heldout_target")
    # Disjoint seed ranges: training, bootstrapping pool and held-out samples never share a seed.
    _sample(generator, config.n_generated, config.seed, out / "generated")
    _sample(generator, config.n_unlabeled, config.seed + 1_000_000, out / "unlabeled")
    _sample(generator, config.n_heldout, config.seed + 2_000_000, out / "heldout_generated")

    print("3/4 training the reward model")
    training = RewardTrainingConfig(
        target=[str(out / "target")], generated=[str(out / "generated")], unlabeled=[str(out / "unlabeled")],
        output=str(out / "rm"), seed=config.seed, cache_dir=config.cache_dir, bootstrap_rounds=1,
    )
    _, train_metrics = train_reward_model(training)

    print("4/4 evaluating on held-out real digits vs fresh generator samples")
    model = DiscriminativeRewardModel.from_pretrained(out / "rm")
    evaluation, target_scores, generated_scores = evaluate_reward_model(
        model, EvalConfig(target=[str(out / "heldout_target")], generated=[str(out / "heldout_generated")],
                          cache_dir=config.cache_dir),
        SkipLog(strict=True),
    )
    results = {"training": {k: v for k, v in train_metrics.items() if k != "rounds"},
               "bootstrap_rounds": [{k: v for k, v in r.items() if k != "history"} for r in train_metrics["rounds"]],
               "evaluation": {k: v for k, v in evaluation.items() if k != "roc"},
               "seconds": time.time() - started}
    write_text(out / "demo_metrics.json", json.dumps(results, indent=2) + "\n")

    print()
    for r in train_metrics["rounds"]:
        held = r["heldout"]
        print(f"round {r['round']}: {r['n_train']} training images, split held-out AUC {held['auc']:.4f}, "
              f"accuracy {held['accuracy']:.4f}, head trained in {r['head_seconds']:.2f}s")
    print(f"independent held-out set: AUC {evaluation['auc']:.4f}, accuracy {evaluation['accuracy']:.4f} "
          f"({evaluation['n_positive']} real, {evaluation['n_negative']} generated)")
    print("\nreward (logit) distribution on the held-out set:")
    print(f"{'':10s} {'mean':>7s} {'std':>6s} {'p5':>7s} {'p50':>7s} {'p95':>7s}")
    for side, name in (("target", "real"), ("generated", "generated")):
        s = evaluation[f"{side}_scores"]
        print(f"{name:10s} {s['mean']:+7.2f} {s['std']:6.2f} {s['p5']:+7.2f} {s['p50']:+7.2f} {s['p95']:+7.2f}")
    target_scores, generated_scores = target_scores.tolist(), generated_scores.tolist()
    lo, hi = min(target_scores + generated_scores), max(target_scores + generated_scores)
    for name, values in (("real", target_scores), ("generated", generated_scores)):
        print(f"\n{name} digits:")
        print("\n".join(_histogram(values, lo, hi)))
    print(f"\nreward model: {out / 'rm'}/   metrics: {out / 'demo_metrics.json'}   ({results['seconds']:.0f}s)")
    return results
