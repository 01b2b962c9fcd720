"""A video encoder: an image encoder's per-frame features, pooled over time.

    encoder = VideoEncoder(load_encoder("efficientnet-lite0"), FrameSampling(frames=8))
    features = encoder(videos)        # differentiable: [B,T,3,H,W] in [0,1] -> [B, 3 * dim]

The pooled vector concatenates, per feature, the mean over frames (appearance), the standard
deviation over frames (how much the content changes) and the mean absolute difference between
consecutive frames (how fast it changes). A head on it sees both what a clip shows and how it
moves; on the test clips, mean pooling alone cannot tell a moving digit from a still one.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..videos import FrameSampling
from .base import ImageEncoder

POOLINGS = ("mean", "std", "motion")


def pool_frames(features: torch.Tensor, pooling: Sequence[str] = POOLINGS) -> torch.Tensor:
    """[B,T,D] per-frame features -> [B, len(pooling) * D]."""
    pooled = []
    for name in pooling:
        if name == "mean":
            pooled.append(features.mean(dim=1))
        elif name == "std":
            pooled.append(features.std(dim=1, correction=0))
        elif name == "motion":
            steps = features.diff(dim=1).abs()
            pooled.append(steps.mean(dim=1) if steps.shape[1] else torch.zeros_like(features[:, 0]))
        else:
            raise ValueError(f"unknown temporal pooling '{name}' (choose from {', '.join(POOLINGS)})")
    return torch.cat(pooled, dim=-1)


class VideoEncoder(torch.nn.Module):
    """Frozen: `image` encodes each sampled frame, `pooling` summarises them over time."""

    def __init__(self, image: ImageEncoder, sampling: FrameSampling, pooling: Sequence[str] = POOLINGS):
        super().__init__()
        pool_frames(torch.zeros(1, 2, 1), pooling)  # an unknown pooling fails here, not at the first batch
        self.image, self.sampling, self.pooling = image, sampling, tuple(pooling)
        self.name, self.preprocessing, self.has_text = image.name, image.preprocessing, image.has_text
        self.dim = image.dim * len(self.pooling)

    @property
    def cache_key(self) -> str:
        """Per clip: the frame features' key, the frame-sampling recipe and the pooling."""
        return f"{self.image.cache_key}|{self.sampling.tag}|pool={'+'.join(self.pooling)}"

    @property
    def device(self) -> torch.device:
        return self.image.device

    @property
    def video_config(self) -> dict:
        return {**self.sampling.to_dict(), "pooling": list(self.pooling)}

    def train(self, mode: bool = True) -> "VideoEncoder":
        return super().train(False)

    def select_frames(self, videos: torch.Tensor) -> torch.Tensor:
        """The sampled frames of [B,T,...] clips, as files are sampled (with fps: T frames are taken to be at that rate)."""
        return videos[:, self.sampling.indices(videos.shape[1], self.sampling.fps)]

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        frames = self.select_frames(videos)
        features = self.image(frames.flatten(0, 1))
        return pool_frames(features.unflatten(0, frames.shape[:2]), self.pooling)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised [B,K,3,S,S] sampled frames -> float32 CPU pooled features."""
        features = self.image.encode_pixels(pixels.flatten(0, 1))
        return pool_frames(features.unflatten(0, pixels.shape[:2]), self.pooling)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.image.encode_text(prompts)
