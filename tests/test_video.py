"""Video rewards on real small video files written with PyAV: decoding, GAN-RM for video, scoring."""

import io
import json
from fractions import Fraction

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import FRAMES
from PIL import Image
from tiny_vlms import TINY_VLMS, save_tiny_qwen2_5_vl

from visreward import DiscriminativeRewardModel, RewardTrainingConfig, train_reward_model
from visreward.encoders.features import FeatureCache
from visreward.io.digits import digit_clip, digit_prompt, real_digits
from visreward.io.images import ImageLoadError
from visreward.io.videos import FrameSampling, read_clip, write_video


def counting_clip(n_frames: int, size=(32, 48)) -> np.ndarray:
    """Frame i is a flat grey of level 6 i: a decoded frame tells which frame it was."""
    return np.repeat((np.arange(n_frames, dtype=np.uint8) * 6)[:, None, None, None], 3, -1) * np.ones((1, *size, 1), np.uint8)


def frame_numbers(clip: torch.Tensor) -> list[int]:
    return (clip[:, 0, 10, 10].float() / 6).round().int().tolist()


@pytest.mark.parametrize("extension", [".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif", ".webp"])
def test_uniform_sampling_takes_the_frame_showing_at_the_centre_of_each_span(tmp_path, extension):
    path = write_video(tmp_path / f"clip{extension}", counting_clip(40), fps=8)  # 5 s
    # spans of 5/8 s; centres 0.3125, 0.9375, ... s show frames floor(8 t)
    assert frame_numbers(read_clip(path, FrameSampling(8))) == [2, 7, 12, 17, 22, 27, 32, 37]
    assert frame_numbers(read_clip(path.read_bytes(), FrameSampling(3))) == [6, 20, 33]  # 5/6, 15/6, 25/6 s


def test_fps_sampling_takes_consecutive_frames_around_the_middle(tmp_path):
    path = write_video(tmp_path / "clip.mp4", counting_clip(40), fps=8)
    assert frame_numbers(read_clip(path, FrameSampling(4, fps=4))) == [17, 19, 21, 23]  # 2.125 .. 2.875 s
    short = write_video(tmp_path / "short.mp4", counting_clip(3), fps=8)
    # 0.375 s in 5 spans: centres 0.0375, 0.1125, 0.1875, 0.2625, 0.3375 s; frames repeat, every clip gives 5
    assert frame_numbers(read_clip(short, FrameSampling(5))) == [0, 0, 1, 2, 2]


def test_a_folder_of_frames_is_a_clip_in_name_order(tmp_path):
    for i, frame in enumerate(counting_clip(10)):
        Image.fromarray(frame).save(tmp_path / f"frame_{i:03d}.png")
    assert frame_numbers(read_clip(tmp_path, FrameSampling(5))) == [1, 3, 5, 7, 9]


def test_fps_sampling_takes_consecutive_frames_of_a_frame_folder_as_of_the_same_clip_as_a_tensor(tmp_path):
    frames = counting_clip(40)  # levels 0..234: 40 frames, each its own number
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame_{i:03d}.png")
    sampling = FrameSampling(8, fps=8)
    # 40 frames at the sampling's 8 fps: 5 s; 8 frames at 1/8 s around 2.5 s start at 2.0625 s, frame 16
    assert frame_numbers(read_clip(tmp_path, sampling)) == list(range(16, 24))  # before: 19 and 20, each four times
    assert sampling.indices(100) == list(range(46, 54))
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)
    assert frame_numbers(tensor[sampling.indices(len(tensor))]) == list(range(16, 24))


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    from visreward.io import images

    path = write_video(tmp_path / "clip.mp4", counting_clip(4), fps=8)  # 48x32 frames
    monkeypatch.setattr(images, "MAX_PIXELS", 48 * 32 - 1)
    with pytest.raises(ImageLoadError, match="48x32 frames are over the 1535 pixel limit"):
        read_clip(path, FrameSampling(2))


def test_rotation_metadata_is_applied(tmp_path):
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:8, :8] = 255  # a white top-left corner
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # FFmpeg: shown turned 90 degrees counter-clockwise
        for _ in range(4):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    clip = read_clip(path, FrameSampling(2))
    assert tuple(clip.shape) == (2, 3, 64, 32)
    corner = clip[0, 0] > 128
    assert corner[-8:, :8].all() and corner.sum() < 80  # the top-left corner turned counter-clockwise: bottom-left


