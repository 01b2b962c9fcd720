"""A video encoder: an image encoder's per-frame features, pooled over time.

    encoder = VideoEncoder(load_encoder("efficientnet-lite0"), FrameSampling(frames=16))
    features = encoder(videos)        # differentiable: [B,T,3,H,W] in [0,1] -> [B, 6 * dim]

The pooled vector concatenates, per feature, the mean over frames (appearance), the standard
deviation over frames (how much the content changes), the mean absolute difference between
consecutive frames (how fast it changes) and, on the encoder's spatial feature maps, how far each
map moves between consecutive frames: its mean (flow); the spread over the clip of that change, averaged
over groups of 32 channels and relative to its mean (flow-std: stalls and skips); and, relative to the
clip's mean change, its trend (flow-trend: speeding up or slowing down, so reversed physics shows). A head on it sees what a clip shows and how it moves; globally
pooled features alone hardly change when an object translates, so they cannot tell smooth motion
from jitter (benchmarks/motion_contrasts.py).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..core.options import VIDEO_POOLING
from ..io.videos import FrameSampling
from .base import ImageEncoder

POOLINGS = ("mean", "std", "motion", "flow", "flow-std", "flow-trend")
# A map pooling's weight in a head's standardised input (times --map-weight; the others weigh 1). flow-std and
# flow-trend at full weight cost appearance and jitter (seed 1, five-head ensembles: bold vs thin 0.924 -> 0.941,
# jitter 0.922 -> 0.949 where they weigh a quarter); stutter and reversed physics, which need them, stay above 0.95
# at a quarter (benchmarks/motion_contrasts.py).
MAP_POOLING_WEIGHTS = {"flow": 1.0, "flow-std": 0.25, "flow-trend": 0.25}
MAP_POOLINGS = frozenset(MAP_POOLING_WEIGHTS)
DEFAULT_POOLING = VIDEO_POOLING
# One channel's change between frames is too noisy to show a stall or a skip in a slow glide: the mean of 32 is not
# (motion_contrasts, stutter seed 1: 0.83-0.93 per channel, 0.96-0.98 per group of 32, 8 to 128 alike).
FLOW_GROUP = 32


def pool_frames(maps: torch.Tensor, pooling: Sequence[str] = DEFAULT_POOLING) -> torch.Tensor:
    """[B,T,D,h,w] per-frame feature maps (or [B,T,D] global features, as 1x1 maps) -> [B, len(pooling) * D]."""
    maps = maps[..., None, None] if maps.dim() == 3 else maps
    features = maps.mean(dim=(3, 4))
    # How far each feature map moved between consecutive frames: a translation registers where the global mean
    # hardly changes, and jitter moves it far. Relative to the clip's mean change, so that the speed of a clip
    # does not hide how even it is: a stall or a skip makes it uneven, reversed physics reverses its trend.
    change = maps.diff(dim=1).abs().mean(dim=(3, 4))
    relative = change / change.mean(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    none = torch.zeros_like(features[:, 0])
    pooled = []
    for name in pooling:
        if name == "mean":
            pooled.append(features.mean(dim=1))
        elif name == "std":
            pooled.append(features.std(dim=1, correction=0))
        elif name == "motion":
            pooled.append(features.diff(dim=1).abs().mean(dim=1) if change.shape[1] else none)
        elif name == "flow":
            pooled.append(change.mean(dim=1) if change.shape[1] else none)
        elif name == "flow-std":
            pooled.append(_group_spread(change) if change.shape[1] else none)
        elif name == "flow-trend":
            pooled.append(_trend(relative) if change.shape[1] > 1 else none)
        else:
            raise ValueError(f"unknown temporal pooling '{name}' (choose from {', '.join(POOLINGS)})")
    return torch.cat(pooled, dim=-1)


def _group_spread(change: torch.Tensor) -> torch.Tensor:
    """[B,S,D] change between frames -> [B,D]: per group of FLOW_GROUP consecutive channels, the standard deviation over
    the clip of their mean change relative to its clip mean; each channel carries its group's."""
    spreads = []
    for group in torch.tensor_split(change, max(1, change.shape[2] // FLOW_GROUP), dim=2):
        pace = group.mean(dim=2)
        relative = pace / pace.mean(dim=1, keepdim=True).clamp_min(1e-6)
        spreads.append(relative.std(dim=1, correction=0)[:, None].expand(-1, group.shape[2]))
    return torch.cat(spreads, dim=1)


def _trend(series: torch.Tensor) -> torch.Tensor:
    """[B,S,D] -> [B,D]: the covariance of each feature with standardised time (> 0: it grows over the clip)."""
    time = torch.arange(series.shape[1], dtype=series.dtype, device=series.device)
    time = (time - time.mean()) / time.std(correction=0)
    return (series * time[:, None]).mean(dim=1)


class VideoEncoder(torch.nn.Module):
    """Frozen: `image` encodes each sampled frame, `pooling` summarises them over time."""

    def __init__(self, image: ImageEncoder, sampling: FrameSampling, pooling: Sequence[str] = DEFAULT_POOLING):
        super().__init__()
        pool_frames(torch.zeros(1, 2, 1), pooling)  # an unknown pooling fails here, not at the first batch
        self.image, self.sampling, self.pooling = image, sampling, tuple(pooling)
        self.needs_maps = not MAP_POOLINGS.isdisjoint(self.pooling)
        self.name, self.preprocessing, self.has_text = image.name, image.preprocessing, image.has_text
        self.dim = image.dim * len(self.pooling)

    @property
    def cache_key(self) -> str:
        """Per clip: the frame features' key, the frame-sampling recipe and the pooling (with flow-std, its group size)."""
        group = f"|group={FLOW_GROUP}" if "flow-std" in self.pooling else ""
        return f"{self.image.cache_key}|{self.sampling.tag}|pool={'+'.join(self.pooling)}{group}"

    @property
    def device(self) -> torch.device:
        return self.image.device

    def feature_weights(self, map_weight: float) -> torch.Tensor:
        """Per pooled feature, its weight in a head's standardised input: `map_weight` times MAP_POOLING_WEIGHTS for
        the map poolings, 1 for the others."""
        return torch.cat([torch.full((self.image.dim,), map_weight * MAP_POOLING_WEIGHTS[name] if name in MAP_POOLINGS
                                     else 1.0) for name in self.pooling])

    @property
    def video_config(self) -> dict:
        return {**self.sampling.to_dict(), "pooling": list(self.pooling)}

    def train(self, mode: bool = True) -> "VideoEncoder":
        return super().train(False)

    def select_frames(self, videos: torch.Tensor) -> torch.Tensor:
        """The sampled frames of [B,T,...] clips, as files are sampled (with fps: T frames are taken to be at that rate)."""
        return videos[:, self.sampling.indices(videos.shape[1], self.sampling.fps)]

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        frames = self.select_frames(videos).flatten(0, 1)
        features = self.image.forward_maps(frames) if self.needs_maps else self.image(frames)
        return pool_frames(features.unflatten(0, videos.shape[:1] + (-1,)), self.pooling)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised [B,K,3,S,S] sampled frames -> float32 CPU pooled features."""
        features = self.image.encode_pixels(pixels.flatten(0, 1), maps=self.needs_maps)
        return pool_frames(features.unflatten(0, pixels.shape[:2]), self.pooling)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.image.encode_text(prompts)
