"""Real handwritten digits shipped inside scikit-learn (1797 images, 8x8): no downloads.

Split once, deterministically: the bundled generator trains on all of `train` (the demo's
target set is a subset of it with a look, as the paper's proxy data is a subset of what a
base model saw), and `evaluation` is held out for judges (digit classifier, held-out target
images for the Frechet distance and the copying check) that no generator or reward saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from ..core.errors import VisrewardError

PROMPT_TEMPLATE = "a handwritten digit {digit}"
SPLITS = {"train": (0, 1400), "evaluation": (1400, None)}
_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digit_prompt(digit: int) -> str:
    return PROMPT_TEMPLATE.format(digit=digit)


def parse_digit(prompt: str) -> int:
    """'a handwritten digit 7' (or '... seven') -> 7."""
    match = re.search(r"\b([0-9])\b", prompt) or re.search(r"\b(" + "|".join(_WORDS) + r")\b", prompt.lower())
    if not match:
        raise VisrewardError(f"prompt {prompt!r} names no digit (expected e.g. {digit_prompt(7)!r})")
    token = match.group(1)
    return int(token) if token.isdigit() else _WORDS.index(token)


@lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(images))
    return (images[order] / 16.0).reshape(-1, 8, 8).astype(np.float32), labels[order]


def real_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N,8,8] float in [0,1], labels [N]) of one split."""
    if split not in SPLITS:
        raise VisrewardError(f"unknown digits split '{split}' (have: {', '.join(SPLITS)})")
    start, stop = SPLITS[split]
    images, labels = _all_digits()
    return images[start:stop], labels[start:stop]


def digit_image(pixels: np.ndarray) -> Image.Image:
    """[8,8] floats in [0,1] (white ink on black, as in sklearn) -> a grayscale PIL image."""
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), mode="L")


def write_digits_folder(folder, split: str, indices=None):
    """An imagefolder (PNG + metadata.jsonl prompts) of a split's digits, or of `indices` into it."""
    from .samples import GeneratedSample, save_samples

    images, labels = real_digits(split)
    indices = range(len(images)) if indices is None else indices
    return save_samples([GeneratedSample(digit_image(images[i]), digit_prompt(int(labels[i])), -1) for i in indices], folder)


def ink(images) -> np.ndarray:
    """The style statistic of the demo: ink mass, the summed intensity of a digit's pixels.

    images: [N,8,8] floats in [0,1] (sklearn's layout) or [N,3,8,8] generated tensors.
    """
    pixels = np.asarray(images, dtype=np.float64)
    if pixels.ndim == 4:
        pixels = pixels.mean(axis=1)
    return pixels.reshape(len(pixels), -1).sum(axis=1)


def bold_indices(split: str, fraction: float) -> np.ndarray:
    """Indices of the digits whose ink mass is in the top `fraction` of their own class (the demo's look)."""
    images, labels = real_digits(split)
    mass = ink(images)
    threshold = {c: np.quantile(mass[labels == c], 1 - fraction) for c in np.unique(labels)}
    return np.array([i for i in range(len(images)) if mass[i] >= threshold[labels[i]]])


MOTIONS = {"right": (0.0, 1.0), "left": (0.0, -1.0), "down": (1.0, 0.0), "up": (-1.0, 0.0), "still": (0.0, 0.0)}


def digit_clip(pixels: np.ndarray, motion: str, frames: int = 8, size: int = 32, scale: int = 2,
               speed: float = 2.0, jitter: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """A clip of one real digit moving across a black square: uint8 [T,size,size,3], white ink.

    pixels: an [8,8] digit in [0,1], drawn `scale` times larger. It starts so that its path stays
    centred in the frame and moves `speed` pixels a frame in the `motion` direction (MOTIONS), plus
    Gaussian `jitter` pixels a frame (the path is clipped to the frame). Positions between pixels
    are drawn bilinearly, so the ink's centroid moves exactly `speed` pixels a frame.
    """
    if motion not in MOTIONS:
        raise VisrewardError(f"unknown motion '{motion}' (have: {', '.join(MOTIONS)})")
    rng = rng or np.random.default_rng(0)
    path = straight_path(frames, size - pixels.shape[0] * scale, speed, np.array(MOTIONS[motion]))
    shake = rng.normal(0.0, jitter, (frames, 2)) if jitter else 0.0
    return draw_path(pixels, path + shake, size, scale)


def straight_path(frames: int, room: float, speed: float, direction: np.ndarray) -> np.ndarray:
    """`speed` px/frame along `direction` (row, column; unit, or zero for none), centred in `room` px: [T,2]."""
    steps = np.arange(frames)[:, None] * speed * direction
    return room / 2 + steps - steps.mean(axis=0)


def glide_path(rng: np.random.Generator, frames: int, room: float, max_speed: float = 1.5) -> np.ndarray:
    """A constant velocity of 0.5 to `max_speed` px/frame in a random direction, centred in `room` px: [T,2]."""
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, max_speed)
    return straight_path(frames, room, speed, np.array([np.sin(angle), np.cos(angle)]))


