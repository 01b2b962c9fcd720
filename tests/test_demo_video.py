"""The video miniature: moving-digit clips, the conditional video generator, its judges, `demo --video` and its report."""

import json

import numpy as np
import pytest
import torch
from test_report import render

from visreward.core.precision import resolve_mixed_precision
from visreward.evaluation.generation import digit_crops
from visreward.evaluation.video import centroid_speed, centroid_track
from visreward.generators import ConditionalGenerator, GeneratorTrainingConfig, load_generator, train_generator
from visreward.io.digits import DIRECTIONS, digit_clip, moving_digits, real_digits, write_clips_folder


def test_a_digit_drawn_between_pixels_moves_its_centroid_exactly_the_speed():
    digit = real_digits("train")[0][0]
    clip = torch.from_numpy(digit_clip(digit, "down", frames=5, size=16, scale=1, speed=0.25)).permute(0, 3, 1, 2) / 255
    track = centroid_track(clip[None])[0]
    assert torch.allclose(track.diff(dim=0), torch.tensor([[0.25, 0.0]] * 4), atol=2e-3)  # 8-bit rounding of the ink
    assert float(centroid_speed(clip[None])) == pytest.approx(0.25, abs=2e-3)


def test_centroid_of_a_single_lit_pixel_and_of_a_blank_frame():
    clip = torch.zeros(1, 3, 3, 6, 6)
    clip[0, 0, :, 1, 1] = 1.0
    clip[0, 1, :, 1, 4] = 1.0  # 3 pixels right
    track = centroid_track(clip)[0]
    assert track.tolist() == [[1.0, 1.0], [1.0, 4.0], [2.5, 2.5]]  # the blank third frame: the frame's centre


def test_digit_window_is_the_digit_itself_when_drawn_on_whole_pixels():
    images, _ = real_digits("train")
    rows, cols = np.mgrid[:8, :8]
    centroids = np.stack([(images * rows).sum((1, 2)), (images * cols).sum((1, 2))], 1) / images.sum((1, 2))[:, None]
    assert np.allclose(centroids.mean(0), [3.47, 3.57], atol=0.01)  # where a window expects a digit's centroid
    typical = int(np.flatnonzero(np.abs(centroids - [3.47, 3.57]).max(1) < 0.3)[0])  # this digit's window is exact
    clip = torch.from_numpy(digit_clip(images[typical], "right", frames=3, size=16, scale=1, speed=1.0))
    crops = digit_crops((clip.permute(0, 3, 1, 2) / 255)[None])[0]
    expected = torch.from_numpy((np.clip(images[typical], 0, 1) * 255).round() / 255).float().flatten()
    assert all(torch.allclose(crop, expected, atol=1e-6) for crop in crops)


def test_moving_digits_cover_every_digit_and_direction_at_fixed_speeds():
    rows = moving_digits("train")
    assert len(rows) == 4 * 1400 and set(rows.motion) == set(DIRECTIONS)
    assert 0.25 <= rows.speed.min() and rows.speed.max() <= 1.0
    assert rows.prompts()[:2] == [f"a digit {rows.label[0]} moving right", f"a digit {rows.label[0]} moving left"]


@pytest.fixture(scope="module")
def tiny_video_generator_dir(tmp_path_factory):
    """The bundled video generator's real training code (v-prediction, auto precision), run briefly on clips of real digits
    moving right, written as mp4 and read back."""
    root = tmp_path_factory.mktemp("video-generator")
    rows = moving_digits("train")
    right = np.flatnonzero(rows.motion == "right")[:60]
    data = write_clips_folder(root / "data", "train", rows.subset(right))
    train_generator(GeneratorTrainingConfig(data=[str(data)], output=str(root / "generator"), frames=8, steps=6,
                                            batch_size=8, width=16, inference_steps=3, min_per_prompt=1,
                                            prediction_type="v_prediction", mixed_precision="auto", progress=False))
    return root / "generator"


def test_video_generator_samples_clips_that_their_seed_reproduces_after_reloading(tiny_video_generator_dir):
    generator = load_generator(str(tiny_video_generator_dir))
    assert isinstance(generator, ConditionalGenerator) and generator.training_frames == 8 and generator.channels == 1
    assert generator.scheduler.config.prediction_type == "v_prediction"
    assert generator.mixed_precision == resolve_mixed_precision("auto")  # recorded as trained: bf16 only where native
    clips, prompts, seeds = generator.generate_tensors(["a digit 3 moving right"], 3, seed=5)
    assert tuple(clips.shape) == (3, 8, 3, 16, 16) and seeds == [5, 6, 7]
    assert torch.equal(clips[..., 0, :, :], clips[..., 2, :, :])  # gray, repeated to RGB
    assert torch.allclose(generator.generate_from_seeds(prompts[1:2], [6])[0], clips[1], atol=1e-5)  # fp32 kernels vary with batch size
    frames = generator.generate(["a digit 3 moving right"], 1, seed=5)[0].image
    assert len(frames) == 8 and frames[0].mode == "L" and frames[0].size == (16, 16)


