"""Scoring throughput and memory: visreward vs the naive way, on the same real images, in one run.

    python benchmarks/scoring.py                  # ~8 minutes on a 2-core CPU
    python benchmarks/scoring.py --device cuda    # GPU rows (bf16/fp16 autocast, large batches)

Images: real photographs shipped with scikit-image and real digits from scikit-learn,
cut to mixed sizes (64 to 1024 px) and saved as JPEG and PNG. Rows:
  naive        one image per forward pass, eager PyTorch fp32 (how popular reward packages score)
  end-to-end   `visreward score`: read -> decode -> preprocess -> encode -> head -> parquet
  ceiling      the encoder alone on pre-decoded, pre-resized tensors (same runtime and micro-batches as end-to-end)
  decode       read -> decode -> preprocess alone, in the same worker threads (no encoder)
  peak RSS     `visreward score` on 2k vs 20k images, in fresh processes
  head / cache head training from 1k cached features; re-scoring from the feature cache
  drift        reduced-precision and ONNX paths vs eager fp32: max |d score| and Spearman rho
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

from visreward import DiscriminativeRewardModel, RewardTrainingConfig, train_reward_model
from visreward.io.digits import digit_image, real_digits
from visreward.io.images import load_image
from visreward.scoring import ScoreConfig, run_score


def make_images(folder: Path, n: int, seed: int = 0) -> Path:
    """n real images of mixed sizes and formats (photos and digits), written once."""
    import skimage.data

    if folder.exists() and len(list(folder.iterdir())) >= n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
              for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "hubble_deep_field")]
    digits, _ = real_digits("evaluation")
    for i in range(n):
        if i % 5 == 4:
            image = digit_image(digits[i % len(digits)])
        else:
            photo = photos[i % len(photos)]
            w, h = photo.size
            crop = rng.integers(min(w, h) // 3, min(w, h))
            left, top = rng.integers(0, w - crop + 1), rng.integers(0, h - crop + 1)
            side = int(rng.choice([64, 128, 256, 384, 512, 768, 1024]))
            image = photo.crop((left, top, left + crop, top + crop)).resize((side, int(side * rng.uniform(0.6, 1.4))))
        image.save(folder / (f"{i:06d}.jpg" if i % 2 else f"{i:06d}.png"), quality=90)
    return folder


def replicate(source: Path, folder: Path, n: int) -> Path:
    """n files as hard links to the images of `source` (same bytes, no extra disk, no time to encode)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(source.iterdir())
    for i in range(n):
        link = folder / f"{i:06d}{files[i % len(files)].suffix}"
        if not link.exists():
            os.link(files[i % len(files)], link)
    return folder


def naive_rate(model: DiscriminativeRewardModel, paths: list[str]) -> float:
    """How popular reward packages score: PIL open/resize/crop, torch normalise, one image per eager forward."""
    encoder, head = model.encoder, model.head
    recipe = encoder.preprocessing
    mean, std = torch.tensor(recipe.mean).view(3, 1, 1), torch.tensor(recipe.std).view(3, 1, 1)
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB")
            scale = recipe.resize / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
            left, top = (image.width - recipe.crop) // 2, (image.height - recipe.crop) // 2
            image = image.crop((left, top, left + recipe.crop, top + recipe.crop))
            pixels = (torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1) - mean) / std
            head(encoder.embed_pixels(pixels[None]))
    return len(paths) / (time.perf_counter() - start)


def end_to_end(model_dir: Path, folder: Path, output: Path, backend: str, precision: str, device: str,
               batch_size: int, workers: int) -> float:
    config = ScoreConfig(inputs=[str(folder)], model=str(model_dir), output=str(output), backend=backend,
                         precision=precision, device=device, batch_size=batch_size, num_workers=workers,
                         no_cache=True, progress=False)
    start = time.perf_counter()
    run = run_score(config)
    return run.rows / (time.perf_counter() - start)


