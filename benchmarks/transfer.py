"""Do the post-training defaults hold on data no one tuned them on? The GAN-RM loop on textures, not digits.

    python benchmarks/transfer.py [--output transfer_out] [--seeds 0 1 2]

The data: 16-px crops (48-px windows, downscaled) of scikit-image's brick, grass and gravel photographs, one prompt
per texture, cut from three disjoint column bands of each photograph:
- train/ (600 crops per texture): the folder a user trains a generator on;
- target/ (130 per texture): the brightest tenth of 1300 crops, the look the reward is asked to find;
- judge/ (400 per texture): what the independent judges learn from.

Per seed, only documented commands with their defaults, as the user in issue 21 ran them:

    visreward train-generator --data train --output gen --resolution 16
    visreward generate (40 per prompt) -> train-rm --target target --generated base_for_rm --output rm
    visreward best-of-n --n 16 --repeats 6 --keep 1 --keep-bottom 1 -> make-pairs --format trl
    visreward dpo --generator gen --pairs pairs --output dpo
    visreward dpo ... --max-epochs inf (all 200 steps, the defaults before --max-epochs)

The judges share nothing with the reward (EfficientNet features) or with the monitors: mean brightness in pixels,
and the texture accuracy of a small CNN trained here on judge/ crops. Base and DPO are judged on 100 fresh samples
per prompt; Best-of-16 on the best of 100 fresh groups per prompt. Each step is skipped when its folder exists.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PROMPTS = ["a photo of brick", "a photo of grass", "a photo of gravel"]
BANDS = {"train": (0.0, 0.5, 600), "target": (0.5, 0.7, 1300), "judge": (0.7, 1.0, 400)}
CROP, SIDE, TARGET_KEPT = 48, 16, 130


def build_data(root: Path) -> None:
    import skimage.data

    if (root / "judge" / "metadata.jsonl").exists():
        return
    photos = {"a photo of brick": skimage.data.brick(), "a photo of grass": skimage.data.grass(),
              "a photo of gravel": skimage.data.gravel()}
    rng = np.random.default_rng(0)
    for split, (start, end, count) in BANDS.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for prompt, photo in photos.items():
            height, width = photo.shape
            crops = []
            for _ in range(count):
                y, x = rng.integers(0, height - CROP), rng.integers(int(start * width), int(end * width) - CROP)
                window = Image.fromarray(photo[y:y + CROP, x:x + CROP])
                crops.append(np.asarray(window.resize((SIDE, SIDE), Image.BICUBIC)))
            if split == "target":
                crops = sorted(crops, key=lambda crop: -crop.mean())[:TARGET_KEPT]
            for i, crop in enumerate(crops):
                name = f"{prompt.split()[-1]}_{i:04d}.png"
                Image.fromarray(crop).save(folder / name)
                rows.append({"file_name": name, "prompt": prompt})
        (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def visreward(*args: str) -> None:
    quiet = [] if args[0] in ("generate", "make-pairs") else ["--no-progress"]
    done = subprocess.run([sys.executable, "-m", "visreward.cli", *args, *quiet], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"visreward {args[0]} failed:\n{done.stderr[-2000:]}")
    print(f"  {args[0]}: {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ''}", file=sys.stderr)


def run_seed(root: Path, seed: int, dpo_options: list[str]) -> Path:
    out = root / f"s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    steps = [
        ("gen", ["train-generator", "--data", str(root / "train"), "--output", str(out / "gen"), "--resolution", "16",
                 "--seed", str(seed)]),
        ("base_for_rm", ["generate", "--generator", str(out / "gen"), "--prompts", str(prompts), "--n", "40",
                         "--seed", str(seed * 1000), "--output", str(out / "base_for_rm")]),
        ("rm", ["train-rm", "--target", str(root / "target"), "--generated", str(out / "base_for_rm"),
                "--output", str(out / "rm"), "--seed", str(seed)]),
        ("bon", ["best-of-n", "--generator", str(out / "gen"), "--reward", str(out / "rm"), "--prompts", str(prompts),
                 "--n", "16", "--repeats", "6", "--keep", "1", "--keep-bottom", "1", "--seed", str(seed * 1000 + 500),
                 "--output", str(out / "bon")]),
        ("pairs", ["make-pairs", "--scores", str(out / "bon" / "scores.parquet"), "--format", "trl",
                   "--output", str(out / "pairs")]),
        ("dpo", ["dpo", "--generator", str(out / "gen"), "--pairs", str(out / "pairs"), "--output", str(out / "dpo"),
                 "--seed", str(seed), *dpo_options]),
        ("eval_base", ["generate", "--generator", str(out / "gen"), "--prompts", str(prompts), "--n", "100",
                       "--seed", str(10**7 + seed * 1000), "--output", str(out / "eval_base")]),
        ("eval_bon", ["best-of-n", "--generator", str(out / "gen"), "--reward", str(out / "rm"), "--prompts",
                      str(prompts), "--n", "16", "--repeats", "100", "--seed", str(10**8 + seed * 100000),
                      "--output", str(out / "eval_bon")]),
        ("dpo_uncapped", ["dpo", "--generator", str(out / "gen"), "--pairs", str(out / "pairs"), "--output",
                          str(out / "dpo_uncapped"), "--seed", str(seed), "--max-epochs", "inf", *dpo_options]),
    ]
    steps += [(f"eval_{run}", ["generate", "--generator", str(out / run / "generator"), "--prompts", str(prompts), "--n",
                               "100", "--seed", str(10**7 + seed * 1000), "--output", str(out / f"eval_{run}")])
              for run in ("dpo", "dpo_uncapped")]
    for folder, args in steps:
        if not (out / folder).exists():
            visreward(*args)
    return out


def judge_network() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(32, len(PROMPTS)))


def load_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    pixels = np.stack([np.asarray(Image.open(folder / row["file_name"]).convert("L")) for row in rows])
    return torch.from_numpy(pixels).float()[:, None] / 255, torch.tensor([PROMPTS.index(row["prompt"]) for row in rows])


def train_judge(root: Path) -> tuple[torch.nn.Module, float]:
    """A small CNN on judge/ crops (horizontal flips as augmentation); returns it and its held-out accuracy."""
    torch.manual_seed(0)
    images, labels = load_folder(root / "judge")
    order = torch.randperm(len(labels))
    held, fitted = order[:240], order[240:]
    network = judge_network()
    optimizer = torch.optim.Adam(network.parameters(), 2e-3)
    for _ in range(1500):
        index = fitted[torch.randint(0, len(fitted), (64,))]
        batch = images[index]
        batch = torch.where(torch.rand(len(index), 1, 1, 1) < 0.5, batch.flip(3), batch)
        loss = torch.nn.functional.cross_entropy(network(batch), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network.eval()
    with torch.no_grad():
        accuracy = float((network(images[held]).argmax(1) == labels[held]).float().mean())
    return network, accuracy


def judge(network: torch.nn.Module, folder: Path) -> dict:
    images, labels = load_folder(folder)
    with torch.no_grad():
        accuracy = float((network(images).argmax(1) == labels).float().mean())
    return {"brightness": float(images.mean() * 255), "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="transfer_out")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dpo-options", nargs=argparse.REMAINDER, default=[], help="passed to visreward dpo")
    args = parser.parse_args()
    root = Path(args.output)
    build_data(root)
    network, judge_accuracy = train_judge(root)
    target = judge(network, root / "target")
    runs = {"base": "eval_base", "Best-of-16": "eval_bon/best", "DPO (defaults)": "eval_dpo",
            "DPO, --max-epochs inf (the 200 steps asked)": "eval_dpo_uncapped"}
    rows: dict[str, list[dict]] = {name: [] for name in runs}
    stops = []
    for seed in args.seeds:
        print(f"seed {seed}", file=sys.stderr)
        out = run_seed(root, seed, args.dpo_options)
        for name, folder in runs.items():
            rows[name].append(judge(network, out / folder))
        stops.append(json.loads((out / "dpo" / "metrics.json").read_text())["stopped"])
    (root / "transfer.json").write_text(json.dumps({"target": target, "judge_heldout_accuracy": judge_accuracy,
                                                    "rows": rows, "dpo_stopped": stops}, indent=1))
    print(f"\njudge held-out accuracy {judge_accuracy:.3f}; {len(args.seeds)} seeds, mean ± std\n")
    print(f"| | brightness (target {target['brightness']:.1f}) | texture accuracy |\n|---|---:|---:|")
    for name, values in rows.items():
        cells = [np.array([v[key] for v in values]) for key in ("brightness", "accuracy")]
        print(f"| {name} | {cells[0].mean():.1f} ± {cells[0].std():.1f} | {cells[1].mean():.3f} ± {cells[1].std():.3f} |")
    for seed, stop in zip(args.seeds, stops):
        print(f"seed {seed}: DPO " + (f"stopped at step {stop['step']}, kept step {stop['kept_weights_of_step']}: "
                                      f"{stop['reason']}" if stop else "ran all its steps"))


if __name__ == "__main__":
    main()