def write_bad_clips(folder) -> dict[str, str]:
    """name -> the reason visreward must give for it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.mp4").write_bytes(b"this is not a video" * 50)
    (folder / "empty.webm").write_bytes(b"")
    good = write_video(folder / "whole.mkv", counting_clip(80, (64, 64)) + np.random.default_rng(0).integers(
        0, 40, (80, 64, 64, 3), dtype=np.uint8), fps=8).read_bytes()
    (folder / "whole.mkv").unlink()
    (folder / "truncated.mkv").write_bytes(good[: len(good) // 3])
    with av.open(str(folder / "audio_only.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(folder / "zero_frames.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()  # a header, and no frame
    return {"garbage.mp4": "not a readable video", "empty.webm": "empty file", "truncated.mkv": "truncated",
            "audio_only.mp4": "audio only", "zero_frames.mp4": "no video frames"}


def test_every_kind_of_bad_clip_is_an_error_naming_the_file_and_the_problem(tmp_path):
    for name, reason in write_bad_clips(tmp_path).items():
        with pytest.raises(ImageLoadError) as error:
            read_clip(tmp_path / name, FrameSampling(4))
        assert error.value.source == str(tmp_path / name) and reason in error.value.reason, (name, error.value.reason)


def test_train_rm_tells_gliding_from_shaking_clips_on_held_out_clips(video_rm):
    output, metrics = video_rm
    assert metrics["heldout"]["auc"] > 0.85 and metrics["heldout"]["n_positive"] == 15, metrics["heldout"]
    config = json.loads((output / "config.json").read_text())
    assert config["video"] == {"frames": FRAMES, "fps": None,
                               "pooling": ["mean", "std", "motion", "flow", "flow-std", "flow-trend"]}
    assert config["feature_dim"] == 6 * 1280  # efficientnet-lite0's 1280 features, six poolings


def test_a_video_model_scores_files_tensors_and_rl_batches_alike(video_rm, motion_clips):
    model = DiscriminativeRewardModel.from_pretrained(video_rm[0], backend="auto")
    assert model.encoder.sampling == FrameSampling(FRAMES)
    files = sorted((motion_clips / "gliding").glob("*.mp4"))[:3]
    from_files = model.score([str(f) for f in files])
    decoded = torch.stack([read_clip(f, FrameSampling(24)) for f in files])  # each of the 8 frames 3 times
    uint8_nthwc = decoded.permute(0, 1, 3, 4, 2).numpy()
    assert torch.allclose(model.score(decoded.float() / 255), from_files, atol=1e-4)
    assert torch.allclose(model.score(uint8_nthwc), from_files, atol=1e-4)
    assert torch.allclose(model.reward_fn(uint8_nthwc)[0], from_files, atol=1e-4)

    # at the encoder's resize size (256, then a 224 crop) nothing is resampled, so the float (differentiable)
    # path and the 8-bit one see the same pixels
    at_input_size = torch.nn.functional.interpolate(decoded.flatten(0, 1), size=(256, 256)).unflatten(0, (3, 24))
    videos = (at_input_size.float() / 255).requires_grad_(True)
    logits = model(videos)
    assert torch.allclose(logits.detach(), model.score(at_input_size), atol=1e-3)
    logits.sum().backward()
    sampled = videos.grad.abs().sum(dim=(0, 2, 3, 4)) > 0
    assert sampled.nonzero().flatten().tolist() == [3, 9, 15, 21]  # 4 spans of 6 frames, their centres


def test_score_writes_every_good_clip_and_names_every_bad_one(video_rm, motion_clips, tmp_path):
    from visreward.scoring import ScoreConfig, run_score

    folder = tmp_path / "mixed"
    bad = write_bad_clips(folder / "bad")
    clips = sorted((motion_clips / "shaking").glob("*.mp4"))[:4]
    for clip in clips:
        (folder / clip.name).write_bytes(clip.read_bytes())
    write_video(folder / "animated.gif", counting_clip(6), fps=8)
    write_video(folder / "also.webm", counting_clip(6), fps=8)
    (folder / "frames").mkdir()
    for i, frame in enumerate(counting_clip(6)):
        Image.fromarray(frame).save(folder / "frames" / f"{i}.png")
    run = run_score(ScoreConfig(inputs=[str(folder)], model=str(video_rm[0]), output=str(tmp_path / "s.parquet"),
                                progress=False))
    table = pq.read_table(tmp_path / "s.parquet").to_pydict()
    assert sorted(table["id"]) == sorted(["mixed/also.webm", "mixed/animated.gif", "mixed/frames"] +
                                         [f"mixed/{c.name}" for c in clips])
    skipped = {entry[0].rsplit("/", 1)[-1]: entry[1] for entry in run.skipped.entries}
    assert set(skipped) == set(bad) and all(reason in skipped[name] for name, reason in bad.items()), skipped
    assert (tmp_path / "s.parquet.skipped.txt").read_text().count("\n") == len(bad)
    model = DiscriminativeRewardModel.from_pretrained(video_rm[0], backend="auto")
    expected = model.score([str(folder / c.name) for c in clips])
    got = {i: s for i, s in zip(table["id"], table["score"])}
    assert [got[f"mixed/{c.name}"] for c in clips] == pytest.approx(expected.tolist(), abs=1e-4)  # batches differ


def test_the_feature_cache_keeps_one_entry_per_clip_and_sampling_recipe(video_rm, motion_clips, tmp_path):
    model = DiscriminativeRewardModel.from_pretrained(video_rm[0], backend="auto")
    cache = FeatureCache(tmp_path / "cache")
    files = [str(f) for f in sorted((motion_clips / "gliding").glob("*.mp4"))[:5]]
    first = model.score(files, cache=cache)
    assert len(cache) == 5
    assert torch.equal(model.score(files, cache=cache), first) and len(cache) == 5  # read back, nothing re-encoded
    from visreward.encoders.video import VideoEncoder

    model.encoder = VideoEncoder(model.encoder.image, FrameSampling(FRAMES, fps=4.0), model.encoder.pooling)
    model.score(files, cache=cache)
    assert len(cache) == 10  # another recipe, other features


def test_map_poolings_see_a_translation_that_global_poolings_miss_on_literal_maps():
    """One feature, a 1x2 map over three frames: [0, 4], then [4, 0] (the content moved one cell), then the same.
    Its spatial mean is 2 throughout, so mean, std and motion are 2, 0, 0. The map moved by |4 - 0| = 4 per cell
    between frames 0 and 1 and by 0 between 1 and 2: flow (4 + 0) / 2 = 2. Relative to that mean the steps are
    2 and 0: flow-std 1 and flow-trend (2 * -1 + 0 * +1) / 2 = -1 (time standardised to -1, +1: it slowed down)."""
    from visreward.encoders.video import POOLINGS, pool_frames

    maps = torch.tensor([[0.0, 4.0], [4.0, 0.0], [4.0, 0.0]]).view(1, 3, 1, 1, 2)
    assert POOLINGS == ("mean", "std", "motion", "flow", "flow-std", "flow-trend")
    assert pool_frames(maps, POOLINGS).tolist() == [[2.0, 0.0, 0.0, 2.0, 1.0, -1.0]]
    assert pool_frames(maps[:, :1], POOLINGS).tolist() == [[2.0, 0.0, 0.0, 0.0, 0.0, 0.0]]  # one frame: no motion
    with pytest.raises(ValueError, match="unknown temporal pooling 'speed'"):
        pool_frames(maps, ["mean", "speed"])


def test_flow_std_averages_groups_of_32_channels_so_a_stall_shows_and_channel_noise_does_not():
    """64 features (two groups of 32) as 1x1 maps over four frames, each moving by 1 per step, except: in the second
    group feature 32 moves by 2, 0, 1 and feature 33 by 0, 2, 1, so the group's mean change is 1, 1, 1 (even: spread 0,
    where feature 32 alone would have spread 0.816). A stalling clip: every feature moves by 1, 0, 2; relative to
    its mean 1 that is 1, 0, 2, of standard deviation sqrt(2/3)."""
    from visreward.encoders.video import pool_frames

    def clip(steps: torch.Tensor) -> torch.Tensor:  # [3 steps, 64] -> [1,4,64,1,1] maps that move by those steps
        return torch.cat([torch.zeros(1, 64), steps.cumsum(0)]).view(1, 4, 64, 1, 1)

    noisy = torch.ones(3, 64)
    noisy[:, 32], noisy[:, 33] = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([0.0, 2.0, 1.0])
    assert pool_frames(clip(noisy), ["flow-std"]).tolist() == [[0.0] * 64]
    stall = pool_frames(clip(torch.tensor([1.0, 0.0, 2.0])[:, None].expand(3, 64)), ["flow-std"])
    assert torch.allclose(stall, torch.full((1, 64), (2 / 3) ** 0.5))


def test_the_encoders_motion_features_change_with_a_one_pixel_translation_and_not_with_a_copy():
    """A literal clip: a white 8x8 square on black at column 12, then at 12 (a copy) or 13 (one pixel right).
    Through the real encoder, the copy's motion features are exactly zero and the shift's are not; the
    spatial-map change (flow) registers the shift more than the change of the globally pooled features (motion)."""
    from visreward.encoders import load_encoder
    from visreward.encoders.video import VideoEncoder

    def clip(second_column: int) -> torch.Tensor:
        frames = torch.zeros(2, 3, 32, 32)
        frames[0, :, 12:20, 12:20] = 1.0
        frames[1, :, 12:20, second_column : second_column + 8] = 1.0
        return frames[None]

    encoder = VideoEncoder(load_encoder("efficientnet-lite0", backend="torch"), FrameSampling(2), ["motion", "flow"])
    with torch.no_grad():
        copied, shifted = encoder(clip(12)), encoder(clip(13))
    motion, flow = shifted.view(2, -1)
    assert copied.abs().max() == 0
    assert flow.mean() > 0.01 and flow.mean() > 1.3 * motion.mean(), (flow.mean(), motion.mean())  # 0.034, 0.021


def test_the_map_poolings_weigh_map_weight_times_their_own_weight_in_the_heads_standardised_input():
    """VideoEncoder.feature_weights: map_weight on flow's features, a quarter of it on flow-std's and flow-trend's, 1
    elsewhere; the head scales each standardised feature by its weight (on literal features: std sqrt(2) and
    2 sqrt(2) about means 1, 2)."""
    from visreward.encoders import load_encoder
    from visreward.encoders.video import VideoEncoder
    from visreward.rewards.discriminative.head import RewardHead

    encoder = VideoEncoder(load_encoder("efficientnet-lite0", backend="torch"), FrameSampling(3),
                           ["mean", "flow", "motion", "flow-std", "flow-trend"])
    weights = encoder.feature_weights(0.5).unflatten(0, (5, 1280))
    assert weights.tolist() == [[1.0] * 1280, [0.5] * 1280, [1.0] * 1280, [0.125] * 1280, [0.125] * 1280]
    head = RewardHead(2, hidden_dim=0)
    head.fit_normalisation(torch.tensor([[0.0, 0.0], [2.0, 4.0]]), torch.tensor([1.0, 0.25]))
    standardised = (torch.tensor([2.0, 4.0]) - head.feature_mean) / head.feature_std
    assert standardised.tolist() == pytest.approx([1 / 2 ** 0.5, 0.25 * 2 / (2 * 2 ** 0.5)])


def test_temporal_consistency_on_literal_features():
    from visreward.evaluation.video import temporal_consistency

    turning = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # t=2: (0 + 0) / 2, t=3: (1 + 0) / 2
    steady = torch.tensor([[[2.0, 1.0], [4.0, 2.0], [1.0, 0.5]]])
    assert temporal_consistency(torch.cat([turning, steady])).tolist() == pytest.approx([0.25, 1.0])


def test_motion_smoothness_frame_motion_and_dynamic_degree_on_literal_clips():
    from visreward.evaluation.video import dynamic_degree, frame_motion, motion_smoothness

    ramp = torch.tensor([0.0, 0.25, 0.5, 0.75]).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    flicker = torch.tensor([0.0, 0.5, 0.0, 0.5]).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    still = torch.full((1, 4, 3, 2, 2), 0.3)
    clips = torch.cat([ramp, flicker, still])
    assert motion_smoothness(clips).tolist() == pytest.approx([1.0, 0.5, 1.0])  # flicker: |0.5 - 0| and |0 - 0.5|
    blink = torch.zeros(1, 4, 3, 10, 10)
    blink[0, 1::2, :, 0, :5] = 1.0  # 5 of 100 pixels blink: in every pair the top 5% change by 1, the rest by 0
    small = torch.nn.functional.interpolate(clips.flatten(0, 1), size=(10, 10)).unflatten(0, (3, 4))
    assert frame_motion(torch.cat([small, blink])).tolist() == pytest.approx([0.25, 0.5, 0.0, 1.0])
    assert dynamic_degree(clips, threshold=0.3) == pytest.approx(1 / 3)  # only the flicker moves more


def test_video_frechet_distance_mean_pools_frames():
    from visreward.evaluation.video import video_frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 1, 3)).repeat(4, axis=1)  # 4 identical frames: pooling changes nothing
    b = a + np.array([1.0, 0.0, 0.0])  # same covariance, means 1 apart
    assert video_frechet_distance(a, b) == pytest.approx(1.0, abs=1e-6)


@pytest.fixture(scope="module")
def frame_folders(tmp_path_factory):
    """Two 8-frame clips as folders of PNG frames (lossless, so the frames a judge sees are known exactly)."""
    root = tmp_path_factory.mktemp("frame-folders")
    images, _ = real_digits("train")
    clips = {"gliding": digit_clip(images[0], "right"), "shaking": digit_clip(images[1], "still", jitter=1.5)}
    for name, clip in clips.items():
        (root / name).mkdir()
        for t, frame in enumerate(clip):
            Image.fromarray(frame).save(root / name / f"{t:02d}.png")
    return root, clips


def test_video_judge_p_yes_is_computed_from_the_logits_of_a_hand_written_multi_frame_prompt(tmp_path, frame_folders):
    from visreward.rewards.generative import GenerativeRewardModel

    root, clips = frame_folders
    judge = GenerativeRewardModel.from_pretrained(save_tiny_qwen2_5_vl(tmp_path / "qwen"))
    judge.sampling = FrameSampling(2)  # of 8 frames: spans of 4, centres at frames 2 and 6
    seen = {name: [Image.fromarray(clip[2]), Image.fromarray(clip[6])] for name, clip in clips.items()}
    yes, no = judge.processor.tokenizer.convert_tokens_to_ids(["yes", "no"])

    def p_yes(question, frames):
        text = "<|im_start|>user\n" + "<|vision_start|><|image_pad|><|vision_end|>" * len(frames) + (
            "You are judging videos made by a text-to-video model for how well they follow the prompt, how good they "
            f"look and how naturally they move.\nPrompt: a handwritten digit 0\n{question}<|im_end|>\n<|im_start|>assistant\n")
        with torch.no_grad():
            logits = judge.model(**judge.processor(text=[text], images=[frames], return_tensors="pt")).logits[0, -1]
        return float(torch.softmax(logits[[yes, no]], dim=0)[0])

    pointwise = p_yes("The images are 2 frames of one video, in order. Does this video satisfy the prompt? "
                      "Answer yes or no.", seen["gliding"])
    assert judge.score([str(root / "gliding")], ["a handwritten digit 0"]).item() == pytest.approx(pointwise, abs=1e-5)
    pairwise = ("The first 2 images are frames of video 1 and the next 2 are frames of video 2, in order. "
                "Is video 1 better than video 2? Answer yes or no.")
    forward = p_yes(pairwise, seen["gliding"] + seen["shaking"])
    backward = p_yes(pairwise, seen["shaking"] + seen["gliding"])
    as_tensor = torch.from_numpy(clips["shaking"]).permute(0, 3, 1, 2)  # a [T,3,H,W] uint8 reference clip
    score = judge.score([str(root / "gliding")], ["a handwritten digit 0"], references=[as_tensor])
    assert score.item() == pytest.approx((forward + 1 - backward) / 2, abs=1e-5)


@pytest.mark.parametrize("family", sorted(TINY_VLMS))
def test_every_tiny_vlm_family_judges_clips_given_as_files_frames_tensors_and_batches(tmp_path, frame_folders, family):
    from visreward.rewards.generative import GenerativeRewardModel

    root, clips = frame_folders
    judge = GenerativeRewardModel.from_pretrained(TINY_VLMS[family](tmp_path / family))
    judge.sampling = FrameSampling(2)
    prompts = ["a handwritten digit 0", "a handwritten digit 1"]
    by_folder = judge.score([str(root / "gliding"), str(root / "shaking")], prompts)
    as_frames = [[Image.fromarray(frame) for frame in clips[name]] for name in ("gliding", "shaking")]
    uint8_batch = np.stack([clips["gliding"], clips["shaking"]])  # [B,T,H,W,3], as RL trainers hold video
    assert torch.allclose(judge.score(as_frames, prompts), by_folder, atol=1e-4)
    assert torch.allclose(judge.reward_fn(uint8_batch, prompts)[0], by_folder, atol=1e-4)
    pairwise = judge.score(as_frames, prompts, references=[as_frames[1], as_frames[0]])
    assert pairwise[0].item() + pairwise[1].item() == pytest.approx(1.0, abs=1e-4)  # each order-averaged pair


def test_train_vlm_rm_on_video_pairs_beats_chance_on_held_out_pairs(tmp_path):
    """A synthetic video preference: a gliding digit over the same clip flickering with static (a pointwise
    judge: each clip alone is a 2-frame question, a quarter of the cost of a pairwise example)."""
    from visreward.io.pairs import Pair, write_pairs
    from visreward.rewards.generative import GenerativeRewardModel, VLMTrainingConfig, train_vlm_reward_model

    images, labels = real_digits("train")
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(60):
        clean = digit_clip(images[i], "right")
        static = np.clip(clean + rng.normal(0, 90, clean.shape), 0, 255).astype(np.uint8)
        write_video(tmp_path / f"{i}-clean.mp4", clean)
        write_video(tmp_path / f"{i}-static.mp4", static)
        pairs.append(Pair(digit_prompt(int(labels[i])), str(tmp_path / f"{i}-clean.mp4"), str(tmp_path / f"{i}-static.mp4"), 1.0, 0.0))
    metrics = train_vlm_reward_model(VLMTrainingConfig(
        model=str(save_tiny_qwen2_5_vl(tmp_path / "base")), pairs=[str(write_pairs(pairs, tmp_path / "pairs"))],
        output=str(tmp_path / "rm"), frames=2, epochs=6, lr=1e-3, batch_size=16, mode="pointwise", progress=False))
    assert metrics["n_heldout"] == 12 and metrics["history"][0]["heldout_pairwise_accuracy"] < 0.8
    assert metrics["heldout_pairwise_accuracy"] >= 0.8, metrics["history"]  # chance is 0.5
    judge = GenerativeRewardModel.from_pretrained(tmp_path / "rm")
    assert judge.sampling == FrameSampling(2)  # the trained judge sees videos as it was trained to


def test_a_video_pair_gives_pairwise_examples_of_both_clips_frames_in_order(tmp_path):
    from visreward.io.pairs import PreferencePair
    from visreward.rewards.generative.trainer import examples_of

    chosen = write_video(tmp_path / "a.webm", counting_clip(8), fps=8).read_bytes()
    rejected = write_video(tmp_path / "b.gif", counting_clip(8)[::-1].copy(), fps=8).read_bytes()
    examples = examples_of(PreferencePair("a digit", chosen, rejected), "both", None, None, FrameSampling(2))
    questions = [q.rsplit("\n", 1)[-1] for q, _, _ in examples]
    assert questions == ["The first 2 images are frames of video 1 and the next 2 are frames of video 2, in order. "
                         "Is video 1 better than video 2? Answer yes or no."] * 2 + [
        "The images are 2 frames of one video, in order. Does this video satisfy the prompt? Answer yes or no."] * 2
    levels = [[round(np.asarray(image)[0, 0, 0] / 6) for image in images] for _, images, _ in examples]
    assert levels == [[2, 6, 5, 1], [5, 1, 2, 6], [2, 6], [5, 1]]  # frames 2 and 6; reversed clip: 7-2, 7-6
    assert [answer for _, _, answer in examples] == ["yes", "no", "yes", "no"]


def test_cli_eval_rm_and_judge_scoring_take_videos(motion_clips, video_rm, tmp_path):
    from visreward.cli import main

    model = str(video_rm[0])
    assert main(["eval-rm", "--model", model, "--target", str(motion_clips / "gliding"), "--generated",
                 str(motion_clips / "shaking"), "--output", str(tmp_path / "eval.json"), "--no-progress"]) == 0
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert evaluation["n_positive"] == 50 and evaluation["auc"] > 0.9  # training clips included: a smoke check

    folder = tmp_path / "clips"
    folder.mkdir()
    for clip in sorted((motion_clips / "gliding").glob("*.mp4"))[:2]:
        (folder / clip.name).write_bytes(clip.read_bytes())
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    judge = save_tiny_qwen2_5_vl(tmp_path / "qwen")
    assert main(["score", "--model", f"vlm:{judge}", "--output", str(tmp_path / "judged.parquet"), "--no-progress",
                 str(folder)]) == 0
    table = pq.read_table(tmp_path / "judged.parquet").to_pydict()
    assert sorted(table["id"]) == ["clips/000.mp4", "clips/001.mp4"] and all(0 < s < 1 for s in table["score"])
    assert "broken.mp4" in (tmp_path / "judged.parquet.skipped.txt").read_text()


def test_webdataset_shards_of_videos_score_like_the_files(video_rm, motion_clips, tmp_path):
    import tarfile

    from visreward.scoring import ScoreConfig, run_score

    files = sorted((motion_clips / "shaking").glob("*.mp4"))[:3]
    with tarfile.open(tmp_path / "shard-000.tar", "w") as shard:
        for i, file in enumerate(files):
            shard.add(file, arcname=f"clip{i}.mp4")
            (tmp_path / f"clip{i}.txt").write_text("a handwritten digit")
            shard.add(tmp_path / f"clip{i}.txt", arcname=f"clip{i}.txt")
    run_score(ScoreConfig(inputs=[str(tmp_path / "shard-000.tar")], model=str(video_rm[0]),
                          output=str(tmp_path / "s.parquet"), progress=False))
    table = pq.read_table(tmp_path / "s.parquet").to_pydict()
    assert table["id"] == ["shard-000.tar/clip0.mp4", "shard-000.tar/clip1.mp4", "shard-000.tar/clip2.mp4"]
    assert table["prompt"] == ["a handwritten digit"] * 3
    expected = DiscriminativeRewardModel.from_pretrained(video_rm[0], backend="auto").score([str(f) for f in files])
    assert table["score"] == pytest.approx(expected.tolist(), abs=1e-4)


def test_train_rm_reads_videos_inside_webdataset_tars_as_clips_without_media_video(motion_clips, tmp_path):
    import tarfile

    for side in ("gliding", "shaking"):
        with tarfile.open(tmp_path / f"{side}.tar", "w") as shard:
            for file in sorted((motion_clips / side).glob("*.mp4"))[:12]:
                shard.add(file, arcname=file.name)
    model, metrics = train_reward_model(RewardTrainingConfig(
        target=[str(tmp_path / "gliding.tar")], generated=[str(tmp_path / "shaking.tar")], output=str(tmp_path / "rm"),
        frames=FRAMES, off_manifold=0, progress=False))
    assert metrics["n_target"] == 12 and metrics["n_generated"] == 12
    assert model.encoder.sampling.frames == FRAMES  # a video reward: without the fix, an image one on first frames


def test_best_of_n_samples_a_video_pipeline_and_keeps_the_clip_the_video_reward_ranks_first(video_rm, tmp_path):
    from tiny_pipelines import save_tiny_wan

    from visreward.generators import DiffusersGenerator
    from visreward.post_training.best_of_n import BestOfNConfig, run_best_of_n

    generator = DiffusersGenerator.from_pretrained(save_tiny_wan(tmp_path), num_inference_steps=2, height=16, width=16,
                                                   num_frames=9, guidance_scale=1.0)
    generator.save_pretrained(tmp_path / "wan")
    run_best_of_n(BestOfNConfig(generator=str(tmp_path / "wan"), reward=str(video_rm[0]), prompts=["a digit", "a clip"],
                                n=3, keep=1, output=str(tmp_path / "bon"), progress=False))
    table = pq.read_table(tmp_path / "bon" / "scores.parquet").to_pydict()
    assert table["id"] == [f"samples/00000{i}.mp4" for i in range(6)]
    best = [json.loads(line) for line in (tmp_path / "bon" / "best" / "metadata.jsonl").read_text().splitlines()]
    for group in range(2):
        scores = table["score"][3 * group : 3 * group + 3]
        assert best[group]["file_name"] == f"00000{3 * group + scores.index(max(scores))}.mp4"
        assert best[group]["frames"] == 9
    kept = tmp_path / "bon" / "best" / best[0]["file_name"]
    assert kept.read_bytes() == (tmp_path / "bon" / "samples" / best[0]["file_name"]).read_bytes()


def test_best_of_n_on_an_image_to_video_pipeline_keeps_each_prompts_image_with_its_clips(video_rm, tmp_path):
    from conftest import write_image_prompts
    from tiny_pipelines import save_tiny_cogvideox_i2v

    from visreward.generators import DiffusersGenerator
    from visreward.post_training.best_of_n import BestOfNConfig, run_best_of_n

    DiffusersGenerator.from_pretrained(save_tiny_cogvideox_i2v(tmp_path), num_inference_steps=2, height=16, width=16,
                                       num_frames=9, guidance_scale=1.0).save_pretrained(tmp_path / "i2v")
    prompts = write_image_prompts(tmp_path / "prompts")
    run_best_of_n(BestOfNConfig(generator=str(tmp_path / "i2v"), reward=str(video_rm[0]), prompts=[str(prompts)], n=2,
                                keep=1, output=str(tmp_path / "bon"), progress=False))
    best = [json.loads(line) for line in (tmp_path / "bon" / "best" / "metadata.jsonl").read_text().splitlines()]
    assert [(row["prompt"], row["image"]) for row in best] == [
        ("a digit 3 moving right", str(tmp_path / "prompts" / "digit-3.png")),
        ("a digit 5 moving right", str(tmp_path / "prompts" / "digit-5.png"))]
    assert len(pq.read_table(tmp_path / "bon" / "scores.parquet")) == 4


def test_clip_bytes_are_told_from_image_bytes_by_their_container(motion_clips, tmp_path):
    """What the reward server passes a judge: a file's bytes, a clip when it is an MP4/WebM/AVI container or an
    animation of more than one frame."""
    from visreward.io.videos import is_clip_bytes
    from visreward.rewards.generative.model import _is_clip

    frames = [np.full((16, 16, 3), v, dtype=np.uint8) for v in (0, 255)]
    write_video(tmp_path / "a.webm", frames)
    write_video(tmp_path / "a.avi", frames)
    encoded = {}
    for name, images in (("still.gif", frames[:1]), ("moving.gif", frames), ("still.png", frames[:1])):
        buffer = io.BytesIO()
        Image.fromarray(images[0]).save(buffer, format=name.split(".")[1].upper(), save_all=len(images) > 1,
                                         append_images=[Image.fromarray(f) for f in images[1:]])
        encoded[name] = buffer.getvalue()
    clips = [next((motion_clips / "gliding").glob("*.mp4")).read_bytes(), (tmp_path / "a.webm").read_bytes(),
             (tmp_path / "a.avi").read_bytes(), encoded["moving.gif"]]
    assert all(is_clip_bytes(c) and _is_clip(c) for c in clips)
    assert not any(is_clip_bytes(encoded[n]) or _is_clip(encoded[n]) for n in ("still.gif", "still.png"))


def test_motion_wrecks_keep_each_frames_look_and_break_the_motion():
    """wreck_motion's three kinds, told apart by what each does to a literal 4-frame clip."""
    from visreward.rewards.probes import wreck_motion

    clip = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2) / 48
    seen = set()
    for seed in range(40):
        out = wreck_motion(clip, torch.Generator().manual_seed(seed))
        factors = out.flatten(1)[:, 1:] / clip.flatten(1)[:, 1:]  # per frame, past the one zero pixel
        if torch.equal(out, clip[:1].expand_as(clip)):
            seen.add("frozen")
        elif sorted(map(tuple, out.flatten(1).tolist())) == sorted(map(tuple, clip.flatten(1).tolist())):
            seen.add("shuffled")
        else:
            assert torch.allclose(factors, factors[:, :1].expand_as(factors), atol=1e-5)  # one factor a frame
            assert (factors >= 0.3 - 1e-6).all() and (factors <= 1 + 1e-6).all()
            seen.add("flicker")
    assert seen == {"frozen", "shuffled", "flicker"}


