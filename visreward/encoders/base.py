"""The interface every frozen image encoder implements, with the preprocessing it carries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.errors import VisrewardError
from ..io.images import clamp_unit, to_rgb

# Bump when the way features are computed changes, so cached features from before are not reused.
FEATURE_VERSION = 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Resize (shortest edge, or to a square; bicubic, antialiased), centre-crop, normalise: the encoder's own recipe."""

    resize: int
    crop: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "shortest_edge"  # or "square"

    @property
    def input_size(self) -> int:
        return self.crop or self.resize

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def _resized_size(self, height: int, width: int) -> tuple[int, int]:
        if self.resize_mode == "square":
            return self.resize, self.resize
        scale = self.resize / min(height, width)
        return max(self.input_size, round(height * scale)), max(self.input_size, round(width * scale))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """A PIL image (any mode) to a normalised [3,S,S] tensor."""
        return self.normalise(self.pixels(image)[None])[0]

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """A PIL image (any mode) to the encoder's 8-bit [3,S,S] input, not yet normalised."""
        return self.resize_crop(torch.from_numpy(np.array(to_rgb(image))).permute(2, 0, 1)[None])[0]

    def resize_crop(self, images: torch.Tensor) -> torch.Tensor:
        """8-bit [B,3,H,W] pixels (what files hold) -> 8-bit [B,3,S,S]: resized and centre-cropped.

        Resizing in uint8 is several times cheaper than in float, and an 8-bit crop is a quarter
        of the memory of a float one: the streaming pipeline holds these until a batch is encoded.
        """
        height, width = self._resized_size(images.shape[-2], images.shape[-1])
        x = F.interpolate(images.contiguous(memory_format=torch.channels_last), size=(height, width),
                          mode="bicubic", antialias=True)
        if self.crop:
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
            x = x[..., top : top + self.crop, left : left + self.crop]
        return x.contiguous()

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """8-bit [B,3,S,S] -> the normalised float input of the encoder."""
        return self._normalise(pixels.float().div_(255))

    def quantized(self, images: torch.Tensor) -> torch.Tensor:
        """8-bit [B,3,H,W] pixels -> normalised [B,3,S,S]; the fast no-grad path.

        Files, PIL images and (quantised) tensors all come through here, so an image scores
        the same however it arrives.
        """
        return self.normalise(self.resize_crop(images))

    def tensor(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] tensors in [0,1] -> normalised [B,3,S,S]; differentiable."""
        height, width = self._resized_size(images.shape[-2], images.shape[-1])
        x = F.interpolate(images, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
        if self.crop:
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
            x = x[..., top : top + self.crop, left : left + self.crop]
        return self._normalise(clamp_unit(x))


class ImageEncoder(torch.nn.Module):
    """A frozen image encoder: `name` and `dim` identify it, `preprocessing` travels with it.

    `forward` is the differentiable path ([B,3,H,W] in [0,1] -> [B,dim]); `encode` is the
    batched no-grad path on PIL images.
    """

    name: str
    dim: int
    preprocessing: Preprocessing
    has_text: bool = False
    # Some CNNs run several times faster on CPU in small batches (depthwise convolutions stay in cache).
    cpu_micro_batch: int | None = None

    def freeze(self) -> "ImageEncoder":
        self.eval()
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "ImageEncoder":
        # Frozen means frozen: batch-norm statistics and dropout never switch to training mode.
        return super().train(False)

    @property
    def cache_key(self) -> str:
        """Identifies the features this encoder computes: name, preprocessing, feature version."""
        recipe = ",".join(f"{k}={v}" for k, v in sorted(self.preprocessing.to_dict().items()))
        return f"{self.name}|{recipe}|v{FEATURE_VERSION}"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [B,3,S,S] -> features [B,dim]."""
        raise NotImplementedError

    def embed_pixel_maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [B,3,S,S] -> spatial features [B,dim,h,w] whose spatial mean is `embed_pixels`.
        Encoders without maps give 1x1 ones; a CNN's show where things are, so a translation changes them."""
        return self.embed_pixels(pixels)[..., None, None]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_pixels(self.preprocessing.tensor(images.to(self.device)))

    def forward_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The differentiable path of `embed_pixel_maps`: [B,3,H,W] in [0,1] -> [B,dim,h,w]."""
        return self.embed_pixel_maps(self.preprocessing.tensor(images.to(self.device)))

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.encode_pixels(self.preprocessing.normalise(torch.stack([self.preprocessing.pixels(image) for image in images])))

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor, maps: bool = False) -> torch.Tensor:
        """Normalised pixels -> float32 CPU features (with `maps`, spatial ones), in micro-batches on CPU where
        that is faster."""
        if self.device.type == "cuda":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        step = self.cpu_micro_batch if self.device.type == "cpu" and self.cpu_micro_batch else len(pixels)
        embed = self.embed_pixel_maps if maps else self.embed_pixels
        return torch.cat([embed(chunk.to(self.device)).float().cpu() for chunk in pixels.split(step)])

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        raise VisrewardError(f"encoder '{self.name}' has no text tower; prompt conditioning needs clip: or siglip:")