@pytest.fixture(scope="module")
def video_demo_run(tmp_path_factory, tiny_video_generator_dir):
    """`visreward demo --video` with every stage but tiny sizes, one direction and one seed (the image demo's test
    covers the spread over seeds, computed by the same code)."""
    from visreward.core.options import VideoDemoConfig
    from visreward.miniature.video_demo import run_video_demo

    out = tmp_path_factory.mktemp("video-demo") / "run"
    results = run_video_demo(VideoDemoConfig(
        output=str(out), generator=str(tiny_video_generator_dir), directions=["right"], look=0.1, n_target=30, rounds=1,
        n=2, sft_repeats=1, dpo_repeats=1, negatives_per_prompt=2, frames=2, sft_steps=2, dpo_steps=2, grpo_steps=2, probe_samples=2, seeds=1,
        mixed_precision="no"))  # accelerate keeps one precision per process: the one the other tests use
    return out, results


def test_video_demo_judges_every_row_and_the_reference_clips(video_demo_run):
    out, results = video_demo_run
    metrics = json.loads((out / "demo_metrics.json").read_text())
    assert list(metrics["rows"]) == ["base", "Best-of-4", "Best-of-16", "SFT round 1", "DPO round 1", "GRPO"]
    for row in metrics["rows"].values():
        assert set(row) == {"speed", "toward_target", "direction", "accuracy", "consistency", "diversity"}
        assert all(len(pair) == 2 and pair[1] >= 0 for pair in row.values())
    assert metrics["rows"]["base"]["toward_target"] == [0.0, 0.0]
    held = metrics["reference"]["heldout_target"]
    assert held["direction"] == 1.0 and held["accuracy"] > 0.95  # real clips: the judges' own upper marks
    assert 0.25 < metrics["reference"]["target_speed"] < 0.325  # the slowest 10% of speeds in [0.25, 1]
    assert [run["seed"] for run in metrics["per_seed"]] == [0]
    curve = metrics["per_seed"][0]["grpo"]["curve"]
    assert [row["step"] for row in curve] == [1, 2] and 0 < curve[0]["speed"] < 3 and 0 <= curve[0]["accuracy"] <= 1
    rows = [json.loads(line) for line in (out / "seed-0" / "rounds-sft" / "round-1" / "bon" / "best" / "metadata.jsonl")
            .read_text().splitlines()]
    assert rows[0]["file_name"].endswith(".mp4") and rows[0]["frames"] == 8


def test_video_report_shows_looping_previews_in_headless_chromium(video_demo_run, tmp_path):
    from visreward.miniature.report import write_report

    out, _ = video_demo_run
    page = write_report(out).read_text()
    assert page.count("data:image/gif;base64,") == 7 and "src=\"http" not in page  # target + six rows
    assert "GRPO: centroid speed" in page and "GRPO: digit accuracy" in page
    # the frame count is decoded asynchronously after the page loads
    dom, _ = render(out / "report.html", tmp_path, height=3200, budget_ms=30000)
    assert 'data-images-loaded="7"' in dom and 'data-images-animated="7"' in dom
    assert 'data-chart-text-outside="0"' in dom


def test_train_generator_names_the_clip_whose_size_differs(tmp_path):
    from visreward.core.errors import VisrewardError
    from visreward.io.videos import write_video

    images, _ = real_digits("train")
    write_video(tmp_path / "a.mp4", digit_clip(images[0], "right", frames=4, size=16, scale=1, speed=1.0))
    write_video(tmp_path / "b.mp4", digit_clip(images[1], "right", frames=4, size=20, scale=1, speed=1.0))
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.mp4", "prompt": "a digit 0 moving right"}\n'
                                             '{"file_name": "b.mp4", "prompt": "a digit 0 moving right"}\n')
    with pytest.raises(VisrewardError, match=r"b\.mp4: 20x20, but .*a\.mp4 is 16x16 \(train-generator needs one image size\)"):
        train_generator(GeneratorTrainingConfig(data=[str(tmp_path)], output=str(tmp_path / "gen"), frames=4,
                                                min_per_prompt=1, progress=False))
