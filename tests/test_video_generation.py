"""Text-to-video diffusers pipelines (tiny, random, built from configs) as visreward generators."""

import json
from pathlib import Path

import av
import pytest
import torch
from conftest import write_image_prompts
from tiny_pipelines import TINY_IMAGE_TO_VIDEO_PIPELINES, TINY_VIDEO_PIPELINES

from visreward.generators import DiffusersGenerator, load_generator, save_samples

SETTINGS = {"num_inference_steps": 2, "height": 16, "width": 16, "guidance_scale": 1.0}
FRAMES = {"animatediff": 8, "cogvideox": 9, "wan": 9, "ltx": 9}  # 4k + 1 frames for a 4x temporal VAE
SIZE = {"ltx": 32}  # LTXPipeline asks for multiples of 32; the others sample 16x16


@pytest.fixture(scope="module", params=sorted(TINY_VIDEO_PIPELINES))
def video_generator_dir(request, tmp_path_factory):
    """A tiny pipeline saved with visreward's generation settings, as `--generator` reads it."""
    root = tmp_path_factory.mktemp(request.param)
    size = SIZE.get(request.param, 16)
    pipeline = DiffusersGenerator.from_pretrained(TINY_VIDEO_PIPELINES[request.param](root),
                                                  **{**SETTINGS, "height": size, "width": size}, num_frames=FRAMES[request.param], fps=4.0)
    pipeline.save_pretrained(root / "generator")
    return request.param, root / "generator"


def test_a_video_pipeline_samples_clips_that_their_seed_reproduces(video_generator_dir):
    family, folder = video_generator_dir
    generator = load_generator(str(folder))
    clips, prompts, seeds = generator.generate_tensors(["a digit 3 moving right", "a digit 5 moving up"], 2, seed=7)
    size = SIZE.get(family, 16)
    assert tuple(clips.shape) == (4, FRAMES[family], 3, size, size) and 0 <= clips.min() and clips.max() <= 1
    assert prompts == ["a digit 3 moving right"] * 2 + ["a digit 5 moving up"] * 2 and seeds == [7, 8, 9, 10]
    again = generator.generate_from_seeds([prompts[3]], [seeds[3]])
    assert torch.allclose(again[0], clips[3], atol=1e-5)
    assert not torch.allclose(clips[2], clips[3], atol=1e-3)
    from visreward.core.errors import VisrewardError

    with pytest.raises(VisrewardError, match="is not an image-to-video pipeline: its prompts take no image"):
        generator.condition_on({"a digit 3 moving right": "digit-3.png"})


