"""Can a video GAN-RM see motion? Held-out AUC per contrast and per video-feature recipe, with its cost.

    python benchmarks/motion_contrasts.py [--train 60] [--heldout 30] [--recipes global-8 maps-16] [--train-seeds 3]

Each contrast draws the same real digits (the package's 8x8 digits at 4x, on 64-px frames, 16 frames at 8 fps, mp4)
on both sides; only what the contrast names differs:
  smooth vs jitter       a constant velocity of up to 1.5 px/frame, against a random jump of up to 6 px every frame
  constant vs stutter    the same glide, against it with frames duplicated and dropped (the time index stalls or skips)
  steady vs flicker      the same glide, its ink at full brightness against a per-frame brightness in [0.5, 1]
  falling vs rising      falling from rest under constant acceleration, against the same clip played backwards
  moving vs frozen       the same glide, against its first frame held
  bold vs thin           (appearance) the same glide, digits in the top against the bottom third of ink mass
For each recipe and contrast a GAN-RM trains (`train_reward_model`, as `visreward train-rm` does) on --train target
and --train generated clips, and scores --heldout of each it never saw; the table reports that AUC and the scoring
rate in clips per second (features not cached).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE, SCALE, FRAMES, FPS = 64, 4, 16, 8.0
GLOBAL, WITH_MAPS = ["mean", "std", "motion"], ["mean", "std", "motion", "flow", "flow-std", "flow-trend"]
RECIPES = {  # name -> train_reward_model settings for the video encoder
    "global-8": {"frames": 8, "pooling": GLOBAL},                # 8 span-centre frames, no maps
    "global-8-one-head": {"frames": 8, "pooling": GLOBAL, "heads": 1, "lr": 1e-3},  # the default before issue 24
    "global-16": {"frames": FRAMES, "pooling": GLOBAL},          # every frame
    "maps-8": {"frames": 8, "pooling": WITH_MAPS},               # + spatial-map change: flow, flow-std, flow-trend
    "maps-8-consecutive": {"frames": 8, "fps": FPS, "pooling": WITH_MAPS},  # 8 consecutive frames around the middle
    "maps-16": {"frames": FRAMES, "pooling": WITH_MAPS},         # every frame: today's default
    "maps-16-weighted": {"frames": FRAMES, "pooling": WITH_MAPS, "map_weight": 0.25},  # flow 1/4, flow-std, -trend 1/16
}


def glide(rng: np.random.Generator) -> np.ndarray:
    from visreward.io.digits import glide_path

    return glide_path(rng, FRAMES, SIZE - 8 * SCALE)


def jitter(rng: np.random.Generator) -> np.ndarray:
    from visreward.io.digits import jitter_path

    return jitter_path(rng, FRAMES, SIZE - 8 * SCALE)


def stutter(path: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The path with frames duplicated or dropped: the time index stalls (0) or skips (2) a third of the time."""
    advance = rng.choice([0, 1, 2], size=FRAMES - 1, p=[1 / 6, 2 / 3, 1 / 6])
    return path[np.clip(np.concatenate([[0], np.cumsum(advance)]), 0, FRAMES - 1)]


def falling(rng: np.random.Generator) -> np.ndarray:
    column = rng.uniform(4, SIZE - 8 * SCALE - 4)
    rows = 2 + 0.5 * rng.uniform(0.12, 0.2) * np.arange(FRAMES) ** 2  # from rest, under constant acceleration
    return np.stack([rows, np.full(FRAMES, column)], axis=1)


def contrast_clips(name: str, digits: np.ndarray, rng: np.random.Generator) -> tuple[list, list]:
    """(target clips, generated clips), uint8 [T,H,W,3] each, one per digit."""
    from visreward.io.digits import draw_path

    target, generated = [], []
    for pixels in digits:
        path = glide(rng)
        if name == "smooth vs jitter":
            pair = draw_path(pixels, path, SIZE, SCALE), draw_path(pixels, jitter(rng), SIZE, SCALE)
        elif name == "constant vs stutter":
            pair = draw_path(pixels, path, SIZE, SCALE), draw_path(pixels, stutter(path, rng), SIZE, SCALE)
        elif name == "steady vs flicker":
            pair = (draw_path(pixels, path, SIZE, SCALE),
                    draw_path(pixels, path, SIZE, SCALE, brightness=rng.uniform(0.5, 1.0, FRAMES)))
        elif name == "falling vs rising":
            clip = draw_path(pixels, falling(rng), SIZE, SCALE)
            pair = clip, clip[::-1].copy()
        elif name == "moving vs frozen":
            clip = draw_path(pixels, path, SIZE, SCALE)
            pair = clip, np.repeat(clip[:1], FRAMES, axis=0)
        else:
            raise ValueError(name)
        target.append(pair[0])
        generated.append(pair[1])
    return target, generated


