"""Pretraining a small vision-language model from scratch on captioned images: a judge that starts knowing what it sees.

    visreward train-vlm --output digit-vlm/                              # the package's real digits, captioned
    visreward train-vlm --data captioned/ --output my-vlm/ --size 16x    # an imagefolder with metadata.jsonl captions

The model is a LLaVA (CLIP vision tower, Qwen2 language model) built from a config at one of tiny.SIZES, with a
word-level tokenizer of the captions' and the judge templates' words. It learns to answer "Describe the image."
with each image's caption (cross-entropy on the caption's tokens, as train-vlm-rm trains on answers); a held-out
tenth of the images measures the caption loss before and after. The folder it writes is what `train-vlm-rm
--model` and `vlm:` take.

The digits' captions come from the `train` split only: "a handwritten digit 3 in bold strokes", the stroke weight
being the digit's ink mass tercile within its class (thin, regular, bold). Their probes read, on the `evaluation`
split, the digit and the stroke weight the model puts after "a handwritten digit" and after "... in".
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...core.atomic import atomic_dir, write_text
from ...core.config import save_config
from ...core.errors import VisrewardError
from ...core.options import VLMPretrainingConfig
from ...core.paths import default_cache_dir
from .model import GenerativeRewardModel
from .tiny import build_tiny_llava
from .trainer import decision_loss

DESCRIBE = "Describe the image."
WEIGHTS = ("thin", "regular", "bold")
PRETRAINING_VERSION = 1
METRICS_FILE = "pretraining_metrics.json"  # a cached folder with it holds a finished pretraining


def digit_captions(split: str) -> tuple[list[Image.Image], list[str]]:
    """A split's real digits and their captions: 'a handwritten digit 3 in bold strokes' (ink tercile in its class)."""
    from ...io.digits import digit_image, ink, real_digits

    images, labels = real_digits(split)
    mass = ink(images)
    weight = np.zeros(len(images), dtype=int)
    for digit in np.unique(labels):
        rows = np.flatnonzero(labels == digit)
        weight[rows] = np.searchsorted(np.quantile(mass[rows], [1 / 3, 2 / 3]), mass[rows], side="right")
    return ([digit_image(pixels) for pixels in images],
            [f"a handwritten digit {d} in {WEIGHTS[w]} strokes" for d, w in zip(labels, weight)])


def captioned_folder(folders: list[str]) -> tuple[list[Image.Image], list[str]]:
    """Images and their captions (metadata.jsonl's prompt, text or caption) from imagefolders."""
    from ...io.images import SkipLog, decode_image, read_bytes
    from ...io.readers import read_images

    items = read_images(folders, SkipLog(strict=True))
    if not items:
        raise VisrewardError(f"{', '.join(folders)}: no images")
    missing = next((record for record, _ in items if not record.prompt), None)
    if missing is not None:
        raise VisrewardError(f"{missing.path}: no caption (train-vlm needs a metadata.jsonl with file_name and caption)")
    return ([decode_image(read_bytes(source), str(record.path)) for record, source in items],
            [record.prompt for record, _ in items])


def caption_loss(judge: GenerativeRewardModel, images: list[Image.Image], captions: list[str], batch_size: int = 64) -> float:
    """Mean cross-entropy per caption token of the model's answers to "Describe the image."."""
    losses = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = [(DESCRIBE, [image], caption) for image, caption in
                     zip(images[start : start + batch_size], captions[start : start + batch_size])]
            losses.append(float(decision_loss(judge, chunk)) * len(chunk))
    return sum(losses) / len(images)


def read_after(judge: GenerativeRewardModel, images: list[Image.Image], prefixes: list[str], choices: list[str],
               batch_size: int = 64) -> np.ndarray:
    """Index into `choices` (single-token words) of the likeliest next word after each image's caption prefix."""
    ids = [judge.tokenizer.convert_tokens_to_ids(word) for word in choices]
    picked = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            texts = [judge.chat_text(DESCRIBE, 1) + prefix for prefix in prefixes[start : start + batch_size]]
            logits = judge.model(**judge.encode(texts, [[image] for image in images[start : start + batch_size]])).logits
            picked.append(logits[:, -1, ids].argmax(dim=-1).cpu().numpy())
    return np.concatenate(picked)