def test_generated_clips_are_written_as_h264_mp4_with_prompt_seed_and_frame_count(video_generator_dir, tmp_path):
    family, folder = video_generator_dir
    generator = load_generator(str(folder))
    save_samples(generator.generate(["a digit 3 moving right"], 2, seed=0), tmp_path / "out")
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert rows == [{"file_name": f"00000{i}.mp4", "prompt": "a digit 3 moving right", "seed": i, "frames": FRAMES[family]}
                    for i in range(2)]
    with av.open(str(tmp_path / "out" / "000000.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.frames, stream.average_rate) == ("h264", FRAMES[family], 4)


PREDICTION = {"animatediff": "epsilon", "cogvideox": "v_prediction", "wan": "flow", "ltx": "flow"}


def test_dpo_and_sft_train_a_video_pipeline_on_its_own_clips(video_generator_dir, tmp_path):
    import math

    from visreward.io.pairs import Pair, write_pairs
    from visreward.post_training import DPOConfig, SFTConfig, run_dpo, run_sft

    family, folder = video_generator_dir
    generator = load_generator(str(folder))
    assert generator.denoiser().objective.prediction_type == PREDICTION[family]
    save_samples(generator.generate(["a digit 3 moving right", "a digit 5 moving up"], 2, seed=0), tmp_path / "clips")
    rows = [json.loads(line) for line in (tmp_path / "clips" / "metadata.jsonl").read_text().splitlines()]
    pairs = [Pair(rows[i]["prompt"], str(tmp_path / "clips" / rows[i]["file_name"]),
                  str(tmp_path / "clips" / rows[i + 1]["file_name"]), 1.0, 0.0) for i in (0, 2)]
    metrics = run_dpo(DPOConfig(generator=str(folder), pairs=str(write_pairs(pairs, tmp_path / "pairs")),
                                output=str(tmp_path / "dpo"), steps=2, batch_size=2, log_every=1, progress=False))
    assert metrics["history"][0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    tuned = load_generator(str(tmp_path / "dpo"))
    assert tuned.num_frames == FRAMES[family] and tuned.generate_tensors(["a digit"], 1)[0].shape[1] == FRAMES[family]
    run_sft(SFTConfig(generator=str(folder), data=[str(tmp_path / "clips")], output=str(tmp_path / "sft"), steps=2,
                      batch_size=2, lora=True, progress=False))
    assert (tmp_path / "sft" / "generator" / "model_index.json").exists()


def test_the_gan_rm_loop_and_refl_run_on_a_video_pipeline(tmp_path):
    """rounds: a video reward trained on target clips vs the pipeline's own, best-of-N clips, pairs, DPO;
    then ReFL with that reward through the last step, the 3-D VAE decoder and 3 frames of each clip."""
    import numpy as np
    from tiny_pipelines import save_tiny_wan

    from visreward.io.digits import digit_clip, real_digits
    from visreward.io.videos import write_video
    from visreward.post_training import RoundsConfig, run_rounds

    DiffusersGenerator.from_pretrained(save_tiny_wan(tmp_path), **SETTINGS, num_frames=9).save_pretrained(tmp_path / "gen")
    digits, _ = real_digits("train")
    (tmp_path / "target").mkdir()
    for i in range(10):
        write_video(tmp_path / "target" / f"{i}.mp4", digit_clip(digits[i], "right", frames=9, size=16, scale=1), fps=8)
    run_rounds(RoundsConfig(generator=str(tmp_path / "gen"), target=[str(tmp_path / "target")], prompts=["a digit moving right"],
                            output=str(tmp_path / "run"), rounds=1, method="dpo", n=2, repeats=2, negatives_per_prompt=10,
                            pool_per_prompt=2, steps=2, batch_size=2, probe_samples=2, progress=False))
    round_one = tmp_path / "run" / "round-1"
    assert json.loads((round_one / "rm" / "config.json").read_text())["video"]["frames"] == 8  # a video reward
    assert len(list((round_one / "bon" / "best").glob("*.mp4"))) == 2 and np.isfinite(
        json.loads((round_one / "finetune" / "metrics.json").read_text())["history"][-1]["loss"])

    from visreward.post_training import ReFLConfig, run_refl

    metrics = run_refl(ReFLConfig(generator=str(tmp_path / "gen"), reward=str(round_one / "rm"), output=str(tmp_path / "refl"),
                                  prompts=["a digit moving right"], steps=1, batch_size=1, num_inference_steps=2,
                                  last_steps=1, frames_with_grad=3, log_every=1, stop_on_hacking=False, progress=False))
    assert [row["step"] for row in metrics["history"]] == [1]
    assert all(np.isfinite(row["reward_mean"]) and "off_manifold" in row for row in metrics["history"])


def test_frames_with_grad_limits_the_reward_gradient_to_that_many_frames(tmp_path):
    """AnimateDiff decodes frame by frame: only the chosen frames' latents get a gradient, and the decoded
    clip is the same with or without the limit."""
    from tiny_pipelines import save_tiny_animatediff

    generator = DiffusersGenerator.from_pretrained(save_tiny_animatediff(tmp_path), **SETTINGS, num_frames=8)
    denoiser = generator.denoiser()
    latents = torch.randn(denoiser.latent_shape(1)).requires_grad_(True)  # [1,4,8,8,8]
    assert tuple(latents.shape) == (1, 4, 8, 8, 8)
    clip = denoiser.decode(latents, 3, torch.Generator().manual_seed(0))
    assert tuple(clip.shape) == (1, 8, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(clip, denoiser.decode(latents), atol=1e-5)
    clip.sum().backward()
    reached = latents.grad.abs().sum(dim=(0, 1, 3, 4)) > 0
    expected = torch.randperm(8, generator=torch.Generator().manual_seed(0))[:3].sort().values.tolist()
    assert reached.nonzero().flatten().tolist() == expected


@pytest.mark.parametrize("family", sorted(TINY_VIDEO_PIPELINES))
def test_the_reward_gradient_sampler_reproduces_the_pipelines_own_clips(family, tmp_path):
    """ReFL's sampler (latent layout, token packing and RoPE scale, shifted schedule, classifier-free guidance
    at the pipeline's default scale, the timestep-conditioned decoder) against diffusers' own __call__ from the
    same noise: the clips must agree."""
    size = SIZE.get(family, 16)
    generator = DiffusersGenerator.from_pretrained(TINY_VIDEO_PIPELINES[family](tmp_path), num_inference_steps=3,
                                                   height=size, width=size, num_frames=FRAMES[family])
    theirs = generator.generate_from_seeds(["a digit 3 moving right"], [7])
    denoiser = generator.denoiser()
    assert denoiser.guidance_scale > 1
    noise = torch.randn(denoiser.latent_shape(1), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = denoiser.decode(denoiser.sample_x0(denoiser.module, noise, ["a digit 3 moving right"], steps=3, stop=2))
    assert tuple(ours.shape) == (1, FRAMES[family], 3, size, size)
    assert (ours - theirs).abs().max() < 1e-4


@pytest.fixture(scope="module", params=sorted(TINY_IMAGE_TO_VIDEO_PIPELINES))
def image_to_video_dir(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    size = 32 if request.param.startswith("ltx") else 16
    generator = DiffusersGenerator.from_pretrained(TINY_IMAGE_TO_VIDEO_PIPELINES[request.param](root),
                                                   **{**SETTINGS, "height": size, "width": size}, num_frames=9, fps=4.0)
    generator.save_pretrained(root / "generator")
    return size, root / "generator"


def test_generate_starts_an_image_to_video_pipelines_clips_from_each_prompts_image(image_to_video_dir, tmp_path):
    from visreward.cli import main

    size, folder = image_to_video_dir
    prompts = write_image_prompts(tmp_path / "prompts")
    assert main(["generate", "--generator", str(folder), "--prompts", str(prompts), "--n", "2",
                 "--output", str(tmp_path / "out")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert [(row["prompt"], row["seed"], row["frames"], Path(row["image"]).name) for row in rows] == [
        ("a digit 3 moving right", 0, 9, "digit-3.png"), ("a digit 3 moving right", 1, 9, "digit-3.png"),
        ("a digit 5 moving right", 2, 9, "digit-5.png"), ("a digit 5 moving right", 3, 9, "digit-5.png")]
    generator = load_generator(str(folder)).condition_on({row["prompt"]: row["image"] for row in rows})
    clip = generator.generate_from_seeds(["a digit 5 moving right"], [3])
    assert tuple(clip.shape) == (1, 9, 3, size, size)
    with av.open(str(tmp_path / "out" / "000003.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.frames, stream.width) == ("h264", 9, size)
    assert torch.equal(generator.generate_from_seeds(["a digit 5 moving right"], [3]), clip)
    other = generator.condition_on({"a digit 5 moving right": rows[0]["image"]}).generate_from_seeds(["a digit 5 moving right"], [3])
    assert (other - clip).abs().max() > 1e-5  # the image conditions the clip (weakly: the tiny models are random)


def test_image_to_video_prompts_are_checked_and_fine_tuning_refuses_in_one_line(image_to_video_dir, tmp_path):
    from visreward.core.errors import VisrewardError
    from visreward.io.prompts import read_prompt_images

    _, folder = image_to_video_dir
    prompts = write_image_prompts(tmp_path / "prompts")
    generator = load_generator(str(folder))
    with pytest.raises(VisrewardError, match="prompt 'a digit 7' has no image"):
        generator.generate_from_seeds(["a digit 7"], [0])
    with pytest.raises(VisrewardError, match="fine-tuning an image-to-video pipeline is not supported"):
        generator.denoiser()
    (tmp_path / "prompts" / "prompts.jsonl").write_text(prompts.read_text() + json.dumps(
        {"prompt": "a digit 3 moving right", "image": "digit-5.png"}) + "\n" + json.dumps({"prompt": "x", "image": "gone.png"}))
    with pytest.raises(VisrewardError, match=r"prompts.jsonl:3: prompt 'a digit 3 moving right' has two images"):
        read_prompt_images([str(prompts)])
    (tmp_path / "prompts" / "prompts.jsonl").write_text(json.dumps({"prompt": "x", "image": "gone.png"}) + "\n")
    with pytest.raises(VisrewardError, match=r"prompts.jsonl:1: image 'gone.png' does not exist"):
        read_prompt_images([str(prompts)])