def jitter_path(rng: np.random.Generator, frames: int, room: float, max_jump: float = 6.0) -> np.ndarray:
    """From the centre of `room` px, a random jump of up to `max_jump` px per axis every frame: [T,2]."""
    jumps = rng.uniform(-max_jump, max_jump, (frames, 2))
    jumps[0] = 0
    return np.clip(room / 2 + np.cumsum(jumps, axis=0), 0, room)


def draw_path(pixels: np.ndarray, path: np.ndarray, size: int = 32, scale: int = 2,
              brightness: np.ndarray | None = None) -> np.ndarray:
    """A digit drawn at each frame's (row, column) of `path` [T,2] (top-left corner, clipped to the frame; between
    pixels bilinearly) on a black square, its ink times `brightness` [T] (default 1): uint8 [T,size,size,3]."""
    digit = np.kron(np.clip(pixels, 0, 1), np.ones((scale, scale)))
    side = digit.shape[0]
    path = np.clip(path, 0, size - side)
    clip = np.zeros((len(path), size + 1, size + 1), dtype=np.float64)  # one spare row and column for the bilinear spill
    for t, (row, col) in enumerate(path):
        top, left = int(row), int(col)
        down, right = row - top, col - left
        for dr, wr in ((0, 1 - down), (1, down)):
            for dc, wc in ((0, 1 - right), (1, right)):
                clip[t, top + dr : top + dr + side, left + dc : left + dc + side] += wr * wc * digit
    if brightness is not None:
        clip *= np.asarray(brightness, dtype=np.float64)[:, None, None]
    return np.repeat((np.clip(clip[:, :size, :size], 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


# The video miniature's data: every digit of a split in each of four directions, each clip at its own speed.
VIDEO_PROMPT_TEMPLATE = "a digit {digit} moving {motion}"
DIRECTIONS = ("right", "left", "down", "up")
SPEED_RANGE = (0.25, 1.0)  # pixels a frame: an 8-px digit crosses at most 7 px of a 16-px frame in 8 frames
CLIP_FRAMES, CLIP_SIZE, CLIP_FPS = 8, 16, 8.0


def motion_prompt(digit: int, motion: str) -> str:
    return VIDEO_PROMPT_TEMPLATE.format(digit=digit, motion=motion)


def parse_motion(prompt: str) -> str:
    """'a digit 3 moving right' -> 'right'."""
    match = re.search(r"\bmoving (" + "|".join(DIRECTIONS) + r")\b", prompt)
    if not match:
        raise VisrewardError(f"prompt {prompt!r} names no motion (expected e.g. {motion_prompt(3, 'right')!r})")
    return match.group(1)


@dataclass(frozen=True)
class MovingDigits:
    """One row per clip: which digit of the split, where it moves, how fast (pixels a frame)."""

    index: np.ndarray
    motion: np.ndarray
    speed: np.ndarray
    label: np.ndarray

    def prompts(self) -> list[str]:
        return [motion_prompt(int(d), str(m)) for d, m in zip(self.label, self.motion)]

    def subset(self, rows) -> "MovingDigits":
        return MovingDigits(self.index[rows], self.motion[rows], self.speed[rows], self.label[rows])

    def __len__(self) -> int:
        return len(self.index)


@lru_cache(maxsize=2)
def moving_digits(split: str) -> MovingDigits:
    """Every digit of the split in each direction, at a speed drawn uniformly from SPEED_RANGE (fixed per split)."""
    _, labels = real_digits(split)
    index = np.repeat(np.arange(len(labels)), len(DIRECTIONS))
    motion = np.tile(np.array(DIRECTIONS), len(labels))
    speed = np.random.default_rng(sorted(SPLITS).index(split)).uniform(*SPEED_RANGE, len(index))
    return MovingDigits(index, motion, speed, labels[index])


def slow_rows(split: str, fraction: float) -> np.ndarray:
    """Rows of moving_digits(split) whose speed is in the slowest `fraction` (the video demo's look)."""
    speed = moving_digits(split).speed
    return np.flatnonzero(speed <= np.quantile(speed, fraction))


def moving_digit_clips(split: str, rows: MovingDigits) -> np.ndarray:
    """uint8 [N,T,16,16,3] clips of the rows (the 8x8 digit drawn at its own size)."""
    images, _ = real_digits(split)
    return np.stack([digit_clip(images[i], str(m), frames=CLIP_FRAMES, size=CLIP_SIZE, scale=1, speed=float(v))
                     for i, m, v in zip(rows.index, rows.motion, rows.speed)])


def write_clips_folder(folder, split: str, rows: MovingDigits):
    """A video folder (mp4 + metadata.jsonl prompts and frame counts) of moving digits."""
    from .samples import GeneratedSample, save_samples

    clips = moving_digit_clips(split, rows)
    samples = [GeneratedSample([Image.fromarray(frame) for frame in clip], prompt, -1, CLIP_FPS)
               for clip, prompt in zip(clips, rows.prompts())]
    return save_samples(samples, folder)
