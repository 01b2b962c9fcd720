"""The bundled generator: a small class-conditional diffusers UNet2DModel on real 8x8 digits.

It trains itself on the `generator` split of scikit-learn's digits (about two minutes on
two CPU cores) and is cached, so the demo and tests have a real generator with no
download:

    gen = load_bundled_generator()
    samples = gen.generate(["a handwritten digit 7"], n_per_prompt=4, seed=0)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from PIL import Image

from ..atomic import atomic_dir
from ..config import option
from ..digits_data import digit_image, parse_digit, real_digits
from ..errors import VisrewardError
from ..paths import default_cache_dir
from .base import Generator

GENERATOR_VERSION = 1


@dataclass
class DigitsGeneratorConfig:
    steps: int = option(600, "training steps")
    batch_size: int = option(128, "training batch size")
    lr: float = option(2e-3, "peak learning rate (one-cycle schedule)")
    channels: int = option(64, "UNet width (two resolution levels: channels, 2*channels)")
    inference_steps: int = option(25, "DDIM sampling steps")
    seed: int = option(0, "training seed")


def build_unet(channels: int) -> UNet2DModel:
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(channels, 2 * channels),
        layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), num_class_embeds=10, norm_num_groups=32,
    )


def training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")


def real_digit_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The generator split as ([N,1,8,8] in [-1,1], labels [N])."""
    images, labels = real_digits("generator")
    return torch.from_numpy(images).unsqueeze(1) * 2 - 1, torch.from_numpy(labels).long()


class DigitsGenerator(Generator):
    """Prompts like 'a handwritten digit 7' -> 8x8 grayscale digits; every sample has its own seed."""

    batch_size = 500

    def __init__(self, unet: UNet2DModel, config: DigitsGeneratorConfig):
        self.unet = unet.eval()
        self.config = config
        self.scheduler = DDIMScheduler.from_config(training_scheduler().config)

    def initial_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        return torch.cat([torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(s)) for s in seeds])

    def denoise(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """DDIM (eta=0, deterministic) from noise to [B,1,8,8] images in [0,1]."""
        self.scheduler.set_timesteps(self.config.inference_steps)
        x = noise.to(self.unet.device)
        labels = labels.to(self.unet.device)
        for t in self.scheduler.timesteps:
            x = self.scheduler.step(self.unet(x, t, class_labels=labels).sample, t, x).prev_sample
        return ((x.clamp(-1, 1) + 1) / 2).float()

    @torch.no_grad()
    def generate_from_seeds(self, prompts: Sequence[str], seeds: Sequence[int], batch_size: int | None = None) -> torch.Tensor:
        """One sample per (prompt, seed): [B,3,8,8] in [0,1]."""
        batch_size = batch_size or self.batch_size
        labels = torch.tensor([parse_digit(p) for p in prompts])
        chunks = [self.denoise(self.initial_noise(seeds[i : i + batch_size]), labels[i : i + batch_size])
                  for i in range(0, len(seeds), batch_size)]
        return torch.cat(chunks).expand(-1, 3, -1, -1).cpu()

    def to_pil(self, image: torch.Tensor) -> Image.Image:
        return digit_image(image[0].numpy())

    @property
    def device(self) -> torch.device:
        return self.unet.device

    resolution = (8, 8)

    def to(self, device) -> "DigitsGenerator":
        self.unet.to(device)
        return self

    def denoiser(self):
        from ..post_training.denoisers import DigitsDenoiser

        return DigitsDenoiser(self)

    def with_module(self, module: torch.nn.Module) -> "DigitsGenerator":
        """The same generator with its UNet replaced (after fine-tuning)."""
        return DigitsGenerator(module, self.config)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        with atomic_dir(directory) as tmp:
            self.unet.save_pretrained(tmp / "unet")
            self.scheduler.save_pretrained(tmp / "scheduler")
            (tmp / "generator.json").write_text(json.dumps(
                {"type": "visreward-digits", "version": GENERATOR_VERSION, **asdict(self.config)}, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "DigitsGenerator":
        directory = Path(directory)
        try:
            meta = json.loads((directory / "generator.json").read_text())
        except FileNotFoundError:
            raise VisrewardError(f"{directory}: not a digits generator folder (no generator.json)") from None
        meta.pop("type"), meta.pop("version")
        return cls(UNet2DModel.from_pretrained(directory / "unet"), DigitsGeneratorConfig(**meta))


def train_digits_generator(config: DigitsGeneratorConfig = DigitsGeneratorConfig(), progress: bool = True) -> DigitsGenerator:
    """Standard epsilon-prediction DDPM training on the generator split."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    data, labels = real_digit_batch()
    unet = build_unet(config.channels)
    scheduler = training_scheduler()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(config.seed)
    unet.train()
    for _ in tqdm(range(config.steps), desc="training the digits generator", disable=not progress):
        index = torch.randint(0, len(data), (config.batch_size,), generator=generator)
        noise = torch.randn(config.batch_size, 1, 8, 8, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (config.batch_size,), generator=generator)
        noisy = scheduler.add_noise(data[index], noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps, class_labels=labels[index]).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
    return DigitsGenerator(unet, config)


def bundled_generator_dir(cache_dir: str | os.PathLike | None = None, config: DigitsGeneratorConfig = DigitsGeneratorConfig()) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = f"digits-v{GENERATOR_VERSION}-s{config.steps}-c{config.channels}-seed{config.seed}"
    return root / "generators" / tag


def load_bundled_generator(cache_dir: str | os.PathLike | None = None,
                           config: DigitsGeneratorConfig = DigitsGeneratorConfig(),
                           progress: bool = True) -> DigitsGenerator:
    """The cached bundled generator, trained on first use."""
    directory = bundled_generator_dir(cache_dir, config)
    if (directory / "generator.json").exists():
        return DigitsGenerator.from_pretrained(directory)
    generator = train_digits_generator(config, progress=progress)
    generator.save_pretrained(directory)
    return generator
