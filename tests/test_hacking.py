"""Rewards the cheapest exploits cannot win: off-manifold negatives, probes, and ReFL's hacking monitors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from visreward import DiscriminativeRewardModel, RewardTrainingConfig, train_reward_model
from visreward.io.digits import digit_prompt
from visreward.post_training.monitors import HackingMonitor, MonitorLimits
from visreward.rewards.probes import PROBES, probe_images, probe_report


class _FixedDistanceReward:
    """A stand-in reward whose calibration and feature distances are literals."""

    calibration = {"target_score_max": 1.0, "target_score_p5": -1.0, "feature_distance_p99": 2.0}

    def __init__(self, distances):
        self.distances = torch.tensor(distances)

    def encoder(self, images):
        return images.flatten(1)

    def feature_distance(self, features):
        return self.distances


def test_monitor_fractions_and_alarms_on_literal_batches():
    images = torch.zeros(4, 3, 8, 8)
    reward = _FixedDistanceReward([0.5, 3.0, 2.5, 1.0])
    monitor = HackingMonitor(reward, MonitorLimits(off_manifold=0.4), warmup=1, smoothing=1.0)
    logs = monitor.update(torch.tensor([0.0, 2.0, 0.5, 3.0]), images, ["a face"] * 4)
    assert logs["above_target"] == 0.5 and logs["off_manifold"] == 0.5 and "independent_agreement" not in logs
    assert logs["reward_std"] == pytest.approx((5.6875 / 3) ** 0.5)  # squared deviations from 1.375 sum to 5.6875
    assert monitor.alarms() == ["50% of samples lie off the reward's training data"]
    monitor.update(torch.full((4,), 5.0), images, ["a face"] * 4)  # every sample above target, spread gone
    assert monitor.alarms() == ["reward spread collapsed to 0.00 of its start",
                                "100% of samples score above every held-out target image",
                                "50% of samples lie off the reward's training data"]

    smoothed = HackingMonitor(reward, warmup=1)  # one bad batch moves the running average a fifth of the way
    smoothed.update(torch.tensor([0.0, 2.0, 0.5, 3.0]), images, ["a face"] * 4)
    smoothed.update(torch.full((4,), 5.0), images, ["a face"] * 4)
    assert smoothed.running["above_target"] == pytest.approx(0.8 * 0.5 + 0.2 * 1.0)
    assert smoothed.running["reward_std_ratio"] == pytest.approx(0.8) and smoothed.alarms() == [
        "60% of samples score above every held-out target image"]


def test_the_digits_generator_brings_its_own_independent_check_and_the_monitor_guesses_none_from_image_shapes(
        tiny_generator):
    from types import SimpleNamespace

    from visreward.io.digits import real_digits
    from visreward.post_training.monitors import independent_check_for

    images, labels = real_digits("train")
    batch = torch.from_numpy(images[:20]).unsqueeze(1).expand(-1, 3, -1, -1)
    prompts = [digit_prompt(int(d)) for d in labels[:20]]
    assert "independent_agreement" not in HackingMonitor(object(), warmup=1).update(torch.zeros(20), batch, prompts)
    clips = SimpleNamespace(frames=4, resolution=(8, 8), prompts=prompts)  # 8x8 digit clips get no digit check
    assert independent_check_for(clips, "moving-digits") is None
    monitor = HackingMonitor(object(), warmup=1, agreement=independent_check_for(tiny_generator, "digits"))
    right = monitor.update(torch.zeros(20), batch, prompts)
    assert right["independent_agreement"] > 0.9 and "above_target" not in right
    monitor.update(torch.zeros(20), torch.rand(20, 3, 8, 8), prompts)
    monitor.update(torch.zeros(20), torch.rand(20, 3, 8, 8), prompts)
    assert any("independent check fell" in a for a in monitor.alarms())


@pytest.fixture(scope="module")
def faces_reward(tmp_path_factory):
    """A reward on another shipped data set: scikit-image's real faces (target) vs its non-face crops."""
    import skimage.data

    root = tmp_path_factory.mktemp("faces")
    images = (skimage.data.lfw_subset() * 255).round().astype(np.uint8)
    for name, part in (("faces", images[:100]), ("other", images[100:])):
        (root / name).mkdir()
        for i, image in enumerate(part):
            Image.fromarray(image, mode="L").save(root / name / f"{i:03d}.png")
    train_reward_model(RewardTrainingConfig(target=[str(root / "faces")], generated=[str(root / "other")],
                                            output=str(root / "rm"), progress=False))
    model = DiscriminativeRewardModel.from_pretrained(root / "rm")
    held = torch.from_numpy(images[80:100]).float().div(255)[:, None].expand(-1, 3, -1, -1)
    generated = torch.from_numpy(images[180:182]).float().div(255)[:, None].expand(-1, 3, -1, -1)
    return model, held, generated, json.loads((root / "rm" / "metrics.json").read_text()), root


