"""Scores per second of a VLM judge, batched vs one image at a time (tiny random VLMs, CPU).

    python benchmarks/vlm_scoring.py

The tiny models prove the code path and the batching gain, not a real judge's speed: no real
VLM weights can be had offline. Same images, same process, same run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_vlms import save_tiny_internvl, save_tiny_qwen2_5_vl  # noqa: E402

from visreward.io.digits import digit_image, digit_prompt, real_digits  # noqa: E402
from visreward.rewards.generative import GenerativeRewardModel  # noqa: E402


def rate(judge, images, prompts, batch_size: int, references=None) -> float:
    warm = references[:batch_size] if references is not None else None
    judge.score(images[:batch_size], prompts[:batch_size], references=warm, batch_size=batch_size)
    start = time.perf_counter()
    judge.score(images, prompts, references=references, batch_size=batch_size)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    pixels, labels = real_digits("train")
    images = [digit_image(pixels[i]) for i in range(64)]
    prompts = [digit_prompt(int(labels[i])) for i in range(64)]
    print("| model | mode | batch 1 (scores/s) | batch 16 (scores/s) | speed-up |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in (("tiny Qwen2.5-VL", save_tiny_qwen2_5_vl), ("tiny InternVL", save_tiny_internvl)):
            judge = GenerativeRewardModel.from_pretrained(build(Path(tmp) / name))
            for mode, references in (("pointwise", None), ("pairwise (2 orders)", images[::-1])):
                one, batched = rate(judge, images, prompts, 1, references), rate(judge, images, prompts, 16, references)
                print(f"| {name} | {mode} | {one:.1f} | {batched:.1f} | {batched / one:.1f}x |")


if __name__ == "__main__":
    main()
