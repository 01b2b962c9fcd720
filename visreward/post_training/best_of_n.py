"""Best-of-N: sample N per prompt, score the output tensors directly, keep the best (and worst).

    visreward best-of-n --generator digits --reward rm/ --prompts prompts.txt --n 16 --output bon/

Output folder:
  best/           imagefolder of the kept samples (top --keep per group): what `sft --data bon/` reads
                  (a video generator's samples are mp4 files, scored by a video reward)
  worst/          the bottom --keep-bottom per group, when asked for
  samples/        every sample, metadata.jsonl with prompt, seed, score, rank, group
  scores.parquet  one row per sample: id, path, prompt, group, seed, score, rank (make-pairs reads it)
Every sample's seed is recorded: `generate([prompt], 1, seed)` reproduces it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import torch

from ..core.atomic import atomic_dir
from ..core.errors import VisrewardError
from ..core.options import BestOfNConfig
from ..io.formats import write_table
from ..io.prompts import read_prompt_images, read_prompts
from ..io.samples import write_sample


def sample_and_score(generator, reward_model, prompts: list[str], n: int, seed: int, batch_size: int = 64,
                     progress: bool = False) -> tuple[torch.Tensor, list[str], list[int], torch.Tensor, dict]:
    """(images [len(prompts)*n,3,H,W] or clips [.., T,3,H,W], prompts, seeds, scores, seconds spent generating and
    scoring), prompt-major: group g is rows g*n .. g*n+n-1."""
    import time

    from tqdm.auto import tqdm

    images, expanded, seeds, scores = [], [], [], []
    seconds = {"generation": 0.0, "reward": 0.0}
    groups_per_batch = max(1, batch_size // n)
    for start in tqdm(range(0, len(prompts), groups_per_batch), desc="best-of-n", disable=not progress):
        chunk = prompts[start : start + groups_per_batch]
        began = time.perf_counter()
        batch, batch_prompts, batch_seeds = generator.generate_tensors(chunk, n, seed + start * n)
        generated = time.perf_counter()
        scores.append(reward_model.score(batch, batch_prompts))
        seconds["generation"] += generated - began
        seconds["reward"] += time.perf_counter() - generated
        images.append(batch)
        expanded += batch_prompts
        seeds += batch_seeds
    return torch.cat(images), expanded, seeds, torch.cat(scores), seconds


def rerank_with_references(judge, images: torch.Tensor, prompts: list[str], pointwise: torch.Tensor, n: int,
                           k: int) -> torch.Tensor:
    """RewardDance's Best-of-N: the top-k of the pointwise pass become references; every sample is
    then scored pairwise (both orders) against the references other than itself."""
    scores = torch.empty_like(pointwise)
    for group in range(len(pointwise) // n):
        rows = torch.arange(group * n, (group + 1) * n)
        top = rows[torch.argsort(pointwise[rows], descending=True)[:k]].tolist()
        for row in rows.tolist():
            references = [images[r] for r in top if r != row] or [images[top[0]]]
            scores[row] = judge.score([images[row]], [prompts[row]], references=[references])[0]
    return scores


def rank_within_groups(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Rank (0 = best) of every sample inside its group of n consecutive samples."""
    order = torch.argsort(scores.view(-1, n), dim=1, descending=True)
    return torch.argsort(order, dim=1).flatten()


def run_best_of_n(config: BestOfNConfig) -> dict:
    from ..generators import load_generator
    from ..rewards.loader import is_generative, load_reward_model

    instances = [p for p in read_prompts(config.prompts) for _ in range(config.repeats)]
    generator = load_generator(config.generator, device=config.device).condition_on(read_prompt_images(config.prompts))
    reward = load_reward_model(config.reward, config.device, config.backend, config.precision)
    images, prompts, seeds, scores, seconds = sample_and_score(generator, reward, instances, config.n, config.seed,
                                                               config.batch_size, config.progress)
    if config.references:
        if not is_generative(config.reward) or not config.references.startswith("top-"):
            raise VisrewardError("--references top-K needs a vlm: reward (pairwise judging)")
        scores = rerank_with_references(reward, images, prompts, scores, config.n, int(config.references[len("top-"):]))
    ranks = rank_within_groups(scores, config.n)
    output = Path(config.output)
    rows = []
    with atomic_dir(output) as tmp:
        folders = {"samples": [], "best": [], "worst": []}
        for i, (image, prompt, seed, score, rank) in enumerate(zip(images, prompts, seeds, scores.tolist(), ranks.tolist())):
            (tmp / "samples").mkdir(exist_ok=True)
            written = write_sample(image, tmp / "samples" / f"{i:06d}", getattr(generator, "fps", None))
            name = written.name
            row = {"file_name": name, "prompt": prompt, "seed": seed, "score": score, "rank": rank, "group": i // config.n,
                   **({"frames": len(image)} if image.ndim == 4 else {}),
                   **({"image": generator.images[prompt]} if prompt in generator.images else {})}
            targets = ["samples"] + ["best"] * (rank < config.keep) + ["worst"] * (rank >= config.n - config.keep_bottom)
            for folder in targets:
                (tmp / folder).mkdir(exist_ok=True)
                if folder != "samples":
                    shutil.copyfile(written, tmp / folder / name)
                folders[folder].append(row)
            rows.append({"id": f"samples/{name}", "path": str(output / "samples" / name), **row})
        for folder, folder_rows in folders.items():
            if folder_rows:
                (tmp / folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in folder_rows))
        table = pa.Table.from_pylist([{k: r[k] for k in ("id", "path", "prompt", "group", "seed", "score", "rank")} for r in rows])
        write_table(table, tmp / "scores.parquet")
    best = scores.view(-1, config.n).max(dim=1).values
    return {"samples": len(rows), "groups": len(instances), "mean_score": float(scores.mean()),
            "mean_best_score": float(best.mean()), "generation_seconds": seconds["generation"],
            "reward_seconds": seconds["reward"]}