def test_every_probe_scores_below_the_held_out_targets(faces_reward):
    model, held, generated, metrics, _ = faces_reward
    assert metrics["heldout"]["auc"] > 0.9  # the off-manifold negatives cost the real task nothing
    report = probe_report(model, model.score(held), generated)
    assert set(report) == set(PROBES)
    fixed = {name: r for name, r in report.items() if name != "gradient ascent"}  # the adversary is reported, not bounded
    assert all(r["percentile"] < 5 for r in fixed.values()), report
    assert set(model.calibration) == {"target_score_max", "target_score_p5", "feature_distance_p99", "off_data_penalty"}


def test_gradient_ascent_raises_every_starting_image_s_score(faces_reward):
    from visreward.rewards.probes import gradient_ascent

    model, _, generated, *_ = faces_reward
    before, after = model.score(generated), model.score(gradient_ascent(model, generated))
    assert (after > before + 1.0).all(), (before, after)


def test_monitor_thresholds_are_calibrated_on_the_validation_split_never_on_test(faces_reward):
    model, _, _, metrics, root = faces_reward
    splits = metrics["splits"]["target"]
    assert (len(splits["validation"]), len(splits["test"])) == (20, 10)  # 100 faces, --holdout 0.2, --test 0.1
    assert not set(splits["validation"]) & set(splits["test"])
    top = {name: float(model.score([root / i for i in ids]).max()) for name, ids in splits.items()}
    assert top["validation"] != pytest.approx(top["test"], abs=1e-3)  # so the check below tells the splits apart
    assert model.calibration["target_score_max"] == pytest.approx(top["validation"], abs=1e-4)


def test_inputs_beyond_the_training_data_score_lower_by_the_off_data_penalty(faces_reward):
    model, *_ = faces_reward
    assert model.calibration["off_data_penalty"] == 10.0  # RewardTrainingConfig's default, saved with the model
    limit = model.calibration["feature_distance_p99"]
    direction = model.head.feature_std.detach().cpu()
    # mean + k * std in every coordinate is at distance exactly k: half the limit, and three times it
    features = model.head.feature_mean.detach().cpu() + torch.tensor([[0.5 * limit], [3.0 * limit]]) * direction
    with torch.no_grad():
        raw = model.head(features, None)
    penalty = model.score_features(features) - raw
    assert penalty.tolist() == pytest.approx([0.0, -20.0], abs=1e-3)  # 10 x (3 limit - limit) / limit
    features.requires_grad_(True)
    model.guarded(model.head(features, None), features).sum().backward()  # the penalty is differentiable for ReFL
    assert features.grad[1].abs().sum() > features.grad[0].abs().sum() > 0


def test_without_off_manifold_negatives_or_the_off_data_penalty_noise_is_an_exploit(tmp_path, digit_folders):
    """The failure the defaults guard against: a plain head scores some probe above the held-out targets.
    Either guard alone (wrecked negatives in training, the penalty at scoring) lowers the worst probe."""
    from visreward.io.digits import real_digits

    def worst_probe(off_manifold, off_data_penalty):
        output = tmp_path / f"rm-{off_manifold}-{off_data_penalty}"
        train_reward_model(RewardTrainingConfig(target=[str(digit_folders["target"])], generated=[str(digit_folders["generated"])],
                                                output=str(output), off_manifold=off_manifold,
                                                off_data_penalty=off_data_penalty, progress=False))
        model = DiscriminativeRewardModel.from_pretrained(output)
        held = torch.from_numpy(real_digits("evaluation")[0][:40]).unsqueeze(1).expand(-1, 3, -1, -1)
        reference = model.score(held)
        return max(float((reference < model.score(images).max()).float().mean()) for images in probe_images(held[:2]).values())

    plain = worst_probe(0.0, 0.0)
    assert plain > worst_probe(0.5, 0.0) and plain > worst_probe(0.0, 10.0)