def digit_probes(judge: GenerativeRewardModel) -> dict:
    """On held-out real digits: the fraction whose digit, and whose stroke weight, the model reads right."""
    images, captions = digit_captions("evaluation")
    digits = [caption.split()[3] for caption in captions]
    weights = [caption.split()[5] for caption in captions]
    read_digit = read_after(judge, images, ["a handwritten digit"] * len(images), [str(d) for d in range(10)])
    read_weight = read_after(judge, images, [f"a handwritten digit {d} in" for d in digits], list(WEIGHTS))
    return {"digit_accuracy": float((read_digit == np.array(digits, dtype=int)).mean()),
            "stroke_weight_accuracy": float((np.array(WEIGHTS)[read_weight] == np.array(weights)).mean()),
            "n_probe": len(images)}


def _schedule(optimizer, steps: int, warmup: int):
    """Linear warm-up, then cosine decay to a tenth."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train_steps(judge, accelerator, optimizer, schedule, examples, config: VLMPretrainingConfig) -> list[float]:
    from tqdm.auto import tqdm

    rng = random.Random(config.seed)
    losses = []
    judge.model.train()
    for _ in tqdm(range(config.steps), desc="pretraining", disable=not (config.progress and accelerator.is_main_process)):
        loss = decision_loss(judge, rng.sample(examples, min(config.batch_size, len(examples))))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    judge.model.eval()
    return losses


def pretrain_vlm(config: VLMPretrainingConfig) -> dict:
    """Build, pretrain and save the model; returns its metrics (caption losses, digit probes)."""
    from accelerate import Accelerator

    digits = not config.data
    images, captions = digit_captions("train") if digits else captioned_folder(config.data)
    if len(images) < 2:
        raise VisrewardError(f"{', '.join(config.data)}: {len(images)} captioned image(s); need 2 or more (one is held out)")
    order = random.Random(config.seed).sample(range(len(images)), len(images))
    n_held = max(1, round(len(images) * config.holdout))
    held, train = order[:n_held], order[n_held:]
    accelerator = Accelerator(cpu=config.device == "cpu")
    model, processor = build_tiny_llava(captions, config.size, seed=config.seed)
    judge = GenerativeRewardModel(model.to(accelerator.device), processor)
    held_images, held_captions = [images[i] for i in held], [captions[i] for i in held]
    before = {"heldout_caption_loss": caption_loss(judge, held_images, held_captions)}
    if digits:
        before.update(digit_probes(judge))
    optimizer = torch.optim.AdamW(judge.model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = _schedule(optimizer, config.steps, warmup=max(1, config.steps // 20))
    judge.model, optimizer = accelerator.prepare(judge.model, optimizer)
    trained_model = judge.model
    started = time.time()
    losses = _train_steps(judge, accelerator, optimizer, schedule, [(DESCRIBE, [images[i]], captions[i]) for i in train], config)
    judge.model = accelerator.unwrap_model(trained_model)
    after = {"heldout_caption_loss": caption_loss(judge, held_images, held_captions)}
    if digits:
        after.update(digit_probes(judge))
    metrics = {"size": config.size, "parameters": sum(p.numel() for p in judge.model.parameters()),
               "n_train": len(train), "n_heldout": len(held), "steps": config.steps, "seconds": time.time() - started,
               "final_train_loss": float(np.mean(losses[-20:])), "before": before, "after": after}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save(judge, config, metrics)
    return metrics


def _save(judge: GenerativeRewardModel, config: VLMPretrainingConfig, metrics: dict) -> None:
    with atomic_dir(config.output) as tmp:
        judge.model.save_pretrained(tmp)
        judge.processor.save_pretrained(tmp)
        save_config(config, tmp / "pretraining_config.json")
        write_text(tmp / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")


def _digit_recipe(size: str, steps: int | None, seed: int = 0, **settings) -> VLMPretrainingConfig:
    """train-vlm's recipe on the captioned digits at `size` (its default steps unless given), from `seed`."""
    return VLMPretrainingConfig(size=size, seed=seed, **({"steps": steps} if steps else {}), **settings)


def digit_vlm_dir(size: str = "4x", cache_dir=None, steps: int | None = None, seed: int = 0) -> Path:
    config = _digit_recipe(size, steps, seed)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "judges" / f"digits-vlm-v{PRETRAINING_VERSION}-{size}-s{config.steps}-seed{config.seed}"


def load_digit_vlm(size: str = "4x", cache_dir=None, steps: int | None = None, progress: bool = True,
                   seed: int = 0) -> Path:
    """The folder of the small VLM pretrained on the captioned real digits at `size` from `seed`, pretrained on
    first use."""
    directory = digit_vlm_dir(size, cache_dir, steps, seed)
    if not (directory / METRICS_FILE).exists():
        pretrain_vlm(_digit_recipe(size, steps, seed, output=str(directory), progress=progress))
    return directory
