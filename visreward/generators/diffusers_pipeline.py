"""Any diffusers text-to-image, text-to-video or image-to-video pipeline as a visreward generator (SD 1.x/2.x,
SDXL, SD3, FLUX.1; AnimateDiff, CogVideoX, Wan, LTX-Video; CogVideoX-I2V, Wan-I2V, LTX-Video I2V, ...). A video
pipeline's samples are [T,3,H,W] clips; an image-to-video pipeline starts each prompt's clips from its image."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from ..core.atomic import atomic_dir
from ..core.errors import VisrewardError
from .base import Generator

SETTINGS_FILE = "visreward_generator.json"


class DiffusersGenerator(Generator):
    """Every sample gets its own torch.Generator, so `generate([prompt], 1, seed)` reproduces it."""

    batch_size = 8

    def __init__(self, pipeline, num_inference_steps: int = 30, guidance_scale: float | None = None,
                 height: int | None = None, width: int | None = None, num_frames: int | None = None, fps: float = 8.0):
        self.pipeline = pipeline
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.height, self.width = height, width
        self.num_frames, self.fps = num_frames, fps  # video pipelines: frames per clip (None: the pipeline's default)
        self.images: dict[str, str] = {}
        pipeline.set_progress_bar_config(disable=True)

    @property
    def takes_image(self) -> bool:
        """An image-to-video pipeline: its __call__ takes the image to start from."""
        return "image" in inspect.signature(self.pipeline.__call__).parameters

    def condition_on(self, images: dict[str, str]) -> "DiffusersGenerator":
        if images and not self.takes_image:
            raise VisrewardError(f"{type(self.pipeline).__name__} is not an image-to-video pipeline: its prompts take no image")
        self.images = {**self.images, **images}
        return self

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, device: str | None = None,
                        dtype: torch.dtype | None = None, **settings) -> "DiffusersGenerator":
        from diffusers import DiffusionPipeline

        location = Path(path_or_id)
        saved = json.loads((location / SETTINGS_FILE).read_text()) if (location / SETTINGS_FILE).exists() else {}
        try:
            pipeline = DiffusionPipeline.from_pretrained(str(path_or_id), torch_dtype=dtype, safety_checker=None,
                                                         requires_safety_checker=False)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise VisrewardError(f"{path_or_id}: cannot load a diffusers pipeline ({first})") from None
        return cls(pipeline, **{**saved, **settings}).to(device or "cpu")

    @property
    def device(self) -> torch.device:
        return self.pipeline.device

    @property
    def resolution(self) -> tuple[int, int]:
        """(height, width) of the images it generates and trains on."""
        if self.height and self.width:
            return self.height, self.width
        pipe = self.pipeline
        module = getattr(pipe, "unet", None) or pipe.transformer
        size = getattr(pipe, "default_sample_size", None) or module.config.get("sample_size")
        if size is None:  # CogVideoX, Wan: their pipelines' defaults depend on the checkpoint
            raise VisrewardError(f"{type(pipe).__name__}: set height and width in {SETTINGS_FILE} to train it")
        default = size * pipe.vae_scale_factor
        return self.height or default, self.width or default

    @property
    def training_frames(self) -> int | None:
        """Frames per training clip for a video pipeline (None for an image pipeline)."""
        if not hasattr(self.pipeline, "video_processor"):
            return None
        if self.num_frames is None:
            raise VisrewardError(f"{type(self.pipeline).__name__}: set num_frames in {SETTINGS_FILE} to train it")
        return self.num_frames

    def to(self, device) -> "DiffusersGenerator":
        self.pipeline.to(device)
        return self

    def generate_from_seeds(self, prompts: Sequence[str], seeds: Sequence[int], batch_size: int | None = None) -> torch.Tensor:
        """One sample per (prompt, seed): [B,3,H,W] in [0,1], or [B,T,3,H,W] from a video pipeline."""
        if self.takes_image:  # image-to-video pipelines disagree on batched images: one sample per call
            return torch.cat([self._sample([prompt], torch.Generator(self.device).manual_seed(seed), image=self._image_of(prompt))
                              for prompt, seed in zip(prompts, seeds)])
        batch_size = batch_size or self.batch_size
        return torch.cat([self._sample(prompts[i : i + batch_size],
                                       [torch.Generator(self.device).manual_seed(s) for s in seeds[i : i + batch_size]])
                          for i in range(0, len(prompts), batch_size)])

    @torch.no_grad()
    def _sample(self, prompts: Sequence[str], generator, **inputs) -> torch.Tensor:
        extra = {k: v for k, v in (("guidance_scale", self.guidance_scale), ("height", self.height),
                                    ("width", self.width), ("num_frames", self.num_frames)) if v is not None}
        output = self.pipeline(prompt=list(prompts), generator=generator, num_inference_steps=self.num_inference_steps,
                               output_type="pt", **extra, **inputs)
        return (output.frames if hasattr(output, "frames") else output.images).float().cpu().clamp(0, 1)

    def _image_of(self, prompt: str):
        from ..io.images import load_image

        if prompt not in self.images:
            raise VisrewardError(f"{type(self.pipeline).__name__} is image-to-video: prompt {prompt!r} has no image "
                                 "(give --prompts a .jsonl file with an \"image\" per prompt)")
        return load_image(self.images[prompt])

    @property
    def sampling_guidance(self) -> float:
        """The classifier-free guidance scale it samples with: its setting, else the pipeline's default."""
        from .denoisers import call_default

        if self.guidance_scale is not None:
            return self.guidance_scale
        return float(call_default(self.pipeline, "guidance_scale", None) or 1.0)

    def denoiser(self):
        from .denoisers import DiffusersDenoiser

        if self.takes_image:
            raise VisrewardError(f"{type(self.pipeline).__name__}: fine-tuning an image-to-video pipeline is not supported "
                                 "(generate and best-of-n are)")
        return DiffusersDenoiser(self.pipeline, self.resolution, self.sampling_guidance, self.training_frames)

    def with_module(self, module: torch.nn.Module) -> "DiffusersGenerator":
        """The same generator with its UNet/transformer replaced (after fine-tuning)."""
        name = "unet" if getattr(self.pipeline, "unet", None) is not None else "transformer"
        setattr(self.pipeline, name, module)
        return self

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        with atomic_dir(directory) as tmp:
            self.pipeline.save_pretrained(tmp)
            (tmp / SETTINGS_FILE).write_text(json.dumps({
                "num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale,
                "height": self.height, "width": self.width, "num_frames": self.num_frames, "fps": self.fps}, indent=2))
