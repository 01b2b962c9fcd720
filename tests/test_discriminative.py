import json
import math

import numpy as np
import pytest
import torch
from conftest import write_real_digits
from PIL import Image

from visreward import DiscriminativeRewardModel, RewardTrainingConfig, train_reward_model
from visreward.core.errors import VisrewardError
from visreward.encoders import load_encoder
from visreward.rewards.discriminative.head import RewardHead
from visreward.rewards.discriminative.trainer import (
    bootstrap_set,
    class_balanced_weights,
    labeled,
    member_splits,
    split_holdout,
)


def _config(folders, tmp_path, **overrides) -> RewardTrainingConfig:
    values = dict(target=[str(folders["target"])], generated=[str(folders["generated"])],
                  output=str(tmp_path / "rm"), progress=False)
    values.update(overrides)
    return RewardTrainingConfig(**values)


@pytest.fixture(scope="module")
def trained(digit_folders, tmp_path_factory):
    output = tmp_path_factory.mktemp("trained")
    model, metrics = train_reward_model(_config(digit_folders, output))
    return output / "rm", model, metrics


def test_training_separates_target_from_generated(trained, digit_folders):
    directory, model, metrics = trained
    assert metrics["n_target"] == 40 and metrics["n_generated"] == 40
    assert metrics["heldout"]["auc"] > 0.9
    history = metrics["rounds"][0]["history"]
    assert {"heldout_auc", "heldout_accuracy", "heldout_loss", "train_loss"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # the model also separates images it never saw
    real = model.score(sorted(str(p) for p in digit_folders["heldout_target"].glob("*.png")))
    fake = model.score(sorted(str(p) for p in digit_folders["heldout_generated"].glob("*.png")))
    assert real.mean() > fake.mean()


def test_saved_folder_is_hugging_face_style_with_config_and_metrics(trained):
    directory, model, _ = trained
    assert {p.name for p in directory.iterdir()} == {"config.json", "model.safetensors", "training_config.json",
                                                     "metrics.json", "README.md"}  # README.md: its model card
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "visreward-gan-rm" and config["encoder"] == "efficientnet-lite0"
    assert config["preprocessing"]["crop"] == 224 and config["hidden_dim"] == 512
    assert json.loads((directory / "training_config.json").read_text())["seed"] == 0


def test_from_pretrained_round_trip_and_input_kinds(trained, digit_folders):
    directory, model, _ = trained
    loaded = DiscriminativeRewardModel.from_pretrained(directory, encoder=model.encoder)
    paths = sorted(str(p) for p in digit_folders["heldout_target"].glob("*.png"))[:4]
    from_paths = loaded.score(paths)
    assert torch.allclose(from_paths, model.score(paths), atol=1e-5)
    pil = [Image.open(p) for p in paths]
    assert torch.allclose(loaded.score(pil), from_paths, atol=1e-5)
    tensors = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255).permute(2, 0, 1) for im in pil])
    assert torch.allclose(loaded.score(tensors), from_paths, atol=1e-4)  # one preprocessing for files and tensors
    assert torch.allclose(loaded.score(paths, prob=True), torch.sigmoid(from_paths))
    rewards, info = loaded.reward_fn(tensors, ["a handwritten digit 1"] * 4, [{}] * 4)
    assert rewards.shape == (4,) and set(info) == {"reward_mean", "reward_std"}
    logits = loaded(tensors.requires_grad_())
    logits.sum().backward()
    assert tensors.grad.abs().sum() > 0


