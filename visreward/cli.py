"""The `visreward` command. Each subcommand's options are generated from its config dataclass.

    visreward train-rm --target TARGET_DIR --generated GENERATED_DIR --output rm/
    visreward score --model rm/ --output scores.parquet IMAGES_OR_DIRS...
    visreward merge-scores scores_parts/ --output scores.parquet
    visreward eval-rm --model rm/ --target HELDOUT_TARGET --generated HELDOUT_GENERATED
    visreward generate --prompts "a handwritten digit 7" --n 8 --output samples/
    visreward demo
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import add_config_arguments, config_from_args, option
from .errors import VisrewardError


def _train_rm(config) -> None:
    from .discriminative import train_reward_model

    _, metrics = train_reward_model(config)
    held = metrics["heldout"]
    if held:
        print(f"held-out AUC {held['auc']:.4f}  accuracy {held['accuracy']:.4f}  "
              f"({held['n_positive']} target, {held['n_negative']} generated)")
    print(f"trained on {metrics['n_target']} target, {metrics['n_generated']} generated, "
          f"{metrics['n_unlabeled']} unlabeled images in {metrics['seconds']:.1f}s; wrote {config.output}/")
    if metrics["n_skipped"]:
        print(f"skipped {metrics['n_skipped']} unreadable file(s); list in {config.output}/skipped.txt")


def _score(config) -> None:
    from .scoring import run_score

    run = run_score(config)
    resumed = f" ({run.shards_resumed} shard(s) already done, skipped)" if run.shards_resumed else ""
    print(f"wrote {run.rows} scores to {run.output}{resumed}")
    if run.output.is_dir() and config.output.endswith(".parquet"):
        print(f"other processes may still be writing: merge with `visreward merge-scores {run.output} --output {config.output}`")
    if len(run.skipped):
        print(run.skipped.summary(f"{run.output}.skipped.txt" if run.output.suffix == ".parquet" else f"{run.output}/part-*.skipped.txt"))


def _merge_scores(config) -> None:
    from .scoring import merge_parts

    rows = merge_parts(Path(config.parts), Path(config.output))
    print(f"merged {rows} scores into {config.output}")


def _eval_rm(config) -> None:
    from .discriminative import DiscriminativeRewardModel
    from .evaluation.evaluate import evaluate_reward_model
    from .images import SkipLog

    model = DiscriminativeRewardModel.from_pretrained(config.model, device=config.device)
    skipped = SkipLog(strict=config.strict)
    metrics, _, _ = evaluate_reward_model(model, config, skipped)
    print(f"AUC {metrics['auc']:.4f}  accuracy {metrics['accuracy']:.4f}  "
          f"({metrics['n_positive']} target, {metrics['n_negative']} generated)")
    for side in ("target", "generated"):
        s = metrics[f"{side}_scores"]
        print(f"  {side:9s} score mean {s['mean']:+.3f}  std {s['std']:.3f}  median {s['p50']:+.3f}")
    if len(skipped):
        print(skipped.summary())
    if config.output:
        from .atomic import write_text

        write_text(config.output, json.dumps(metrics, indent=2) + "\n")


@dataclass
class GenerateConfig:
    prompts: list[str] = option([], "prompts, or one .txt file with a prompt per line")
    output: str = option("samples", "imagefolder written (PNG + metadata.jsonl with prompt and seed)")
    generator: str = option("digits", "'digits' (the bundled generator, trained and cached on first use) or its folder")
    n: int = option(1, "samples per prompt")
    seed: int = option(0, "sample k uses seed + k")


def read_prompts(values: list[str]) -> list[str]:
    if len(values) == 1 and values[0].endswith(".txt"):
        path = Path(values[0])
        if not path.is_file():
            raise VisrewardError(f"{path}: no such prompts file")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not prompts:
            raise VisrewardError(f"{path}: no prompts in the file")
        return prompts
    if not values:
        raise VisrewardError("no prompts given (--prompts)")
    return values


def _generate(config) -> None:
    from .generators import DigitsGenerator, load_bundled_generator, save_samples

    generator = load_bundled_generator() if config.generator == "digits" else DigitsGenerator.from_pretrained(config.generator)
    samples = generator.generate(read_prompts(config.prompts), config.n, config.seed)
    save_samples(samples, config.output)
    print(f"wrote {len(samples)} samples to {config.output}/")


def _demo(config) -> None:
    from .demo import run_demo

    run_demo(config)


def _commands():
    from .demo import DemoConfig
    from .discriminative import RewardTrainingConfig
    from .evaluation.evaluate import EvalConfig
    from .scoring import MergeConfig, ScoreConfig

    return {
        "train-rm": (RewardTrainingConfig, _train_rm, "train a GAN-RM reward model (target vs generated images)"),
        "score": (ScoreConfig, _score, "score images with a reward model into a parquet table"),
        "merge-scores": (MergeConfig, _merge_scores, "merge the parquet parts of a multi-process score run"),
        "eval-rm": (EvalConfig, _eval_rm, "held-out AUC/accuracy of a reward model"),
        "generate": (GenerateConfig, _generate, "sample the bundled digits generator into an imagefolder"),
        "demo": (DemoConfig, _demo, "the whole GAN-RM pipeline on the bundled generator and real digits"),
    }


def main(argv: list[str] | None = None) -> int:
    commands = _commands()
    parser = argparse.ArgumentParser(prog="visreward", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (config_cls, _, help_text) in commands.items():
        add_config_arguments(subparsers.add_parser(name, help=help_text, description=help_text), config_cls)
    args = parser.parse_args(argv)
    config_cls, run, _ = commands[args.command]
    try:
        config = config_from_args(config_cls, args)
        run(config)
    except VisrewardError as e:
        print(f"visreward: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("visreward: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