def test_prompt_agreement_of_a_train_generator_folder_fires_on_noise_and_on_another_prompts_images(tmp_path):
    """A generator trained on a user's own folder (class names, not digits): the check is fitted on that folder's
    images, reads held-out images of each class as their prompt, and falls on noise and on another class's images;
    fed through the hacking monitor, the fall raises its alarm."""
    from visreward.core.options import GeneratorTrainingConfig
    from visreward.generators import GeneratedSample, save_samples, train_generator
    from visreward.io.digits import digit_image, real_digits
    from visreward.post_training.monitors import prompt_agreement_for

    names = ["circle", "spike", "swan", "hook", "flag", "snake", "loop", "hinge", "knot", "tadpole"]
    images, labels = real_digits("train")
    save_samples([GeneratedSample(digit_image(i), f"a sketch of a {names[int(l)]}", -1)
                  for i, l in zip(images[:400], labels[:400])], tmp_path / "data")
    train_generator(GeneratorTrainingConfig(data=[str(tmp_path / "data")], output=str(tmp_path / "gen"), steps=2,
                                            width=32, progress=False))
    check = prompt_agreement_for(str(tmp_path / "gen"))
    assert check is not None and check.heldout_accuracy > 0.8
    held, held_labels = real_digits("evaluation")
    rgb = torch.from_numpy(held[:100]).float().view(-1, 1, 8, 8).expand(-1, 3, -1, -1)
    rgb = torch.round(rgb * 255) / 255
    own = [f"a sketch of a {names[int(l)]}" for l in held_labels[:100]]
    other = [f"a sketch of a {names[(int(l) + 1) % 10]}" for l in held_labels[:100]]
    assert check(rgb, own) > 0.8
    assert check(torch.rand(100, 3, 8, 8, generator=torch.Generator().manual_seed(0)), own) < 0.3
    assert check(rgb, other) < 0.3
    assert check(rgb, ["a photo of a cat"] * 100) is None  # not one of the generator's prompts

    monitor = HackingMonitor(object(), MonitorLimits(), agreement=check)
    for _ in range(monitor.warmup):
        monitor.update(torch.randn(100), rgb, own)
    assert not monitor.alarms()
    for _ in range(10):
        monitor.update(torch.randn(100), torch.rand(100, 3, 8, 8), own)
    assert any("independent check fell" in alarm for alarm in monitor.alarms())
    assert prompt_agreement_for("digits") is None


def test_text_agreement_counts_the_samples_nearest_their_own_prompt():
    """A stand-in encoder whose features are an image's mean red, green and blue, and whose text features are the
    colour a prompt names: each sample's nearest prompt is known by construction."""
    from types import SimpleNamespace

    from visreward.post_training.monitors import TextAgreement

    colours = ["red", "green", "blue"]
    encoder = SimpleNamespace(preprocessing=SimpleNamespace(quantized=lambda pixels: pixels),
                              encode_pixels=lambda pixels: pixels.float().mean(dim=(-1, -2)),
                              encode_text=lambda prompts: torch.eye(3)[[colours.index(p.split()[1]) for p in prompts]])
    check = TextAgreement(encoder)
    red, green = torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)
    red[0], green[1] = 1.0, 1.0
    images = torch.stack([red, red, green, green])
    assert check(images, ["a red square", "a red square", "a green square", "a green square"]) == 1.0
    assert check(images, ["a green square", "a red square", "a red square", "a green square"]) == 0.5
    assert check(images, ["a blue square", "a green square", "a red square", "a blue square"]) == 0.0
    assert check(images, ["a red square"] * 4) is None  # one prompt: nothing to tell apart
    clips = torch.stack([torch.stack([green, red, green]), torch.stack([red, green, red])])  # read at the middle frame
    assert check(clips, ["a red square", "a green square"]) == 1.0