def test_loading_with_a_mismatched_encoder_is_an_error(trained, tiny_hf_encoders):
    directory, _, _ = trained
    with pytest.raises(VisrewardError, match="trained on encoder 'efficientnet-lite0'"):
        DiscriminativeRewardModel.from_pretrained(directory, encoder=load_encoder(f"dinov2:{tiny_hf_encoders['dinov2']}"))
    config = json.loads((directory / "config.json").read_text())
    config["preprocessing"]["resize"] = 300
    tampered = directory.parent / "tampered"
    tampered.mkdir()
    (tampered / "config.json").write_text(json.dumps(config))
    (tampered / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    with pytest.raises(VisrewardError, match="preprocessing or feature size differs"):
        DiscriminativeRewardModel.from_pretrained(tampered)
    with pytest.raises(VisrewardError, match="not a reward model folder"):
        DiscriminativeRewardModel.from_pretrained(directory.parent / "nothing")


def test_training_is_deterministic_with_seed(digit_folders, tmp_path, trained):
    _, model, _ = trained
    again, _ = train_reward_model(_config(digit_folders, tmp_path))
    for a, b in zip(model.head.state_dict().values(), again.head.state_dict().values()):
        assert torch.equal(a, b)
    different, _ = train_reward_model(_config(digit_folders, tmp_path, seed=1, output=str(tmp_path / "rm1")))
    assert not torch.equal(model.head.members[0][0].weight, different.head.members[0][0].weight)


def test_bootstrapping_adds_soft_positives_and_negatives(digit_folders, tmp_path):
    _, metrics = train_reward_model(_config(digit_folders, tmp_path, unlabeled=[str(digit_folders["unlabeled"])],
                                            bootstrap_rounds=2, m=5, alpha=0.5))
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    base = metrics["rounds"][0]["n_train"]
    for r in metrics["rounds"][1:]:
        assert r["n_train"] == base + 10
        labels = [entry["label"] for entry in r["bootstrap"]["top"]]
        assert labels == pytest.approx([math.exp(-0.5 * rank) for rank in range(5)])
        top_scores = [e["score"] for e in r["bootstrap"]["top"]]
        assert top_scores == sorted(top_scores, reverse=True)
        assert min(top_scores) >= max(e["score"] for e in r["bootstrap"]["bottom"])


def test_bootstrap_set_on_literal_features():
    class FixedModel:
        class head:
            uses_text = False

        def score_features(self, features, prompts=None):
            return features[:, 0]

    pool = labeled(torch.tensor([[0.1], [0.9], [0.5], [0.3], [0.7]]), 0.0)
    records = [type("R", (), {"id": str(i), "prompt": None})() for i in range(5)]
    found, info = bootstrap_set(FixedModel(), pool, records, RewardTrainingConfig(m=2, alpha=1.0))
    assert [e["id"] for e in info["top"]] == ["1", "4"] and [e["id"] for e in info["bottom"]] == ["3", "0"]
    assert found.features.flatten().tolist() == pytest.approx([0.9, 0.7, 0.3, 0.1])
    assert found.labels.tolist() == pytest.approx([1.0, math.exp(-1.0), 0.0, 0.0])
    assert found.positive_side.tolist() == [True, True, False, False]


def test_class_balanced_weights_equalise_the_two_sides():
    weights = class_balanced_weights(torch.tensor([True, False, False, False]))
    assert weights.tolist() == pytest.approx([2.0, 2 / 3, 2 / 3, 2 / 3])
    assert weights.mean().item() == pytest.approx(1.0)


def test_holdout_split_needs_enough_images():
    rng = np.random.default_rng(0)
    train, held = split_holdout(10, 0.2, rng, "--target")
    assert len(train) == 8 and len(held) == 2 and not set(train) & set(held)
    with pytest.raises(VisrewardError, match=r"--target: 1 usable image\(s\), too few for a 20% held-out split"):
        split_holdout(1, 0.2, rng, "--target")


def test_an_ensemble_validates_each_member_on_its_own_fold_and_one_member_on_holdout():
    """10 inputs, 20% test: 8 left. Four members validate on four folds of 2, each trained on the other 6; one member
    validates on --holdout's 20% of all 10 (2 of the 8)."""
    folds, test = member_splits(10, RewardTrainingConfig(test=0.2, heads=4), np.random.default_rng(0), "--target")
    rest = set(range(10)) - set(test.tolist())
    assert len(test) == 2 and [(len(train), len(held)) for train, held in folds] == [(6, 2)] * 4
    assert sorted(i for _, held in folds for i in held.tolist()) == sorted(rest)  # each validated on exactly once
    assert all(set(train.tolist()) == rest - set(held.tolist()) for train, held in folds)
    (train, held), = member_splits(10, RewardTrainingConfig(test=0.2, heads=1), np.random.default_rng(0), "--target")[0]
    assert (len(train), len(held)) == (6, 2)
    with pytest.raises(VisrewardError, match=r"--target: 3 usable input\(s\) outside the test split, too few for --heads 5"):
        member_splits(4, RewardTrainingConfig(test=0.25, heads=5), np.random.default_rng(0), "--target")


def test_a_head_saved_with_one_mlp_loads_as_member_0_and_an_ensemble_scores_its_members_mean():
    """Linear heads on 3 standardised features of 1, 1, 1 (mean 0, std 1): logit = weights . 1 + bias."""
    old = {"feature_mean": torch.zeros(3), "feature_std": torch.ones(3),
           "mlp.1.weight": torch.tensor([[1.0, 2.0, 3.0]]), "mlp.1.bias": torch.tensor([0.5])}  # before ensembles
    head = RewardHead(3, hidden_dim=0).eval()
    head.load_state_dict(old)
    assert head(torch.ones(1, 3)).tolist() == [6.5]
    ensemble = RewardHead(3, hidden_dim=0, members=2).eval()
    ensemble.load_state_dict({**old, "members.1.1.weight": torch.tensor([[0.0, 0.0, -1.0]]),
                              "members.1.1.bias": torch.tensor([0.0])})
    assert ensemble(torch.ones(1, 3)).tolist() == [2.75]  # (6.5 - 1) / 2
    assert ensemble(torch.ones(1, 3), member=1).tolist() == [-1.0]


def test_prompt_conditioning_with_a_clip_encoder(tmp_path, tiny_hf_encoders):
    target = write_real_digits(tmp_path / "target", 20)
    generated = write_real_digits(tmp_path / "generated", 20, offset=20)
    encoder = f"clip:{tiny_hf_encoders['clip']}"
    model, metrics = train_reward_model(RewardTrainingConfig(
        target=[str(target)], generated=[str(generated)], output=str(tmp_path / "rm"), encoder=encoder,
        text_conditioning="both", progress=False, epochs=5))
    assert model.head.members[0][0].in_features == 24 + 24 + 1
    loaded = DiscriminativeRewardModel.from_pretrained(tmp_path / "rm")
    paths = sorted(str(p) for p in target.glob("*.png"))[:3]
    with_prompts = loaded.score(paths, prompts=["a handwritten digit 1"] * 3)
    assert with_prompts.shape == (3,)
    assert not torch.allclose(with_prompts, loaded.score(paths, prompts=["a handwritten digit 2"] * 3))
    with pytest.raises(VisrewardError, match="prompt-conditioned"):
        loaded.score(paths)
    with pytest.raises(VisrewardError, match="no text tower"):
        train_reward_model(RewardTrainingConfig(target=[str(target)], generated=[str(generated)],
                                                output=str(tmp_path / "x"), text_conditioning="embedding", progress=False))


def test_too_small_target_set_is_a_one_line_error(tmp_path, digit_folders):
    target = write_real_digits(tmp_path / "one", 1)
    with pytest.raises(VisrewardError, match="--target: 1 usable image") as error:
        train_reward_model(_config(digit_folders, tmp_path, target=[str(target)]))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "rm").exists()  # nothing half-written


