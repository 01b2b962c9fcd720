"""The `visreward` command. Each subcommand's options are generated from its config dataclass.

    visreward train-rm --target TARGET_DIR --generated GENERATED_DIR --output rm/
    visreward score --model rm/ --output scores.parquet IMAGES_OR_DIRS...
    visreward merge-scores scores_parts/ --output scores.parquet
    visreward eval-rm --model rm/ --target HELDOUT_TARGET --generated HELDOUT_GENERATED
    visreward train-generator --data IMAGEFOLDER --output GEN_DIR [--resolution 16]
    visreward generate --prompts "a handwritten digit 7" --n 8 --output samples/
    visreward best-of-n --generator digits --reward rm/ --prompts prompts.txt --n 16 --output bon/
    visreward make-pairs --scores bon/scores.parquet --output pairs/ --format trl|pickapic
    visreward sft --generator digits --data bon/ --output gen-sft/ [--lora]
    visreward dpo --generator digits --pairs pairs/ --output gen-dpo/ [--lora --beta 1000]
    visreward refl --generator digits --reward rm/ --prompts prompts.txt --output gen-refl/
    visreward grpo --generator digits --reward rm/ --prompts prompts.txt --output gen-grpo/ [--lora]
    visreward train-vlm --output vlm/ [--data CAPTIONED_DIR] [--size 16x]
    visreward train-vlm-rm --model PATH_OR_ID --pairs pairs/ --output vlm-rm/ [--lora] [--cot decision-first]
    visreward score --model vlm:PATH_OR_ID --output scores.parquet IMAGES...
    visreward rounds --generator digits --target TARGET_DIR --prompts prompts.txt --rounds 3 --method dpo --output run/
    visreward serve --reward rm=rm/ --reward judge=vlm:PATH:0.5 --port 8000
    visreward demo [--video | --judges]
    visreward report demo_out
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core.config import add_config_arguments, config_from_args
from .core.errors import VisrewardError


def _train_rm(config) -> None:
    from .rewards.discriminative import train_reward_model

    model, metrics = train_reward_model(config)
    kind = "clips" if hasattr(model.encoder, "sampling") else "images"
    held = metrics["heldout"]
    if held:
        print(f"held-out AUC {held['auc']:.4f}  accuracy {held['accuracy']:.4f}  "
              f"({held['n_positive']} target, {held['n_negative']} generated)")
    print(f"trained on {metrics['n_target']} target, {metrics['n_generated']} generated, "
          f"{metrics['n_unlabeled']} unlabeled {kind} in {metrics['seconds']:.1f}s; wrote {config.output}/")
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
        print(run.skipped.summary(f"{run.output}.skipped.txt" if run.output.suffix == ".parquet" else f"{run.output}/*.skipped.txt"))


def _merge_scores(config) -> None:
    from .scoring import merge_parts

    rows = merge_parts(Path(config.parts), Path(config.output))
    print(f"merged {rows} scores into {config.output}")


def _eval_rm(config) -> None:
    from .io.images import SkipLog
    from .rewards.discriminative import DiscriminativeRewardModel
    from .scoring.evaluate import evaluate_reward_model

    model = DiscriminativeRewardModel.from_pretrained(config.model, device=config.device)
    skipped = SkipLog(strict=config.strict)
    metrics, _, _ = evaluate_reward_model(model, config, skipped)
    print(f"AUC {metrics['auc']:.4f}  accuracy {metrics['accuracy']:.4f}  "
          f"({metrics['n_positive']} target, {metrics['n_negative']} generated)")
    for side in ("target", "generated"):
        s = metrics[f"{side}_scores"]
        print(f"  {side:9s} score mean {s['mean']:+.3f}  std {s['std']:.3f}  median {s['p50']:+.3f}")
    for name, probe in metrics.get("probes", {}).items():
        print(f"  probe {name:16s} max score {probe['max_score']:+8.2f}  above {probe['percentile']:5.1f}% of target images")
    if len(skipped):
        print(skipped.summary())
    if config.output:
        from .core.atomic import write_text

        write_text(config.output, json.dumps(metrics, indent=2) + "\n")


def _generate(config) -> None:
    from .generators import load_generator, save_samples
    from .io.prompts import read_prompt_images, read_prompts

    generator = load_generator(config.generator).condition_on(read_prompt_images(config.prompts))
    samples = generator.generate(read_prompts(config.prompts), config.n, config.seed)
    save_samples(samples, config.output)
    print(f"wrote {len(samples)} samples to {config.output}/")


def _train_generator(config) -> None:
    from .generators import train_generator

    generator = train_generator(config)
    print(f"{len(generator.prompts)} prompts, {generator.resolution[0]}px, {generator.channels} channel(s); wrote {config.output}/ "
          f"(use it as --generator {config.output})")


def _best_of_n(config) -> None:
    from .post_training import run_best_of_n

    result = run_best_of_n(config)
    print(f"{result['samples']} samples in {result['groups']} groups: mean reward {result['mean_score']:+.3f}, "
          f"mean best-of-{config.n} reward {result['mean_best_score']:+.3f}; wrote {config.output}/")
    total = result["generation_seconds"] + result["reward_seconds"]
    print(f"generating {result['generation_seconds']:.1f} s, scoring {result['reward_seconds']:.1f} s "
          f"({result['reward_seconds'] / max(total, 1e-9):.1%} of the two)")


def _make_pairs(config) -> None:
    from .post_training import run_make_pairs

    print(f"wrote {run_make_pairs(config)} pairs ({config.format}) to {config.output}/")


def _finetune_summary(metrics: dict, output: str) -> None:
    last = metrics["history"][-1] if metrics["history"] else {}
    details = "  ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step")
    print(f"{metrics['steps']} steps on {metrics['world_size']} process(es), "
          f"{metrics['seconds_per_step']:.2f} s/step; last: {details}\nwrote {output}/generator/")
    if metrics.get("stopped"):
        stopped = metrics["stopped"]
        print(f"stopped early at step {stopped['step']}: {stopped['reason']}; {output}/generator/ holds the weights of "
              f"step {stopped['kept_weights_of_step']}")


def _sft(config) -> None:
    from .post_training import run_sft

    _finetune_summary(run_sft(config), config.output)


def _dpo(config) -> None:
    from .post_training import run_dpo

    _finetune_summary(run_dpo(config), config.output)


def _refl(config) -> None:
    from .post_training import run_refl

    _finetune_summary(run_refl(config), config.output)


def _grpo(config) -> None:
    from .post_training import run_grpo

    _finetune_summary(run_grpo(config), config.output)


def _train_vlm(config) -> None:
    from .rewards.generative.pretraining import pretrain_vlm

    metrics = pretrain_vlm(config)
    before, after = metrics["before"], metrics["after"]
    line = (f"{metrics['size']} ({metrics['parameters']:,} parameters): held-out caption loss "
            f"{before['heldout_caption_loss']:.3f} -> {after['heldout_caption_loss']:.3f}")
    if "digit_accuracy" in after:
        line += (f"; reads held-out digits {before['digit_accuracy']:.3f} -> {after['digit_accuracy']:.3f} (chance 0.1), "
                 f"stroke weight {before['stroke_weight_accuracy']:.3f} -> {after['stroke_weight_accuracy']:.3f} (chance 0.33)")
    print(f"{line}; wrote {config.output}/")


def _train_vlm_rm(config) -> None:
    from .rewards.generative import train_vlm_reward_model

    metrics = train_vlm_reward_model(config)
    curve = " -> ".join(f"{h['heldout_pairwise_accuracy']:.3f}" for h in metrics["history"])
    print(f"{metrics['method']}: held-out pairwise accuracy by epoch {curve} ({metrics['n_heldout']} pairs, chance 0.5); "
          f"wrote {config.output}/")


def _rounds(config) -> None:
    from .post_training import run_rounds

    for info in run_rounds(config):
        print(f"round {info['round']}: reward model held-out AUC {info['rm_heldout']['auc']:.3f}, mean reward "
              f"{info['mean_reward']:+.3f}, mean best-of-{config.n} {info['mean_best_reward']:+.3f} -> {info['next_generator']}")


def _report(config) -> None:
    from .miniature.report import write_report

    print(f"wrote {write_report(config.run)}")


def _serve(config) -> None:
    from .serving.server import serve

    serve(config)


def _demo(config) -> None:
    if getattr(config, "video", False):
        from .miniature.video_demo import run_video_demo

        run_video_demo(config)
    elif getattr(config, "judges", False):
        from .miniature.judges_demo import run_judges_demo

        run_judges_demo(config)
    else:
        from .miniature.image_demo import run_demo

        run_demo(config)


# name -> (its config class in core/options.py, runner, help). The options import no framework and each runner
# imports its own module, so `--help` is instant and a run imports only what its command needs
COMMANDS = {
    "train-rm": ("RewardTrainingConfig", _train_rm,
                 "train a GAN-RM reward model (target vs generated images)"),
    "score": ("ScoreConfig", _score, "score images with a reward model into a parquet table"),
    "merge-scores": ("MergeConfig", _merge_scores, "merge the parquet parts of a multi-process score run"),
    "eval-rm": ("EvalConfig", _eval_rm, "held-out AUC/accuracy of a reward model"),
    "generate": ("GenerateConfig", _generate, "sample a generator into an imagefolder (prompt and seed per image)"),
    "train-generator": ("GeneratorTrainingConfig", _train_generator,
                        "train the small conditional diffusion generator on an imagefolder"),
    "best-of-n": ("BestOfNConfig", _best_of_n, "sample N per prompt, keep the best by a reward model"),
    "make-pairs": ("PairsConfig", _make_pairs, "preference pairs (trl or Pick-a-Pic format) from a score table"),
    "sft": ("SFTConfig", _sft, "fine-tune a generator on selected samples"),
    "dpo": ("DPOConfig", _dpo, "Diffusion-DPO fine-tuning on preference pairs"),
    "refl": ("ReFLConfig", _refl,
             "reward-gradient fine-tuning (ReFL) through the last denoising step and decoder"),
    "grpo": ("GRPOConfig", _grpo, "online RL (GRPO): group-relative policy optimisation against any reward"),
    "train-vlm": ("VLMPretrainingConfig", _train_vlm,
                  "pretrain a small vision-language model from scratch on captioned images (a judge for train-vlm-rm)"),
    "train-vlm-rm": ("VLMTrainingConfig", _train_vlm_rm,
                     "train a vision-language judge (RewardDance) on preference pairs"),
    "rounds": ("RoundsConfig", _rounds,
               "the GAN-RM multi-round loop (reward model -> best-of-N -> SFT/DPO)"),
    "serve": ("ServeConfig", _serve,
              "serve reward models over HTTP to RL trainers (FastAPI; batched, combined, watched)"),
    "report": ("ReportConfig", _report, "write the self-contained HTML report of a demo run"),
    "demo": ("DemoConfig", _demo, "the whole GAN-RM pipeline on the bundled generator and real digits (--video: on "
                                  "the bundled moving-digits generator and clips; --judges: RewardDance's VLM judges "
                                  "against a gold preference)"),
}


def _config_class(command: str, argv: list[str]) -> type:
    """The command's config; `demo --video` has its own (other options, other defaults)."""
    from .core import options

    if command == "demo" and "--video" in argv and "--no-video" not in argv:
        return options.VideoDemoConfig
    if command == "demo" and "--judges" in argv and "--no-judges" not in argv:
        return options.JudgesDemoConfig
    return getattr(options, COMMANDS[command][0])


def _parser(command: str | None, argv: list[str]) -> argparse.ArgumentParser:
    """Every command listed; only `command` (the one being run) gets its options, from its config."""
    parser = argparse.ArgumentParser(prog="visreward", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_config_arguments(sub, _config_class(name, argv))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = _parser(command if command in COMMANDS else None, argv).parse_args(argv)
    _, run, _ = COMMANDS[args.command]
    try:
        config = config_from_args(_config_class(args.command, argv), args)
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
