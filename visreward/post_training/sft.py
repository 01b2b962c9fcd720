"""SFT: fine-tune the generator's denoiser on selected samples with its own training objective.

    visreward sft --generator digits --data bon/ --output gen-sft/ [--lora]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.errors import VisrewardError
from ..core.options import SFTConfig
from ..io.images import SkipLog, read_bytes
from ..io.readers import read_images
from .finetune import TrainingImages, decode_for_training, finetune
from .probe_set import probe_set_for


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


def hold_out(data: TrainingImages, fraction: float = 0.1, most: int = 32) -> tuple[TrainingImages, TrainingImages | None]:
    """(what SFT trains on, every tenth image, at most `most`, that it never trains on); None held out below 10."""
    count = min(most, int(len(data) * fraction))
    if count == 0:
        return data, None
    held = set(range(0, len(data), len(data) // count)[:count])
    kept = [i for i in range(len(data)) if i not in held]
    part = lambda rows: TrainingImages(data.images[rows], [data.prompts[i] for i in rows])  # noqa: E731
    return part(kept), part(sorted(held))


@dataclass
class HeldoutMonitor:
    """SFT watching its own loss on images of its data it never trains on. Training can only lower the error on the
    images it sees; when the error on unseen ones rises above its start (the starting generator's), the policy is
    memorising its selections, and its samples narrow towards copies of them."""

    images: TrainingImages
    ratio_limit: float
    every: int
    seed: int
    start: float | None = None
    ratio: float | None = None
    inputs: tuple | None = None  # (noisy batch, condition): the frozen encoders give the same ones every time

    def measure(self, denoiser, module, step: int) -> dict:
        """The held-out error (the same noise and timesteps each time) every `every` steps and at step 0."""
        if step % self.every and self.start is not None:
            return {}
        with torch.no_grad():
            if self.inputs is None:
                x0 = denoiser.encode_images((self.images.images.float() / 255).to(next(module.parameters()).device))
                noisy = denoiser.objective.sample(x0, torch.Generator().manual_seed(self.seed))
                self.inputs = noisy, denoiser.condition(self.images.prompts)
            noisy, condition = self.inputs
            prediction = denoiser.predict(module, noisy.noisy, noisy.timesteps, condition)
            error = float(F.mse_loss(prediction.float(), noisy.target.float()))
        self.start = error if self.start is None else self.start
        self.ratio = error / max(self.start, 1e-12)
        return {"heldout_loss": error, "heldout_error_ratio": self.ratio}

    def alarms(self) -> list[str]:
        if self.ratio is None or self.ratio <= self.ratio_limit:
            return []
        return [f"the error on held-out images of its data rose to {self.ratio:.2f}x its start (it fits the images "
                "it trains on and no longer those like them)"]

    def state_dict(self) -> dict:
        return {"start": self.start, "ratio": self.ratio}

    def load_state_dict(self, state: dict) -> None:
        self.start, self.ratio = state["start"], state["ratio"]


def make_sft_loss(heldout: TrainingImages | None, config: SFTConfig):
    monitor = HeldoutMonitor(heldout, config.heldout_error_ratio, config.log_every, config.seed) if heldout else None

    def sft_loss(denoiser, module, reference, batch: dict, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        device = next(module.parameters()).device
        x0 = denoiser.encode_images(batch["images"].to(device))
        noisy = denoiser.objective.sample(x0, rng)
        prediction = denoiser.predict(module, noisy.noisy, noisy.timesteps, denoiser.condition(batch["prompts"]))
        logs = monitor.measure(denoiser, module, batch["step"]) if monitor and batch["micro"] == 0 else {}
        alarms = monitor.alarms() if monitor else []
        if alarms and sft_loss.stop_reason is None:
            sft_loss.stop_reason = "; ".join(alarms)
            warnings.warn(f"SFT: {sft_loss.stop_reason}; " + ("stopping" if config.stop_on_hacking else
                                                               "lower --lr, add data or stop earlier"))
        return F.mse_loss(prediction.float(), noisy.target.float()), logs

    sft_loss.stop_reason = None
    sft_loss.stops = config.stop_on_hacking
    sft_loss.monitor = monitor
    return sft_loss


def run_sft(config: SFTConfig) -> dict:
    from ..generators import load_generator

    generator = load_generator(config.generator)
    data = load_sft_data(config.data, generator.resolution, getattr(generator, "training_frames", None))
    data, heldout = hold_out(data)
    return finetune(config, generator, data, make_sft_loss(heldout, config), needs_reference=False, draw=draw_images,
                    probe=probe_set_for(config, generator, data.prompts))
