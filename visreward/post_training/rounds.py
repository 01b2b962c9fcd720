"""The GAN-RM multi-round loop.

    visreward rounds --generator digits --target TARGET_DIR --prompts prompts.txt --rounds 3 --method dpo --output run/

Round t, starting from generator G_t:
  1. negatives/ and pool/: fresh samples of G_t (seeds never reused across rounds or steps)
  2. rm/:         GAN-RM trained on the fixed target set vs negatives/, bootstrapped on pool/
  3. bon/:        N samples per prompt group scored by rm/, best and worst kept
  4. pairs/:      best vs worst per group (trl format)
  5. finetune/:   SFT on bon/best or Diffusion-DPO on pairs/ (reference = G_t) -> G_{t+1}
A round whose fine-tuning monitors fired (see monitors.py) is not taken: the next round starts from the
last healthy generator, and rounds.json records why. Each step writes its own folder atomically and is
skipped when a rerun finds it complete,
so an interrupted run resumes at the last finished step (and fine-tuning at its checkpoint).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..core.atomic import recover_dir, write_text
from ..core.config import save_config
from ..core.options import RoundsConfig
from ..core.progress import time_left
from ..generators import load_generator, save_samples
from ..io.formats import read_table
from ..io.pairs import build_pairs, write_pairs
from ..io.prompts import read_prompts
from ..rewards.discriminative import RewardTrainingConfig, train_reward_model
from .best_of_n import BestOfNConfig, run_best_of_n
from .dpo import DPOConfig, run_dpo
from .sft import SFTConfig, run_sft

DEFAULT_LR = {"sft": 1e-5, "dpo": 2e-6}
DEFAULT_STEPS = {"sft": 50, "dpo": 100}
# SFT learns from the selected images alone: twice the selections keep its samples diverse enough that a
# second round still lowers the Frechet distance to held-out targets (three seeds: 0.59 -> 0.56; with 8, 0.59)
DEFAULT_REPEATS = {"sft": 16, "dpo": 8}
_SEED_STRIDE = 10_000_000  # seeds of different rounds and steps never overlap


def _done(folder: Path, marker: str) -> bool:
    recover_dir(folder)  # a crash while a step's folder was being replaced leaves the previous one at .NAME.old
    return (folder / marker).exists()


def _sample(folder: Path, generator_spec: str, prompts: list[str], seed: int, config: RoundsConfig) -> None:
    """The round's fresh samples of its generator: the reward model's negatives and its bootstrapping pool."""
    generator = None
    for name, per_prompt, offset in (("negatives", config.negatives_per_prompt, 0), ("pool", config.pool_per_prompt, 1)):
        if per_prompt and not _done(folder / name, "metadata.jsonl"):
            generator = generator or load_generator(generator_spec, device=config.device)
            save_samples(generator.generate(prompts, per_prompt, seed + offset * _SEED_STRIDE), folder / name)


def _reward_model(folder: Path, index: int, config: RoundsConfig) -> dict:
    """The round's reward model, the fixed targets against its samples (bootstrapped); its held-out metrics."""
    if not _done(folder / "rm", "metrics.json"):
        train_reward_model(RewardTrainingConfig(
            target=config.target, generated=[str(folder / "negatives")],
            unlabeled=[str(folder / "pool")] if config.pool_per_prompt else [], output=str(folder / "rm"),
            frames=config.frames, pooling=config.pooling,
            seed=config.seed + index, device=config.device, cache_dir=config.cache_dir, progress=config.progress))
    return json.loads((folder / "rm" / "metrics.json").read_text())["heldout"]


def _best_of_n(folder: Path, generator_spec: str, prompts: list[str], seed: int, config: RoundsConfig) -> list[dict]:
    """Best-of-N by the round's reward model (and its pairs, for DPO); the score table's rows."""
    if not _done(folder / "bon", "scores.parquet"):
        run_best_of_n(BestOfNConfig(
            generator=generator_spec, reward=str(folder / "rm"), prompts=prompts, output=str(folder / "bon"),
            n=config.n, repeats=config.repeats or DEFAULT_REPEATS[config.method], keep=config.keep, keep_bottom=1,
            seed=seed + 2 * _SEED_STRIDE, device=config.device, backend=config.backend, precision=config.precision,
            progress=config.progress))
    rows = read_table(folder / "bon" / "scores.parquet").to_pylist()
    if config.method == "dpo" and not _done(folder / "pairs", "metadata.jsonl"):
        write_pairs(build_pairs(rows, group_by="group"), folder / "pairs", "trl")
    return rows


def _finetune(folder: Path, generator_spec: str, index: int, config: RoundsConfig) -> dict:
    """SFT on the best samples or DPO on the pairs; the fine-tuning's metrics."""
    finetune_dir = folder / "finetune"
    if not _done(finetune_dir, "metrics.json"):
        lr = config.lr if config.lr is not None else DEFAULT_LR[config.method]
        steps = config.steps if config.steps is not None else DEFAULT_STEPS[config.method]
        common = dict(generator=generator_spec, output=str(finetune_dir), steps=steps, lr=lr,
                      batch_size=config.batch_size, mixed_precision=config.mixed_precision, lora=config.lora,
                      seed=config.seed + index, reward=str(folder / "rm"), probe_samples=config.probe_samples,
                      device=config.device, progress=config.progress)
        if config.method == "dpo":
            run_dpo(DPOConfig(pairs=str(folder / "pairs"), beta=config.beta, **common))
        else:
            run_sft(SFTConfig(data=[str(folder / "bon" / "best")], **common))
    return json.loads((finetune_dir / "metrics.json").read_text())


def run_rounds(config: RoundsConfig) -> list[dict]:
    """The GAN-RM loop: each round samples G_t, trains a reward model on the targets against those samples, runs
    Best-of-N and fine-tunes G_t into G_{t+1}. Every step is saved atomically; a rerun resumes at the first unfinished."""
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / "rounds_config.json")
    prompts = read_prompts(config.prompts)
    generator_spec = config.generator
    summary: list[dict] = []
    started = time.time()
    for index in range(1, config.rounds + 1):
        folder = output / f"round-{index}"
        folder.mkdir(exist_ok=True)
        seed = config.seed + index * 10 * _SEED_STRIDE
        info: dict = {"round": index, "generator": generator_spec}
        _sample(folder, generator_spec, prompts, seed, config)
        info.update(reward_model=str(folder / "rm"), rm_heldout=_reward_model(folder, index, config))
        rows = _best_of_n(folder, generator_spec, prompts, seed, config)
        info["mean_reward"] = sum(r["score"] for r in rows) / len(rows)
        info["mean_best_reward"] = sum(r["score"] for r in rows if r["rank"] == 0) / sum(r["rank"] == 0 for r in rows)
        finetuned = _finetune(folder, generator_spec, index, config)
        info["finetune_last"] = finetuned["history"][-1] if finetuned["history"] else {}
        info["stopped"] = finetuned.get("stopped")
        if info["stopped"]:  # a round whose monitors fired does not become the next round's base
            print(f"round {index}: fine-tuning stopped ({info['stopped']['reason']}); the next round starts again from "
                  f"{generator_spec}")
        else:
            generator_spec = str(folder / "finetune" / "generator")
        info["next_generator"] = generator_spec
        summary.append(info)
        write_text(output / "rounds.json", json.dumps(summary, indent=2) + "\n")
        if config.progress:
            print(time_left("round", index, config.rounds, started))
    return summary
