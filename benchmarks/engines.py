"""Scoring engines where the bottleneck is not the shared CPU, and the reward's share of Best-of-N.

    python benchmarks/engines.py          # ~15 minutes on a 2-core CPU

Tables, each measured in one run against its baseline:
  ViT-B/16   a CLIP ViT-B/16-shaped vision tower built from its config (random weights: throughput does not need
             trained ones) under a GAN-RM head: the naive per-image loop, the ceiling (encoder + head on ready
             tensors), end to end with the local engine and with Ray (2 CPUs, two actors)
  Lite0      the default encoder: the same rows, and each end-to-end figure as a fraction of the shared-CPU bound
             1/(1/decode + 1/ceiling)
  memory     peak RSS on 2k and 20k images for both engines (Ray: the driver, plus the most its workers held at once)
  Best-of-N  seconds generating vs scoring (`best-of-n`'s own timings) for the bundled generator, a tiny SD
             pipeline and an SD 1.5-sized pipeline (random weights, 256 px, 10 steps)
Images: scoring.py's set (real photographs and digits at 64-1024 px, half JPEG and half PNG).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from scoring import ceiling_rate, decode_rate, make_images, naive_rate, replicate  # noqa: E402
from tiny_pipelines import _tiny_clip_tokenizer, save_tiny_stable_diffusion  # noqa: E402

from visreward import DiscriminativeRewardModel  # noqa: E402
from visreward.encoders import load_encoder  # noqa: E402
from visreward.scoring import ScoreConfig, run_score  # noqa: E402


def save_vit_b16_reward(root: Path) -> Path:
    """CLIP ViT-B/16's vision tower (768 wide, 12 layers, 16 px patches, 224 px, 512-d projection) with a small text
    tower (unused when scoring images), random weights, under an untrained GAN-RM head."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    if (root / "rm" / "config.json").exists():
        return root / "rm"
    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "clip")
    config = CLIPConfig(text_config=dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=77),
                        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                           num_attention_heads=12, patch_size=16, image_size=224),
                        projection_dim=512)
    CLIPModel(config).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size=224).save_pretrained(root / "clip")
    model = DiscriminativeRewardModel.create(load_encoder(f"clip:{root / 'clip'}"))
    model.head.fit_normalisation(torch.randn(64, model.encoder.dim))
    model.save_pretrained(root / "rm")
    return root / "rm"


def end_to_end(model_dir: Path, folder: Path, output: Path, engine: str, batch_size: int) -> float:
    extra = dict(ray_actors=2, ray_cpus_per_actor=1.0) if engine == "ray" else {}
    config = ScoreConfig(inputs=[str(folder)], model=str(model_dir), output=str(output), batch_size=batch_size,
                         no_cache=True, progress=False, engine=engine, **extra)
    start = time.perf_counter()
    run = run_score(config)
    elapsed = time.perf_counter() - start
    if run.rows != len(list(folder.iterdir())):
        raise SystemExit(f"{engine} engine scored {run.rows} of {folder}'s images ({run})")
    return run.rows / elapsed


def engine_rows(name: str, model_dir: Path, folder: Path, work: Path, n_naive: int, n_ceiling: int,
                batch_size: int) -> list[tuple]:
    paths = sorted(str(p) for p in folder.iterdir())
    eager = DiscriminativeRewardModel.from_pretrained(model_dir)
    fast = DiscriminativeRewardModel.from_pretrained(model_dir, backend="auto")
    naive = naive_rate(eager, paths[:n_naive])
    ceiling = ceiling_rate(fast, paths[:n_ceiling], batch_size)
    decode = decode_rate(fast, paths, 4)
    shared = 1 / (1 / decode + 1 / ceiling)
    rows = [(f"{name}: naive, 1 image/forward, eager fp32", f"{naive:.1f} img/s", f"{n_naive} images", ""),
            (f"{name}: ceiling, encoder + head on ready tensors", f"{ceiling:.1f} img/s", f"{n_ceiling} images", ""),
            (f"{name}: read + decode + preprocess alone", f"{decode:.1f} img/s", f"{len(paths)} images", ""),
            (f"{name}: shared-CPU bound 1/(1/decode + 1/ceiling)", f"{shared:.1f} img/s", "", "")]
    for engine in ("local", "ray"):
        rate = end_to_end(model_dir, folder, work / f"{name}-{engine}", engine, batch_size)
        rows.append((f"{name}: end to end, {engine} engine", f"{rate:.1f} img/s",
                     f"{rate / ceiling:.2f} of ceiling, {rate / naive:.1f}x naive", f"{rate / shared:.2f}"))
    # A Ray job pays a fixed start (the pipeline, actor processes, loading the model in each): timed on a
    # few images and taken off, the rest is the rate a long job runs at.
    few = replicate(folder, work / f"{name.replace('/', '')}-few", 4)
    start_up = 4 / end_to_end(model_dir, few, work / f"{name}-ray-few", "ray", batch_size)
    steady = len(paths) / (len(paths) / rate - start_up)
    rows.append((f"{name}: ray engine, fixed start of a job", f"{start_up:.1f} s", "4 images", ""))
    rows.append((f"{name}: ray engine, end to end without that start", f"{steady:.1f} img/s",
                 f"{steady / ceiling:.2f} of ceiling, {steady / naive:.1f}x naive", f"{steady / shared:.2f}"))
    return rows