def test_reward_fn_takes_rl_trainer_batches_and_returns_a_normal_tensor(trained, digit_folders):
    directory, model, _ = trained
    paths = sorted(str(p) for p in digit_folders["heldout_target"].glob("*.png"))[:3]
    expected = model.score(paths)
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])  # uint8 [B,H,W,3]
    for batch in (pixels, torch.from_numpy(pixels), torch.from_numpy(pixels).permute(0, 3, 1, 2),
                  np.asarray([np.asarray(Image.open(p)) for p in paths])[..., None]):  # grayscale NHWC
        rewards, _ = model.reward_fn(batch, None, None)
        assert torch.allclose(rewards, expected, atol=1e-4)
    rewards.mul_(2)  # a trainer's in-place op on the rewards
    assert not rewards.is_inference()


def test_train_rm_takes_generated_images_in_a_webdataset_tar_with_the_default_off_manifold_negatives(digit_folders,
                                                                                                     tmp_path):
    """Tar members have no file of their own (`shard.tar/key.png`): the wrecked negatives come from their bytes."""
    import tarfile

    from visreward import RewardTrainingConfig, train_reward_model

    with tarfile.open(tmp_path / "generated.tar", "w") as archive:
        for path in sorted(digit_folders["generated"].glob("*.png")):
            archive.add(path, arcname=path.name)
    _, metrics = train_reward_model(RewardTrainingConfig(target=[str(digit_folders["target"])],
                                                         generated=[str(tmp_path / "generated.tar")],
                                                         output=str(tmp_path / "rm"), epochs=3, progress=False))
    assert metrics["n_generated"] == 40
    assert metrics["rounds"][0]["n_train"] == 28 + 28 + 14  # target, generated, and half as many wrecked ones


def test_a_map_weight_of_zero_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(VisrewardError, match=r"--map-weight 0\.0: expected a weight above 0"):
        train_reward_model(RewardTrainingConfig(target=[str(tmp_path / "missing")], generated=[str(tmp_path / "gone")],
                                                output=str(tmp_path / "rm"), map_weight=0.0))