def ceiling_rate(model: DiscriminativeRewardModel, paths: list[str], batch_size: int) -> float:
    """The encoder's best path (its CPU micro-batches, or the GPU copy) and the head, on ready pixels."""
    pixels = torch.stack([model.encoder.preprocessing(load_image(p)) for p in paths])
    with torch.inference_mode():
        model.encoder.encode_pixels(pixels[:batch_size])  # warm-up
        start = time.perf_counter()
        for chunk in pixels.split(batch_size):
            model.head(model.encoder.encode_pixels(chunk))
    return len(paths) / (time.perf_counter() - start)


def decode_rate(model: DiscriminativeRewardModel, paths: list[str], workers: int) -> float:
    """Read, decode and preprocess alone, in the worker threads `visreward score` uses: the other half of the CPU work."""
    recipe = model.encoder.preprocessing
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda p: recipe(load_image(p, draft_size=recipe.input_size)), paths):
            pass
    return len(paths) / (time.perf_counter() - start)


def peak_rss_mb(model_dir: Path, folder: Path, output: Path, extra: list[str]) -> float:
    """Peak RSS of a fresh `visreward score` process.

    Read from /proc/self/status (VmHWM, reset at exec): ru_maxrss would include this big
    parent process's footprint, which a forked child carries across exec.
    """
    code = ("import sys; from visreward.cli import main; code = main(sys.argv[1:]); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, "score", "--model", str(model_dir), "--output", str(output),
                             "--no-progress", *extra, str(folder)], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def drift(model_dir: Path, paths: list[str], reference: torch.Tensor, device: str, backend: str, precision: str) -> tuple[float, float]:
    model = DiscriminativeRewardModel.from_pretrained(model_dir, device=device, backend=backend, precision=precision)
    scores = model.score(paths, batch_size=64)
    return float((scores - reference).abs().max()), float(spearmanr(scores.numpy(), reference.numpy())[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=2000, help="images for the throughput rows")
    parser.add_argument("--n-large", type=int, default=20000, help="images for the memory row")
    parser.add_argument("--n-naive", type=int, default=200, help="images for the naive row (it is slow)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "visreward-bench"))
    args = parser.parse_args()
    work = Path(args.work_dir)
    os.environ.setdefault("VISREWARD_CACHE", str(work / "cache"))
    on_gpu = args.device.startswith("cuda")
    fast = dict(backend="torch", precision="bf16") if on_gpu else dict(backend="onnx", precision="fp32")

    small = make_images(work / "images-2k", args.n)
    large = replicate(small, work / "images-20k", args.n_large)
    paths = sorted(str(p) for p in small.iterdir())

    # A real reward model to score with: digits vs photos is not the point; any trained head is.
    target, generated = work / "train-target", work / "train-generated"
    for folder, offset in ((target, 0), (generated, 1)):
        folder.mkdir(parents=True, exist_ok=True)
        for p in paths[offset:600:2]:
            link = folder / Path(p).name
            if not link.exists():
                os.symlink(p, link)
    model_dir = work / "rm"
    train_reward_model(RewardTrainingConfig(target=[str(target)], generated=[str(generated)], output=str(model_dir),
                                            device=args.device, progress=False))
    eager = DiscriminativeRewardModel.from_pretrained(model_dir, device=args.device)
    accelerated = DiscriminativeRewardModel.from_pretrained(model_dir, device=args.device, **fast)

    rows: list[tuple[str, str, str]] = []
    naive = naive_rate(eager, paths[: args.n_naive])
    rows.append(("naive: 1 image/forward, eager fp32", f"{naive:.1f} img/s", f"{args.n_naive} images"))
    e2e = end_to_end(model_dir, small, work / "e2e.parquet", fast["backend"], fast["precision"], args.device,
                     args.batch_size, args.workers)
    rows.append((f"visreward end to end ({fast['backend']} {fast['precision']})", f"{e2e:.1f} img/s", f"{args.n} images -> parquet"))
    e2e_eager = end_to_end(model_dir, small, work / "e2e-eager.parquet", "torch", "fp32", args.device,
                           args.batch_size, args.workers)
    rows.append(("visreward end to end (torch fp32)", f"{e2e_eager:.1f} img/s", f"{args.n} images -> parquet"))
    ceiling = ceiling_rate(accelerated, paths[:500], args.batch_size)
    rows.append((f"ceiling: encoder+head on ready tensors ({fast['backend']} {fast['precision']})", f"{ceiling:.1f} img/s", "500 images"))
    decode = decode_rate(accelerated, paths, args.workers)
    rows.append(("read + decode + preprocess alone (worker threads)", f"{decode:.1f} img/s", f"{args.n} images"))
    rows.append(("ratio end-to-end / naive", f"{e2e / naive:.1f}x", "target >= 5x"))
    rows.append(("ratio end-to-end / ceiling", f"{e2e / ceiling:.2f}", "target >= 0.8"))
    if not on_gpu:
        # Decoding and encoding share the same cores: at best their times add up.
        shared = 1 / (1 / decode + 1 / ceiling)
        rows.append(("bound when both share the CPU: 1/(1/decode + 1/ceiling)", f"{shared:.1f} img/s",
                     f"end-to-end reaches {e2e / shared:.2f} of it"))

    rss_small = peak_rss_mb(model_dir, small, work / "rss-2k.parquet", ["--no-cache"])
    rss_large = peak_rss_mb(model_dir, large, work / "rss-20k.parquet", ["--no-cache"])
    rows.append((f"peak RSS, {args.n} images", f"{rss_small:.0f} MB", ""))
    rows.append((f"peak RSS, {args.n_large} images", f"{rss_large:.0f} MB", f"{(rss_large / rss_small - 1) * 100:+.1f}% (target within 10%)"))

    features = torch.from_numpy(np.random.default_rng(0).standard_normal((1000, 1280)).astype(np.float32))
    from visreward.rewards.discriminative.trainer import LabeledFeatures, fit_head, labeled, with_media_defaults

    head_model = DiscriminativeRewardModel.create(eager.encoder)
    head_model.head.fit_normalisation(features)
    train = LabeledFeatures.cat([labeled(features[:400] + 0.1, 1.0), labeled(features[500:900], 0.0)])
    held = LabeledFeatures.cat([labeled(features[400:500] + 0.1, 1.0), labeled(features[900:], 0.0)])
    start = time.perf_counter()
    history = fit_head(head_model, train, held, with_media_defaults(RewardTrainingConfig(), video=False),
                       torch.Generator().manual_seed(0))
    rows.append(("head training, 1000 cached features", f"{time.perf_counter() - start:.2f} s", f"{len(history)} epochs (target < 2 s)"))

    cache_config = ScoreConfig(inputs=[str(small)], model=str(model_dir), output=str(work / "cached.parquet"),
                               progress=False, device=args.device, batch_size=args.batch_size, **fast)
    run_score(cache_config)  # fills the cache
    start = time.perf_counter()
    run = run_score(cache_config)
    rows.append(("re-scoring from the feature cache", f"{run.rows / (time.perf_counter() - start):.0f} img/s", f"{run.rows} images"))

    reference = eager.score(paths[:500], batch_size=64)
    variants = [("onnx", "fp32"), ("torch", "bf16")] if not on_gpu else [("torch", "bf16"), ("torch", "fp16")]
    for backend, precision in variants:
        max_delta, rho = drift(model_dir, paths[:500], reference, args.device, backend, precision)
        rows.append((f"drift {backend} {precision} vs eager fp32", f"max|d| {max_delta:.2e}", f"Spearman {rho:.5f} (>= 0.999)"))

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    if on_gpu:
        machine += f", {torch.cuda.get_device_name()}"
    print(f"\nmachine: {machine}, device {args.device}\n")
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | {'value':>16} | note |")
    print(f"|{'-' * (width + 2)}|{'-' * 18}|------|")
    for name, value, note in rows:
        print(f"| {name:<{width}} | {value:>16} | {note} |")
    print(json.dumps({"peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
