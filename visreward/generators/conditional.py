"""A small class-conditional diffusion generator (diffusers UNet2DModel + DDIM) for any imagefolder or
folder of short clips.

    visreward train-generator --data IMAGEFOLDER --output GEN_DIR [--resolution 16 --steps 600]
    visreward train-generator --data VIDEOFOLDER --frames 8 --output GEN_DIR

Every distinct prompt of the folder's metadata.jsonl is a class; the generator samples any of
them. It trains in minutes on two CPU cores at 8-64 px, so the whole GAN-RM loop (rounds,
best-of-N, SFT, DPO, ReFL) runs on a user's own small data set. A video generator denoises a
clip's frames stacked on the channel axis, so its first convolution already sees every frame
and motion is learnt jointly with appearance. The bundled `digits` generator is this model
trained on scikit-learn's real 8x8 digits, `moving-digits` on clips of them moving (see `bundled.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from PIL import Image

from ..core.atomic import atomic_dir, write_text
from ..core.errors import VisrewardError
from ..core.options import GeneratorTrainingConfig
from ..core.precision import resolve_mixed_precision
from .base import Generator

GENERATOR_TYPE = "visreward-conditional"
GENERATOR_VERSION = 2


def build_unet(resolution: int, channels: int, width: int, n_classes: int) -> UNet2DModel:
    """Two resolution levels at 8 px, three above; attention only at the coarsest level (4x4 at 16 px:
    measured 2x faster to train than attending over 8x8)."""
    levels = 2 if resolution <= 8 else 3
    down = ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",)
    up = ("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1)
    return UNet2DModel(
        sample_size=resolution, in_channels=channels, out_channels=channels,
        block_out_channels=(width,) + (2 * width,) * (levels - 1), layers_per_block=1,
        down_block_types=down, up_block_types=up, num_class_embeds=n_classes, norm_num_groups=min(32, width),
    )


def training_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)


def _autocast(mixed_precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision == "bf16")


def sampling_precision(trained_in: str, device: torch.device) -> str:
    """A generator trained under bf16 samples under bf16 where bf16 is native; elsewhere bf16 is emulated and
    slower than fp32, so it samples in fp32 (how it was trained is a record, not an order)."""
    return resolve_mixed_precision("auto", device) if trained_in == "bf16" else "no"


class ConditionalGenerator(Generator):
    """Prompts (one of the training set's) -> images, or clips of `frames` frames; every sample has its own seed."""

    batch_size = 500

    def __init__(self, unet: UNet2DModel, prompts: Sequence[str], inference_steps: int = 25, frames: int | None = None,
                 fps: float = 8.0, scheduler: DDIMScheduler | None = None, mixed_precision: str = "no"):
        self.unet = unet.eval()
        self.prompts = list(prompts)
        self.inference_steps = inference_steps
        self.frames, self.fps = frames, fps
        self.scheduler = scheduler or DDIMScheduler.from_config(training_scheduler().config)
        self.mixed_precision = mixed_precision  # how the UNet was trained; it samples in sampling_precision()
        self._class = {p: i for i, p in enumerate(self.prompts)}

    @property
    def resolution(self) -> tuple[int, int]:
        return (self.unet.config.sample_size,) * 2

    @property
    def channels(self) -> int:
        """Colour channels of an image or of one frame (the UNet sees frames x channels)."""
        return self.unet.config.in_channels // (self.frames or 1)

    @property
    def training_frames(self) -> int | None:
        return self.frames

    def class_labels(self, prompts: Sequence[str]) -> torch.Tensor:
        unknown = next((p for p in prompts if p not in self._class), None)
        if unknown is not None:
            shown = ", ".join(repr(p) for p in self.prompts[:3]) + (", ..." if len(self.prompts) > 3 else "")
            raise VisrewardError(f"prompt {unknown!r} is not one of this generator's {len(self.prompts)} prompts ({shown})")
        return torch.tensor([self._class[p] for p in prompts])

    def initial_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        shape = (1, self.unet.config.in_channels, *self.resolution)
        return torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])

    def denoise(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """DDIM (eta=0, deterministic) from noise to the UNet's output space (frames stacked on channels) in [0,1]."""
        self.scheduler.set_timesteps(self.inference_steps)
        x = noise.to(self.unet.device)
        labels = labels.to(self.unet.device)
        precision = sampling_precision(self.mixed_precision, x.device)
        for t in self.scheduler.timesteps:
            with _autocast(precision, x.device):
                prediction = self.unet(x, t, class_labels=labels).sample
            x = self.scheduler.step(prediction.float(), t, x).prev_sample
        return ((x.clamp(-1, 1) + 1) / 2).float()

    @torch.no_grad()
    def generate_from_seeds(self, prompts: Sequence[str], seeds: Sequence[int], batch_size: int | None = None) -> torch.Tensor:
        """One sample per (prompt, seed): [B,3,H,W] (clips: [B,T,3,H,W]) in [0,1]."""
        batch_size = batch_size or self.batch_size
        labels = self.class_labels(prompts)
        chunks = [self.denoise(self.initial_noise(seeds[i : i + batch_size]), labels[i : i + batch_size])
                  for i in range(0, len(seeds), batch_size)]
        return self.unstack(torch.cat(chunks)).cpu()

    def unstack(self, x: torch.Tensor) -> torch.Tensor:
        """The UNet's [B,T*C,H,W] -> [B,3,H,W] images or [B,T,3,H,W] clips (gray repeated to RGB)."""
        if self.frames:
            x = x.unflatten(1, (self.frames, self.channels))
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])

    def stack(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] images or [B,T,3,H,W] clips -> the UNet's [B,T*C,H,W] layout (gray: the channel mean)."""
        if self.channels == 1:
            images = images.mean(dim=-3, keepdim=True)
        return images.flatten(1, 2) if self.frames else images

    def to_pil(self, image: torch.Tensor) -> Image.Image | list[Image.Image]:
        if image.ndim == 4:
            return [self.to_pil(frame) for frame in image]
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        if self.channels == 1:
            return Image.fromarray(pixels[0].numpy(), mode="L")
        return Image.fromarray(pixels.permute(1, 2, 0).numpy(), mode="RGB")

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def to(self, device) -> "ConditionalGenerator":
        self.unet.to(device)
        return self

    def denoiser(self):
        from .denoisers import ConditionalDenoiser

        return ConditionalDenoiser(self)

    def with_module(self, module: torch.nn.Module) -> "ConditionalGenerator":
        """The same generator with its UNet replaced (after fine-tuning)."""
        return ConditionalGenerator(module, self.prompts, self.inference_steps, self.frames, self.fps, self.scheduler,
                                    self.mixed_precision)

    def save_pretrained(self, directory: str | os.PathLike, training: dict | None = None) -> None:
        with atomic_dir(directory) as tmp:
            self.unet.save_pretrained(tmp / "unet")
            self.scheduler.save_pretrained(tmp / "scheduler")
            meta = {"type": GENERATOR_TYPE, "version": GENERATOR_VERSION, "prompts": self.prompts,
                    "inference_steps": self.inference_steps, "frames": self.frames, "fps": self.fps,
                    "mixed_precision": self.mixed_precision, "training": training or {}}
            (tmp / "generator.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "ConditionalGenerator":
        directory = Path(directory)
        try:
            meta = json.loads((directory / "generator.json").read_text())
        except FileNotFoundError:
            raise VisrewardError(f"{directory}: not a generator folder (no generator.json)") from None
        if meta.get("type") != GENERATOR_TYPE:
            raise VisrewardError(f"{directory / 'generator.json'}: type {meta.get('type')!r}, expected {GENERATOR_TYPE!r} "
                                 "(retrain it with `visreward train-generator`)")
        return cls(UNet2DModel.from_pretrained(directory / "unet"), meta["prompts"], meta["inference_steps"],
                   meta.get("frames"), meta.get("fps", 8.0), DDIMScheduler.from_pretrained(directory / "scheduler"),
                   meta.get("mixed_precision", "no"))


def load_training_images(config: GeneratorTrainingConfig) -> tuple[torch.Tensor, list[str], list[str]]:
    """(uint8 [N,C,R,R], prompt per image, the distinct prompts) from the folders, with one-line errors; clips
    (config.frames) come as [N,T*C,R,R], their frames stacked on the channel axis."""
    from ..io.images import SkipLog
    from ..io.readers import read_images

    if not config.data:
        raise VisrewardError("no training images given (--data)")
    items = read_images(config.data, SkipLog(strict=True), clips=bool(config.frames))
    if not items:
        raise VisrewardError(f"{', '.join(config.data)}: no images")
    missing = next((record for record, _ in items if not record.prompt), None)
    if missing is not None:
        raise VisrewardError(f"{missing.path}: no prompt (train-generator needs a metadata.jsonl with file_name and prompt)")
    counts = Counter(record.prompt for record, _ in items)
    rare = sorted(p for p, c in counts.items() if c < config.min_per_prompt)
    if rare:
        raise VisrewardError(f"prompt {rare[0]!r} has {counts[rare[0]]} image(s), fewer than --min-per-prompt "
                             f"{config.min_per_prompt} ({len(rare)} prompt(s) too rare)")
    pixels = _decode_same_size(items, config)  # [N,3,R,R] or [N,T,3,R,R]
    grayscale = bool((pixels == pixels[..., :1, :, :]).all())
    if config.colour == "gray" or config.colour == "auto" and grayscale:
        pixels = pixels.float().mean(dim=-3, keepdim=True).round().to(torch.uint8)
    if config.frames:
        pixels = pixels.flatten(1, 2)
    return pixels, [record.prompt for record, _ in items], sorted(counts)


def _decode_same_size(items, config: GeneratorTrainingConfig) -> torch.Tensor:
    """Every image (or clip, as config.frames frames spread over it) at one size: the first one's, or --resolution."""
    from ..io.images import decode_image, fit_image, read_bytes
    from ..io.videos import FrameSampling, pil_frames, read_clip

    def frames_of(record, source) -> list[Image.Image]:
        if config.frames:
            return pil_frames(read_clip(read_bytes(source), FrameSampling(config.frames), record.path))
        return [decode_image(read_bytes(source), record.path)]

    decoded = [frames_of(record, source) for record, source in items]
    sizes = [frames[0].size for frames in decoded]
    odd = next((i for i, size in enumerate(sizes) if size != sizes[0]), None)
    if odd is not None:
        raise VisrewardError(f"{items[odd][0].path}: {sizes[odd][0]}x{sizes[odd][1]}, but {items[0][0].path} is "
                             f"{sizes[0][0]}x{sizes[0][1]} (train-generator needs one image size)")
    resolution = config.resolution or sizes[0][0]
    if not 8 <= resolution <= 64:
        raise VisrewardError(f"resolution {resolution}: the generator works at 8 to 64 px (pass --resolution)")
    stacked = torch.stack([torch.stack([fit_image(frame, (resolution, resolution)) for frame in frames]) for frames in decoded])
    return stacked if config.frames else stacked[:, 0]


def train_generator(config: GeneratorTrainingConfig) -> ConditionalGenerator:
    """Epsilon-prediction DDPM training; resumes from output/checkpoints; writes output/ atomically."""
    precision = resolve_mixed_precision(config.mixed_precision)
    config = replace(config, mixed_precision=precision)  # what it was trained in, recorded with the generator
    pixels, prompts, classes = load_training_images(config)
    data = pixels.float() / 127.5 - 1
    labels = torch.tensor([classes.index(p) for p in prompts])
    torch.manual_seed(config.seed)
    unet = build_unet(data.shape[-1], data.shape[1], config.width, len(classes))
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.1)
    checkpoints = Path(config.output).with_name(Path(config.output).name + ".checkpoints")
    start = _resume(checkpoints, unet, optimizer, lr_schedule)
    _train_steps(unet, optimizer, lr_schedule, data, labels, config, start, checkpoints)
    scheduler = DDIMScheduler.from_config(training_scheduler(config.prediction_type).config)
    generator = ConditionalGenerator(unet, classes, config.inference_steps, config.frames, config.fps, scheduler,
                                     config.mixed_precision)
    training = {k: v for k, v in asdict(config).items() if k not in ("output", "progress")}
    generator.save_pretrained(config.output, training={**training, "n_images": len(prompts)})
    shutil.rmtree(checkpoints, ignore_errors=True)
    return generator


