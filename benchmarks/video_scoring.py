"""Video scoring throughput and memory: `visreward score` vs the naive loop, on the same clips, in one run.

    python benchmarks/video_scoring.py            # ~6 minutes on a 2-core CPU (the long video is written once)

Clips: 48 clips of 49 frames at 720x480 and 8 fps (CogVideoX's output shape), real photographs
from scikit-image panning under a real digit moving across them, H.264 in mp4. Rows:
  naive        decode every frame with PyAV, then encode them one per forward pass (eager PyTorch fp32)
               and mean-pool: how a frame-wise reward is usually wrapped around a video
  visreward    `visreward score` with a video GAN-RM (8 sampled frames per clip, default encoder):
               read -> seek and decode 8 frames -> preprocess -> encode -> pool -> head -> parquet
  long video   peak RSS (VmHWM) of a fresh `visreward score` process on one 10-minute 1080p H.264 video,
               and that process's seconds, against what holding the video's decoded frames would take
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from scoring import peak_rss_mb  # benchmarks/scoring.py: VmHWM of a fresh `visreward score` process

from visreward import DiscriminativeRewardModel, RewardTrainingConfig, train_reward_model
from visreward.io.digits import digit_clip, real_digits
from visreward.io.videos import write_video
from visreward.scoring import ScoreConfig, run_score

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def panning(photo: np.ndarray, n: int, width: int, height: int, digit: np.ndarray | None = None, motion: str = "still",
            seed: int = 0):
    """n frames of a window panning across a photo (tiled to cover the frame), with a digit gliding over it."""
    reps = (-(-2 * height // photo.shape[0]), -(-2 * width // photo.shape[1]), 1)
    canvas = np.tile(photo, reps)
    glide = None if digit is None else digit_clip(digit, motion, frames=n, size=height // 2, scale=height // 32,
                                                  speed=1.0, rng=np.random.default_rng(seed))
    for t in range(n):
        top, left = t % (canvas.shape[0] - height), (3 * t) % (canvas.shape[1] - width)
        frame = canvas[top : top + height, left : left + width].copy()
        if glide is not None:
            frame[: height // 2, : height // 2] = np.maximum(frame[: height // 2, : height // 2], glide[t])
        yield frame


def make_clips(folder: Path, n: int, frames: int = 49, width: int = 720, height: int = 480) -> list[Path]:
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    photos = [np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB")) for name in PHOTOS]
    digits, _ = real_digits("evaluation")
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.mp4"
        if not path.exists():
            motion = "right" if i % 2 else "still"
            write_video(path, panning(photos[i % len(photos)], frames, width, height, digits[i], motion, i), fps=8,
                        quality=23, preset="veryfast")
        paths.append(path)
    return paths


def make_long_video(path: Path, minutes: float = 10, fps: int = 24) -> Path:
    """A 1080p H.264 video of `minutes` minutes: a photo panning slowly (x264's default keyframe interval)."""
    import skimage.data

    if path.exists():
        return path
    photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((1024, 1024)))
    write_video(path, panning(photo, int(minutes * 60 * fps), 1920, 1080), fps=fps, quality=23, preset="ultrafast")
    return path


def naive_rate(model: DiscriminativeRewardModel, paths: list[Path]) -> float:
    """Decode every frame, then one frame per forward pass, mean-pooled: videos per second."""
    image_encoder = model.encoder.image
    started = time.perf_counter()
    for path in paths:
        with av.open(str(path)) as container:
            frames = [frame.to_image() for frame in container.decode(video=0)]
        with torch.inference_mode():
            features = torch.cat([image_encoder.encode([frame]) for frame in frames])
        features.mean(dim=0)
    return len(paths) / (time.perf_counter() - started)


def visreward_rate(model_dir: Path, folder: Path, output: Path, n: int) -> float:
    started = time.perf_counter()
    run = run_score(ScoreConfig(inputs=[str(folder)], model=str(model_dir), output=str(output), no_cache=True,
                                progress=False, batch_size=16))
    elapsed = time.perf_counter() - started
    assert run.rows == n, run
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=48, help="clips for the visreward row")
    parser.add_argument("--n-naive", type=int, default=8, help="clips for the naive row (it is slow)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the 1080p video")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "visreward-video-bench"))
    args = parser.parse_args()
    work = Path(args.work_dir)
    clips = make_clips(work / "clips", args.n)
    model_dir = work / "rm"
    if not model_dir.exists():  # gliding vs still digits over the photos: a real video GAN-RM
        (work / "gliding").mkdir(exist_ok=True)
        (work / "still").mkdir(exist_ok=True)
        for i, clip in enumerate(clips):
            target = work / ("gliding" if i % 2 else "still") / clip.name
            if not target.exists():
                target.symlink_to(clip)
        train_reward_model(RewardTrainingConfig(target=[str(work / "gliding")], generated=[str(work / "still")],
                                                output=str(model_dir), progress=False, test=0.0, holdout=0.25))
    model = DiscriminativeRewardModel.from_pretrained(model_dir)
    naive = naive_rate(model, clips[: args.n_naive])
    fast = visreward_rate(model_dir, work / "clips", work / "scores.parquet", args.n)
    long_video = make_long_video(work / f"long-{args.minutes:g}min-1080p.mp4", args.minutes)
    started = time.perf_counter()
    rss = peak_rss_mb(model_dir, long_video, work / "long.parquet", ["--no-cache"])
    seconds = time.perf_counter() - started  # the whole process: start-up, loading the model, scoring
    short_rss = peak_rss_mb(model_dir, clips[0], work / "short.parquet", ["--no-cache"])
    with av.open(str(long_video)) as container:
        frames = container.streams.video[0].frames
    print(f"| naive (decode all {49} frames, encode one frame per pass) | {naive:.2f} videos/s | 1.00 |")
    print(f"| visreward score (8 sampled frames, default encoder) | {fast:.2f} videos/s | {fast / naive:.1f} |")
    print(f"| {args.minutes:g}-minute 1080p video ({frames} frames, {long_video.stat().st_size / 2**20:.0f} MiB) | "
          f"peak RSS {rss:.0f} MB, {seconds:.1f} s | one 6-second 720x480 clip: {short_rss:.0f} MB; all the long "
          f"video's frames decoded would hold {frames * 1920 * 1080 * 3 / 2**30:.0f} GiB |")


if __name__ == "__main__":
    main()
