"""The GPU check: one script, at most about 8 minutes of an H100/H200-class GPU, one JSON and one table.

    python benchmarks/gpu.py --output gpu.json     # on a GPU (cuda:0)
    python benchmarks/gpu.py --smoke               # tiny sizes on the CPU: the script's own test (make test runs it)

Rows, each through visreward's own code paths and each in fp32 and in bf16:
- scoring: the default encoder (EfficientNet-Lite0, real weights) and a ViT-B/16-class CLIP vision tower (random
  weights: throughput does not depend on them) on preprocessed batches, images per second;
- Best-of-N: one group of N samples from a Stable Diffusion 1.5-sized pipeline (UNet, VAE and text encoder built
  from SD 1.5's configs, random weights) scored by a GAN-RM, seconds per sample and the reward's share;
- DPO and SFT steps on that pipeline (full fine-tuning through accelerate), seconds per step.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_pipelines import _tiny_clip_tokenizer, save_tiny_stable_diffusion  # noqa: E402

from visreward import RewardTrainingConfig, train_reward_model  # noqa: E402
from visreward.generators import DiffusersGenerator, save_samples  # noqa: E402
from visreward.io.pairs import Pair  # noqa: E402
from visreward.post_training import BestOfNConfig, DPOConfig, SFTConfig, run_best_of_n, run_dpo, run_sft, write_pairs  # noqa: E402

PRECISIONS = ("no", "bf16")
PROMPTS = ["a photo of a red apple", "a watercolour of a lighthouse", "a city street at night", "a cat on a sofa"]


def save_sd15_sized(root: Path) -> Path:
    """A StableDiffusionPipeline with SD 1.5's UNet (860M), VAE and CLIP-L text encoder shapes, random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, hidden_size=768, intermediate_size=3072,
                                                num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280))
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False)
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None, requires_safety_checker=False
                            ).save_pretrained(root / "pipeline")
    return root / "pipeline"


def vit_b16_encoder(root: Path, smoke: bool) -> str:
    """A CLIP vision tower of ViT-B/16's shape (tiny in smoke mode) with a processor, as a clip: spec."""
    from tiny_pipelines import _tiny_clip_tokenizer as tokenizer_for
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    size = 32 if smoke else 224
    vision = (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8)
              if smoke else dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                 patch_size=16))
    tokenizer, vocab = tokenizer_for(root / "clip")
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPModel(CLIPConfig(vision_config={**vision, "image_size": size}, text_config=text, projection_dim=32)
              ).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")
    return f"clip:{root / 'clip'}"


def timed(fn, repeats: int) -> float:
    """Seconds per call after one warm-up call (CUDA synchronised)."""
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def scoring_rows(specs: list[str], device: str, batch: int, repeats: int) -> list[dict]:
    from visreward.encoders import load_encoder

    rows = []
    for spec in specs:
        for precision in ("fp32", "bf16"):
            encoder = load_encoder(spec, device=device, backend="torch", precision=precision)
            size = encoder.preprocessing.input_size
            pixels = torch.rand(batch, 3, size, size, device=device)
            with torch.no_grad():
                seconds = timed(lambda: encoder.embed_pixels(pixels), repeats)
            rows.append({"row": "scoring", "what": spec.split("/")[-1], "precision": precision, "batch": batch,
                         "images_per_second": batch / seconds})
    return rows


def best_of_n_row(generator: str, reward: Path, work: Path, device: str, n: int) -> dict:
    summary = run_best_of_n(BestOfNConfig(generator=generator, reward=str(reward), prompts=PROMPTS[:1], n=n,
                                          output=str(work / "bon"), batch_size=n, device=device, backend="torch",
                                          progress=False))
    total = summary["generation_seconds"] + summary["reward_seconds"]
    return {"row": "best-of-n", "what": f"one group of {n}", "precision": "no", "batch": n,
            "seconds_per_sample": total / n, "reward_share": summary["reward_seconds"] / total}


def training_rows(generator: str, pairs: Path, samples: Path, work: Path, device: str, steps: int, batch: int) -> list[dict]:
    from accelerate.state import AcceleratorState

    rows = []
    for precision in PRECISIONS:
        for method in ("DPO", "SFT"):
            AcceleratorState._reset_state(True)  # accelerate keeps one precision per process; this script measures two
            common = dict(generator=generator, output=str(work / f"{method}-{precision}"), steps=steps, batch_size=batch,
                          mixed_precision=precision, log_every=steps, device=device, progress=False)
            metrics = (run_dpo(DPOConfig(pairs=str(pairs), **common)) if method == "DPO"
                       else run_sft(SFTConfig(data=[str(samples)], **common)))
            rows.append({"row": "training", "what": method, "precision": precision, "batch": batch,
                         "seconds_per_step": metrics["seconds_per_step"]})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| row | what | precision | batch | measured |", "|---|---|---|---:|---|"]
    for r in rows:
        measured = {"scoring": lambda: f"{r['images_per_second']:.1f} img/s",
                    "best-of-n": lambda: f"{r['seconds_per_sample']:.3f} s/sample (reward {r['reward_share']:.1%})",
                    "training": lambda: f"{r['seconds_per_step']:.3f} s/step"}[r["row"]]()
        lines.append(f"| {r['row']} | {r['what']} | {r['precision']} | {r['batch']} | {measured} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (checks the script; no GPU figures)")
    parser.add_argument("--output", default="gpu.json", help="JSON written here, the table beside it (.md)")
    args = parser.parse_args(argv)
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    work = Path(tempfile.mkdtemp())
    started = time.time()
    build = save_tiny_stable_diffusion if args.smoke else save_sd15_sized
    side, steps, batch, n, repeats = (16, 1, 2, 4, 1) if args.smoke else (512, 5, 4, 8, 5)
    DiffusersGenerator.from_pretrained(build(work / "sd"), num_inference_steps=2 if args.smoke else 10,
                                       height=side, width=side).save_pretrained(work / "gen")
    generator = DiffusersGenerator.from_pretrained(str(work / "gen"), device=device)
    samples = save_samples(generator.generate(PROMPTS, 2, seed=0), work / "samples")
    others = save_samples(generator.generate(PROMPTS, 2, seed=100), work / "others")
    del generator
    names = sorted(p.name for p in samples.glob("*.png"))
    pairs = write_pairs([Pair(p, str(samples / names[2 * i]), str(samples / names[2 * i + 1]), 1.0, 0.0)
                         for i, p in enumerate(PROMPTS)], work / "pairs")
    train_reward_model(RewardTrainingConfig(target=[str(samples)], generated=[str(others)], output=str(work / "rm"),
                                            epochs=2, backend="torch", progress=False))
    rows = scoring_rows(["efficientnet-lite0", vit_b16_encoder(work, args.smoke)], device, 1 if args.smoke else 256, repeats)
    rows.append(best_of_n_row(str(work / "gen"), work / "rm", work, device, n))
    rows += training_rows(str(work / "gen"), pairs, samples, work, device, steps, batch)
    result = {"device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({platform.processor() or platform.machine()}, "
              f"{torch.backends.cpu.get_cpu_capability()})", "smoke": args.smoke, "torch": torch.__version__,
              "seconds": time.time() - started, "rows": rows}
    output = Path(args.output)
    output.write_text(json.dumps(result, indent=2) + "\n")
    output.with_suffix(".md").write_text(f"{result['device']}, torch {torch.__version__}, {result['seconds']:.0f} s\n\n"
                                         + table(rows) + "\n")
    print(output.with_suffix(".md").read_text())
    return result


if __name__ == "__main__":
    main()