def _train_steps(unet, optimizer, lr_schedule, data, labels, config: GeneratorTrainingConfig, start: int,
                 checkpoints: Path) -> None:
    from tqdm.auto import tqdm

    scheduler = training_scheduler(config.prediction_type)
    unet.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="training the generator",
               disable=not config.progress)
    if config.progress:
        bar.write(f"training the generator on {len(data)} {'clips' if config.frames else 'images'} for "
                  f"{config.steps - start} steps of {config.batch_size} in {'bf16' if config.mixed_precision == 'bf16' else 'fp32'} "
                  f"(CPU capability {torch.backends.cpu.get_cpu_capability()}); the time left follows the first steps")
    timer = 0.0
    for step in bar:
        if step == start + 2:  # the first steps warm up; the next ten give a fair rate
            timer = time.perf_counter()
        if config.progress and step == start + 12:
            per_step = (time.perf_counter() - timer) / 10
            bar.write(f"about {per_step:.2f} s per step here: {per_step * (config.steps - step) / 60:.1f} min left")
        # each step's draws depend only on (seed, step): a resumed run continues exactly
        rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        index = torch.randint(0, len(data), (config.batch_size,), generator=rng)
        noise = torch.randn((config.batch_size, *data.shape[1:]), generator=rng)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (config.batch_size,), generator=rng)
        noisy = scheduler.add_noise(data[index], noise, timesteps)
        target = noise if config.prediction_type == "epsilon" else scheduler.get_velocity(data[index], noise, timesteps)
        with _autocast(config.mixed_precision, noisy.device):
            prediction = unet(noisy, timesteps, class_labels=labels[index]).sample
        loss = F.mse_loss(prediction.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _checkpoint(checkpoints, step + 1, unet, optimizer, lr_schedule)
    unet.eval()


def _checkpoint(checkpoints: Path, step: int, unet, optimizer, lr_schedule) -> None:
    from safetensors.torch import save_file

    from ..core.atomic import atomic_path

    checkpoints.mkdir(parents=True, exist_ok=True)
    with atomic_path(checkpoints / "unet.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp))
    with atomic_path(checkpoints / "optimizer.pt") as tmp:
        torch.save({"optimizer": optimizer.state_dict(), "lr_schedule": lr_schedule.state_dict()}, tmp)
    write_text(checkpoints / "step.json", json.dumps({"step": step}))  # last: marks the checkpoint complete


def _resume(checkpoints: Path, unet, optimizer, lr_schedule) -> int:
    from safetensors.torch import load_file

    if not (checkpoints / "step.json").exists():
        return 0
    unet.load_state_dict(load_file(str(checkpoints / "unet.safetensors")))
    state = torch.load(checkpoints / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    lr_schedule.load_state_dict(state["lr_schedule"])
    step = json.loads((checkpoints / "step.json").read_text())["step"]
    print(f"resuming generator training from {checkpoints} (step {step})")
    return step