def peak_rss(model_dir: Path, folder: Path, output: Path, engine: str) -> tuple[float, float]:
    """(driver peak RSS, most RSS its Ray workers held at once) of a fresh `visreward score` process, in MB."""
    code = ("import sys; from visreward.cli import main; code = main(sys.argv[1:]); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(code)")
    extra = ["--engine", "ray", "--ray-actors", "2"] if engine == "ray" else []
    process = subprocess.Popen([sys.executable, "-c", code, "score", "--model", str(model_dir), "--output", str(output),
                                "--no-progress", "--no-cache", *extra, str(folder)], stdout=subprocess.PIPE, text=True)
    workers = [0.0]

    def watch() -> None:
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                held = sum(child.memory_info().rss for child in parent.children(recursive=True))
            except psutil.Error:
                continue
            workers[0] = max(workers[0], held / 2**20)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    stdout, _ = process.communicate()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"visreward score --engine {engine} failed ({process.returncode})")
    return int(stdout.strip().splitlines()[-1]) / 1024, workers[0]


def memory_rows(model_dir: Path, small: Path, large: Path, work: Path) -> list[tuple]:
    rows = []
    for engine in ("local", "ray"):
        (driver_small, workers_small), (driver_large, workers_large) = (
            peak_rss(model_dir, folder, work / f"rss-{engine}-{folder.name}.parquet", engine) for folder in (small, large))
        note = f"{(driver_large / driver_small - 1) * 100:+.1f}% (target within 10%)"
        rows.append((f"peak RSS, {engine} engine, driver: 2k -> 20k images", f"{driver_small:.0f} -> {driver_large:.0f} MB", note, ""))
        if engine == "ray":
            note = f"{(workers_large / workers_small - 1) * 100:+.1f}% (target within 10%)"
            rows.append(("peak RSS, ray engine, all workers at once: 2k -> 20k images",
                         f"{workers_small:.0f} -> {workers_large:.0f} MB", note, ""))
    return rows


def save_sd15_sized_pipeline(root: Path) -> Path:
    """Stable Diffusion 1.5's UNet (860M parameters), VAE and CLIP ViT-L text encoder, from their configs, random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if (root / "sd15" / "model_index.json").exists():
        return root / "sd15"
    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "sd15-tok")
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280))
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77))
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False,
                                       scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                               beta_end=0.012, clip_sample=False, steps_offset=1))
    pipeline.save_pretrained(root / "sd15")
    return root / "sd15"


def best_of_n_rows(work: Path, reward: Path) -> list[tuple]:
    from visreward.generators import DiffusersGenerator
    from visreward.io.digits import digit_prompt
    from visreward.post_training.best_of_n import BestOfNConfig, run_best_of_n

    tiny_sd = work / "tiny-sd-gen"
    DiffusersGenerator.from_pretrained(save_tiny_stable_diffusion(work / "tiny-sd"), num_inference_steps=20).save_pretrained(tiny_sd)
    sd15 = work / "sd15-gen"
    DiffusersGenerator.from_pretrained(save_sd15_sized_pipeline(work), num_inference_steps=10, height=256,
                                       width=256).save_pretrained(sd15)
    cases = [("bundled digits generator (8x8, 20 DDIM steps)", "digits", 10, 8),
             ("tiny SD pipeline (16x16, 20 steps)", str(tiny_sd), 10, 8),
             ("SD 1.5-sized pipeline (random weights, 256x256, 10 steps, CFG 7.5)", str(sd15), 1, 4)]
    rows = []
    for name, generator, prompts, n in cases:
        metrics = run_best_of_n(BestOfNConfig(generator=generator, reward=str(reward), n=n, keep=1, progress=False,
                                              prompts=[digit_prompt(d) for d in range(prompts)],
                                              output=str(work / f"bon-{Path(generator).name}")))
        share = metrics["reward_seconds"] / (metrics["reward_seconds"] + metrics["generation_seconds"])
        rows.append((f"Best-of-{n}, {name}", f"{share:.1%} scoring",
                     f"{metrics['generation_seconds']:.1f} s generating, {metrics['reward_seconds']:.2f} s scoring "
                     f"({prompts * n} samples)", ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="images for the Lite0 and memory rows")
    parser.add_argument("--n-vit", type=int, default=400, help="images for the ViT-B/16 end-to-end rows")
    parser.add_argument("--n-large", type=int, default=20000, help="images for the memory rows")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "visreward-bench"))
    args = parser.parse_args()
    work = Path(args.work_dir)
    os.environ.setdefault("VISREWARD_CACHE", str(work / "cache"))
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")

    small = make_images(work / "images-2k", args.n)
    large = replicate(small, work / "images-20k", args.n_large)
    vit_images = replicate(small, work / f"images-{args.n_vit}", args.n_vit)
    lite0 = work / "engines-lite0-rm"
    if not (lite0 / "config.json").exists():
        model = DiscriminativeRewardModel.create(load_encoder())
        model.head.fit_normalisation(torch.randn(64, model.encoder.dim))
        model.save_pretrained(lite0)

    rows = engine_rows("ViT-B/16", save_vit_b16_reward(work / "vit-b16"), vit_images, work, 40, 100, 64)
    rows += engine_rows("Lite0", lite0, small, work, 200, 500, 64)
    ray.shutdown()  # the memory rows start their own processes, each with its own local Ray
    rows += memory_rows(lite0, small, large, work)
    rows += best_of_n_rows(work, lite0)

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}\n")
    print("| measure | value | note | of shared-CPU bound |\n|---|---:|---|---:|")
    for name, value, note, bound in rows:
        print(f"| {name} | {value} | {note} | {bound} |")


if __name__ == "__main__":
    main()