def test_frozen_and_shuffled_clips_score_below_the_held_out_targets(video_rm, motion_clips):
    """The fixture's generated clips shake in place, so a frozen gliding digit (no shake at all) is what a reward
    without motion negatives learnt to like: frozen clips scored 29.9 to 40.9, above every held-out target (from
    16.4). With them and the five-head default every frozen clip scores below every target (at most -3.4 against
    6.9 and up; 1.2 against 5.8 and 1.5 against 3.9 on training seeds 1 and 2, where one head's frozen median was
    above the lowest target). A shuffle of a target's frames jumps like the shaking clips: each scores below the clip
    it shuffles, and their median below every target (4.8 against 6.9; 3.7 and 3.0 on seeds 1 and 2). The highest
    shuffle (11.6, of the best target, 17.9) is above the lowest target: a shuffle is compared with its own clip, as
    a reward compares samples; with per-channel flow-std their median was 6.4 against 8.9, AUC 0.77 (issue 24)."""
    from visreward.encoders.features import encode_tensors

    output, metrics = video_rm
    model = DiscriminativeRewardModel.from_pretrained(output)
    held = [motion_clips / name for name in metrics["splits"]["target"]["test"]]  # ids: paths under the clips folder
    clips = torch.stack([read_clip(p, FrameSampling(8)) for p in held]).float() / 255
    target = model.score_features(encode_tensors(model.encoder, clips))
    frozen = model.score_features(encode_tensors(model.encoder, clips[:, :1].expand_as(clips).contiguous()))
    shuffled = model.score_features(encode_tensors(model.encoder, clips[:, [5, 2, 7, 0, 4, 1, 6, 3]].contiguous()))
    assert frozen.max() < target.min() and frozen.mean() < target.mean() - 3, (frozen, target)
    assert (shuffled < target).all() and shuffled.median() < target.min(), (shuffled, target)


