"""How good a generator's samples are: Frechet distance, a digit classifier, diversity, copying."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..io.digits import parse_digit, real_digits


def within_prompt_diversity(features: torch.Tensor, prompts: list[str]) -> float:
    """Mean pairwise feature distance between samples of the same prompt, averaged over prompts."""
    values = []
    for prompt in sorted(set(prompts)):
        group = features[[i for i, p in enumerate(prompts) if p == prompt]]
        if len(group) > 1:
            distances = torch.cdist(group, group)
            values.append(float(distances.sum() / (len(group) * (len(group) - 1))))
    return float(np.mean(values)) if values else 0.0


def nearest_neighbour_distance(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from each query row to its nearest reference row: [Q]."""
    return torch.cdist(queries.double(), references.double()).min(dim=1).values


@lru_cache(maxsize=1)
def digit_classifier():
    """An SVM on raw pixels of the `evaluation` split: digits neither the generator nor a reward model saw."""
    from sklearn.svm import SVC

    images, labels = real_digits("evaluation")
    return SVC(gamma=0.001 * 256).fit(images.reshape(len(images), -1), labels)


def digit_pixels(images: torch.Tensor) -> torch.Tensor:
    """[B,3,8,8] samples in [0,1] -> [B,64] grayscale pixels as saved to 8-bit files."""
    return ((images.float().mean(dim=1) * 255).round() / 255).reshape(len(images), -1)


def digit_accuracy(images: torch.Tensor, prompts: list[str]) -> float:
    """Fraction of [B,3,8,8] samples in [0,1] the classifier reads as the digit their prompt asked for."""
    predicted = digit_classifier().predict(digit_pixels(images).numpy())
    return float((predicted == np.array([parse_digit(p) for p in prompts])).mean())


def digit_crops(clips: torch.Tensor, track: torch.Tensor | None = None) -> torch.Tensor:
    """[B,T,3,H,W] clips of one digit moving on black -> [B,T,64]: each frame's 8x8 window placed where the
    ink's centroid puts the digit (real digits' centroid sits at the mean of theirs within the 8x8 box),
    as 8-bit grayscale pixels. track: the clips' centroid_track, when the caller has it already."""
    from .video import centroid_track

    offset = torch.from_numpy(_real_digit_centroid())
    corner = ((centroid_track(clips) if track is None else track) - offset).round().long()  # [B,T,2]
    frames = torch.nn.functional.pad(clips.float().mean(dim=2), (8, 8, 8, 8))  # a window may reach past the edge
    corner = corner.clamp(min=-8).clamp(max=torch.tensor(frames.shape[-2:]) - 16) + 8
    crops = torch.stack([torch.stack([frame[r : r + 8, c : c + 8] for frame, (r, c) in zip(clip, where.tolist())])
                         for clip, where in zip(frames, corner)])
    return ((crops * 255).round() / 255).flatten(2)


@lru_cache(maxsize=1)
def _real_digit_centroid() -> np.ndarray:
    images, _ = real_digits("train")
    rows, cols = np.mgrid[:8, :8]
    mass = images.sum(axis=(1, 2))
    return np.array([((images * rows).sum(axis=(1, 2)) / mass).mean(), ((images * cols).sum(axis=(1, 2)) / mass).mean()],
                    dtype=np.float32)


def moving_digit_tensors(split: str, rows) -> torch.Tensor:
    """digits_data.moving_digit_clips as [N,T,3,H,W] floats in [0,1], the layout generators return."""
    from ..io.digits import moving_digit_clips

    return torch.from_numpy(moving_digit_clips(split, rows)).permute(0, 1, 4, 2, 3).float() / 255


@lru_cache(maxsize=1)
def clip_digit_classifier():
    """An SVM on the frame windows (digit_crops) of every `evaluation`-split moving digit: windows of clips
    drawn between pixels are slightly blurred and shifted, which a classifier of still digits misreads
    (0.84 of real clips' frames right, against 0.95 on digits this one did not train on)."""
    from sklearn.svm import SVC

    from ..io.digits import moving_digits

    rows = moving_digits("evaluation")
    crops = digit_crops(moving_digit_tensors("evaluation", rows))
    return SVC(gamma=0.001 * 256).fit(crops.flatten(0, 1).numpy(), np.repeat(rows.label, crops.shape[1]))


def digit_window_accuracy(crops: torch.Tensor, prompts: list[str]) -> float:
    """Fraction of the clips' frame windows ([B,T,64], digit_crops) the classifier reads as the digit their
    prompt asked for."""
    predicted = clip_digit_classifier().predict(crops.flatten(0, 1).numpy()).reshape(crops.shape[:2])
    return float((predicted == np.array([parse_digit(p) for p in prompts])[:, None]).mean())