def appearance_clips(bold: np.ndarray, thin: np.ndarray, rng: np.random.Generator) -> tuple[list, list]:
    from visreward.io.digits import draw_path

    return ([draw_path(p, glide(rng), SIZE, SCALE) for p in bold], [draw_path(p, glide(rng), SIZE, SCALE) for p in thin])


def write_clips(folder: Path, clips: list) -> list[Path]:
    from visreward.io.videos import write_video

    folder.mkdir(parents=True)
    return [write_video(folder / f"{i:04d}.mp4", clip, fps=FPS) for i, clip in enumerate(clips)]


def measure(root: Path, recipe: str, heldout: tuple[list[Path], list[Path]], train_seed: int = 0,
            cache: Path | None = None) -> tuple[float, float]:
    """(held-out AUC, scoring clips/s) of a GAN-RM trained with `recipe` and `train_seed` on root's train-target /
    train-generated. Without `cache` nothing is cached (the rate is then the uncached one); with it, the clips'
    features are read from and written to it (for further training seeds on the same clips)."""
    from visreward import RewardTrainingConfig, load_reward_model, train_reward_model
    from visreward.encoders.features import FeatureCache
    from visreward.evaluation.metrics import roc_auc

    output = root / f"rm-{recipe}-{train_seed}"
    train_reward_model(RewardTrainingConfig(target=[str(root / "train-target")], generated=[str(root / "train-generated")],
                                            output=str(output), test=0.0, progress=False, seed=train_seed,
                                            no_cache=cache is None, cache_dir=None if cache is None else str(cache),
                                            **RECIPES[recipe]))
    model = load_reward_model(str(output))
    scoring_cache = None if cache is None else FeatureCache(cache)
    model.score([str(heldout[0][0])])  # warm-up: the first call builds the encoder's kernels
    began = time.perf_counter()
    scores = model.score([str(p) for p in heldout[0] + heldout[1]], cache=scoring_cache).numpy()
    rate = len(scores) / (time.perf_counter() - began)
    return roc_auc(scores[: len(heldout[0])], scores[len(heldout[0]) :]), rate


def measure_seeds(root: Path, recipe: str, heldout: tuple[list[Path], list[Path]], train_seeds: int) -> tuple[str, float]:
    """The held-out AUC (its mean and range over `train_seeds` training seeds when more than one) and the uncached
    scoring rate of the first."""
    auc, rate = measure(root, recipe, heldout)
    aucs = [auc] + [measure(root, recipe, heldout, seed, root / f"cache-{recipe}")[0] for seed in range(1, train_seeds)]
    if train_seeds == 1:
        return f"{auc:.3f}", rate
    return f"{np.mean(aucs):.3f} ({min(aucs):.3f}-{max(aucs):.3f})", rate


def main() -> None:
    from visreward.io.digits import ink, real_digits

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--heldout", type=int, default=30)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--contrasts", nargs="+", type=int, help="indices of the contrasts to run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-seeds", type=int, default=1,
                        help="GAN-RMs trained per recipe and contrast, from seeds 0.. (the AUC's mean and range)")
    args = parser.parse_args()
    images, _ = real_digits("train")
    rng = np.random.default_rng(args.seed)
    count = args.train + args.heldout
    order = rng.permutation(len(images))
    mass = ink(images)
    bold, thin = np.argsort(-mass)[: len(images) // 3], np.argsort(mass)[: len(images) // 3]
    contrasts = {name: contrast_clips(name, images[order[:count]], rng)
                 for name in ("smooth vs jitter", "constant vs stutter", "steady vs flicker", "falling vs rising",
                              "moving vs frozen")}
    contrasts["bold vs thin (appearance)"] = appearance_clips(images[rng.permutation(bold)[:count]],
                                                              images[rng.permutation(thin)[:count]], rng)
    print(f"{args.train} + {args.train} training clips, {args.heldout} + {args.heldout} held out; {FRAMES} frames of "
          f"{SIZE}x{SIZE} at {FPS:g} fps\n")
    print("| contrast | " + " | ".join(f"{r}: AUC | {r}: clips/s" for r in args.recipes) + " |")
    print("|---|" + "---:|---:|" * len(args.recipes))
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, (target, generated)) in enumerate(contrasts.items()):
            if args.contrasts and index not in args.contrasts:
                continue
            root = Path(tmp) / str(index)
            write_clips(root / "train-target", target[: args.train])
            write_clips(root / "train-generated", generated[: args.train])
            heldout = write_clips(root / "heldout-target", target[args.train :]), write_clips(root / "heldout-generated",
                                                                                              generated[args.train :])
            cells = []
            for recipe in args.recipes:
                auc, rate = measure_seeds(root, recipe, heldout, args.train_seeds)
                cells += [auc, f"{rate:.0f}"]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
