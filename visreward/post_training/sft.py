"""SFT: fine-tune the generator's denoiser on selected samples with its own training objective.

    visreward sft --generator digits --data bon/ --output gen-sft/ [--lora]
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import VisrewardError
from ..images import SkipLog, read_bytes
from ..options import SFTConfig
from ..readers import read_images
from .finetune import TrainingImages, decode_for_training, finetune


def load_sft_data(sources: list[str], size: tuple[int, int], frames: int | None = None) -> TrainingImages:
    """Images (or, with `frames`, clips) with prompts; a best-of-n run folder stands for its best/ samples."""
    if not sources:
        raise VisrewardError("no training images given (--data)")
    sources = [str(Path(s) / "best") if (Path(s) / "best").is_dir() else s for s in sources]
    items = read_images(sources, SkipLog(strict=True))
    missing = next((record for record, _ in items if not record.prompt), None)
    if missing is not None:
        raise VisrewardError(f"{missing.path}: no prompt (SFT needs metadata.jsonl prompts)")
    blobs = [read_bytes(source) for _, source in items]
    return TrainingImages(decode_for_training(blobs, [r.path for r, _ in items], size, frames), [r.prompt for r, _ in items])


def draw_images(data: TrainingImages, batch_size: int, rng: torch.Generator) -> dict:
    index = torch.randint(0, len(data), (batch_size,), generator=rng)
    return {"images": data.images[index].float() / 255, "prompts": [data.prompts[i] for i in index.tolist()]}


def sft_loss(denoiser, module, reference, batch: dict, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
    device = next(module.parameters()).device
    x0 = denoiser.encode_images(batch["images"].to(device))
    noisy = denoiser.objective.sample(x0, rng)
    prediction = denoiser.predict(module, noisy.noisy, noisy.timesteps, denoiser.condition(batch["prompts"]))
    return F.mse_loss(prediction.float(), noisy.target.float()), {}


def run_sft(config: SFTConfig) -> dict:
    from ..generators import load_generator

    generator = load_generator(config.generator)
    data = load_sft_data(config.data, generator.resolution, getattr(generator, "training_frames", None))
    return finetune(config, generator, data, sft_loss, needs_reference=False, draw=draw_images)