def test_the_default_pooling_beats_global_pooling_on_a_small_smooth_vs_jitter_contrast(tmp_path):
    """Both sides show the same kind of real digit moving; the targets glide at a constant 0.5-1.5 px/frame, the
    generated ones jump up to 4 px per axis every frame; 16 frames of 32 px, 24 + 24 training clips, 12 + 12 held out.
    Globally pooled features hardly change when a digit moves: held-out AUC 0.73 with the default before issue 24
    (8 frames, mean/std/motion, one MLP), 0.87 with today's (spatial-map poolings on every frame, five MLPs; one MLP
    on them gave 0.91 here, but on 60 + 60 clips 0.86-0.95 against five's 0.95-0.98, benchmarks/README.md)."""
    from visreward.io.digits import draw_path, glide_path, jitter_path

    images, _ = real_digits("train")
    rng = np.random.default_rng(0)
    for name, path in (("smooth", lambda: glide_path(rng, 16, 16)), ("jitter", lambda: jitter_path(rng, 16, 16, 4.0))):
        (tmp_path / name).mkdir()
        for i in range(36):
            write_video(tmp_path / name / f"{i:02d}.mp4", draw_path(images[i], path(), size=32, scale=2), fps=8)
    auc = {}
    before = {"frames": 8, "pooling": ["mean", "std", "motion"], "heads": 1, "lr": 1e-3}  # the default before issue 24
    for label, settings in (("before", before), ("default", {})):
        _, metrics = train_reward_model(RewardTrainingConfig(
            target=[str(tmp_path / "smooth")], generated=[str(tmp_path / "jitter")], output=str(tmp_path / label),
            test=1 / 3, progress=False, no_cache=True, **settings))
        auc[label] = metrics["heldout"]["auc"]
    assert auc["default"] >= 0.85 and auc["default"] >= auc["before"] + 0.1, auc


def test_the_feature_cache_key_names_the_flow_group_only_where_flow_std_uses_it(encoder):
    """Clip features cached under one FLOW_GROUP are not read back under another."""
    from visreward.encoders.video import VideoEncoder

    maps = VideoEncoder(encoder, FrameSampling(16), ("mean", "flow", "flow-std")).cache_key
    assert maps.endswith("|pool=mean+flow+flow-std|group=32")
    assert VideoEncoder(encoder, FrameSampling(8), ("mean", "std", "motion")).cache_key.endswith("|pool=mean+std+motion")
