"""Video metrics, after VBench's dimensions, computed without its extra networks.

  temporal_consistency  VBench's subject consistency: cosine similarity of each frame's features
                        to the first frame's and to the previous frame's, averaged (any encoder)
  motion_smoothness     1 - mean |frame - midpoint of its neighbours| in [0,1] pixels: VBench drops
                        frames and re-creates them with a frame-interpolation network; here the
                        interpolation is linear, so smooth, steady motion scores near 1
  frame_motion          per clip, the mean of the top 5% absolute pixel changes between consecutive
                        frames (VBench takes the top 5% of RAFT optical-flow magnitudes)
  dynamic_degree        the share of clips whose frame_motion exceeds a threshold
  video_frechet_distance  the Frechet distance between clips' mean-pooled frame features; NOT FVD,
                        which uses an I3D network trained on Kinetics

Clips are [B,T,3,H,W] tensors in [0,1] (features: [B,T,D]).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import frechet_distance


def temporal_consistency(features: torch.Tensor) -> torch.Tensor:
    """[B,T,D] per-frame features -> [B]: mean over t >= 2 of (cos(f_1, f_t) + cos(f_{t-1}, f_t)) / 2."""
    features = features.float()
    to_first = F.cosine_similarity(features[:, :1], features[:, 1:], dim=-1)
    to_previous = F.cosine_similarity(features[:, :-1], features[:, 1:], dim=-1)
    return ((to_first + to_previous) / 2).mean(dim=1)


def motion_smoothness(clips: torch.Tensor) -> torch.Tensor:
    """[B,T,3,H,W] -> [B] in [0,1]: 1 - mean absolute error of each inner frame against the
    average of its two neighbours (needs T >= 3)."""
    if clips.shape[1] < 3:
        raise ValueError(f"motion smoothness needs at least 3 frames, got {clips.shape[1]}")
    clips = clips.float()
    midpoint = (clips[:, :-2] + clips[:, 2:]) / 2
    return 1 - (clips[:, 1:-1] - midpoint).abs().flatten(1).mean(dim=1)


def frame_motion(clips: torch.Tensor, top: float = 0.05) -> torch.Tensor:
    """[B,T,3,H,W] -> [B]: per clip, the mean over consecutive frame pairs of the mean of the largest
    `top` fraction of absolute pixel changes (0 for a still clip, 1 for black to white and back)."""
    changes = (clips[:, 1:].float() - clips[:, :-1].float()).abs().mean(dim=2).flatten(2)  # [B,T-1,H*W]
    k = max(1, round(top * changes.shape[-1]))
    return changes.topk(k, dim=-1).values.mean(dim=-1).mean(dim=1)


def dynamic_degree(clips: torch.Tensor, threshold: float = 0.1, top: float = 0.05) -> float:
    """The fraction of clips whose frame_motion is above `threshold`."""
    return float((frame_motion(clips, top) > threshold).float().mean())


def video_frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between two sets of clips' [N,T,D] frame features, each clip mean-pooled over time."""
    return frechet_distance(np.asarray(features_a, dtype=np.float64).mean(axis=1),
                            np.asarray(features_b, dtype=np.float64).mean(axis=1))


def centroid_track(clips: torch.Tensor) -> torch.Tensor:
    """[B,T,3,H,W] -> [B,T,2]: each frame's centroid (row, column) in pixels of its intensity above the frame's
    median, the position of a bright subject on a darker ground whose haze or noise (a generator's grey
    background) would otherwise pull it toward the centre. A frame with nothing above its median: its centre."""
    frames = clips.float().mean(dim=2)  # [B,T,H,W]
    frames = (frames - frames.flatten(2).median(dim=2).values[..., None, None]).clamp_min(0)
    height, width = frames.shape[-2:]
    mass = frames.sum(dim=(-2, -1))
    rows = (frames.sum(dim=-1) * torch.arange(height, dtype=frames.dtype)).sum(dim=-1)
    cols = (frames.sum(dim=-2) * torch.arange(width, dtype=frames.dtype)).sum(dim=-1)
    centre = torch.tensor([(height - 1) / 2, (width - 1) / 2], dtype=frames.dtype)
    track = torch.stack([rows, cols], dim=-1) / mass.clamp_min(1e-8).unsqueeze(-1)
    return torch.where(mass.unsqueeze(-1) > 1e-8, track, centre)


def centroid_speed(clips: torch.Tensor) -> torch.Tensor:
    """[B,T,3,H,W] -> [B]: the speed, in pixels a frame, of the straight path fitted (least squares) to the
    centroid track: a subject moving steadily at v gives v; frame-to-frame jitter does not add to it."""
    return track_speed(centroid_track(clips))


def track_speed(track: torch.Tensor) -> torch.Tensor:
    """[B,T,2] positions -> [B]: the speed of the straight path fitted (least squares) to each track."""
    time = torch.arange(track.shape[1], dtype=track.dtype)
    time = time - time.mean()
    return ((track * time[:, None]).sum(dim=1) / (time ** 2).sum()).norm(dim=-1)
