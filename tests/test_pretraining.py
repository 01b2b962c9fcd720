"""Pretraining a small VLM from scratch on captioned real digits (`visreward train-vlm`), and the miniature's gold."""

import json

import numpy as np
import pytest
import torch

from visreward.cli import main
from visreward.io.digits import digit_image, real_digits
from visreward.miniature.gold import expected_agreement, gold_scores, preference_labels, temperature_for_agreement
from visreward.rewards.generative import GenerativeRewardModel
from visreward.rewards.generative.pretraining import digit_captions
from visreward.rewards.generative.tiny import SIZES, build_tiny_llava


def test_digit_captions_name_the_digit_and_a_stroke_weight_in_thirds_of_each_class():
    _, labels = real_digits("train")
    _, captions = digit_captions("train")
    assert captions[0] == f"a handwritten digit {labels[0]} in {captions[0].split()[5]} strokes"
    sevens = [c.split()[5] for c, label in zip(captions, labels) if label == 7]
    counts = {w: sevens.count(w) for w in ("thin", "regular", "bold")}
    assert set(sevens) == set(counts) and max(counts.values()) - min(counts.values()) <= 2, counts


def test_the_three_sizes_grow_about_four_fold_in_parameters():
    counts = [sum(p.numel() for p in build_tiny_llava(["a digit"], size)[0].parameters()) for size in SIZES]
    assert 3.0 < counts[1] / counts[0] < 5.0 and 3.0 < counts[2] / counts[1] < 5.0, counts


@pytest.fixture(scope="module")
def pretrained(pretrained_digit_vlm):
    return pretrained_digit_vlm, json.loads((pretrained_digit_vlm / "pretraining_metrics.json").read_text())


def test_pretraining_lowers_the_caption_loss_and_teaches_the_model_to_read_held_out_digits(pretrained):
    _, metrics = pretrained
    before, after = metrics["before"], metrics["after"]
    assert after["heldout_caption_loss"] < 0.5 * before["heldout_caption_loss"], (before, after)
    assert before["digit_accuracy"] < 0.3  # random weights read about one digit in ten
    assert after["digit_accuracy"] > 0.6, after  # chance is 0.1; digits of the evaluation split, never trained on
    assert after["n_probe"] == 397


def test_the_pretrained_folder_is_a_judge_that_reads_its_digit_from_a_hand_written_chat(pretrained):
    """Load the folder as `vlm:` loads it; the chat and the caption prefix are written out here by hand."""
    out, _ = pretrained
    judge = GenerativeRewardModel.from_pretrained(out)
    images, labels = real_digits("evaluation")
    text = "<|im_start|>user\n<image>\nDescribe the image.<|im_end|>\n<|im_start|>assistant\na handwritten digit"
    digit_ids = judge.tokenizer.convert_tokens_to_ids([str(d) for d in range(10)])
    right = 0
    for i in range(40):
        batch = judge.processor(text=[text], images=[[digit_image(images[i])]], return_tensors="pt")
        with torch.no_grad():
            right += int(judge.model(**batch).logits[0, -1, digit_ids].argmax()) == labels[i]
    assert right >= 24, right
    assert judge.score([digit_image(images[0])], ["a handwritten digit 3"]).shape == (1,)


def test_train_vlm_pretrains_on_a_users_captioned_folder(tmp_path, capsys):
    images, _ = real_digits("train")
    folder = tmp_path / "captioned"
    folder.mkdir()
    rows = []
    for i in range(40):
        digit_image(images[i]).save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "caption": "a small picture" if i % 2 else "a big drawing"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["train-vlm", "--data", str(folder), "--output", str(tmp_path / "vlm"), "--steps", "30",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "held-out caption loss" in printed and "reads held-out digits" not in printed
    metrics = json.loads((tmp_path / "vlm" / "pretraining_metrics.json").read_text())
    assert metrics["n_train"] == 36 and metrics["n_heldout"] == 4
    assert metrics["after"]["heldout_caption_loss"] < metrics["before"]["heldout_caption_loss"]
    assert "small" in GenerativeRewardModel.from_pretrained(tmp_path / "vlm").tokenizer.get_vocab()


def test_train_vlm_names_the_file_without_a_caption(tmp_path, capsys):
    folder = tmp_path / "uncaptioned"
    folder.mkdir()
    digit_image(real_digits("train")[0][0]).save(folder / "a.png")
    assert main(["train-vlm", "--data", str(folder), "--output", str(tmp_path / "vlm")]) == 2
    assert "a.png: no caption" in capsys.readouterr().err
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "caption": "a digit"}) + "\n")
    assert main(["train-vlm", "--data", str(folder), "--output", str(tmp_path / "vlm")]) == 2
    assert "1 captioned image(s); need 2 or more" in capsys.readouterr().err and not (tmp_path / "vlm").exists()


def _digits_as_tensors(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float()[:, None].expand(-1, 3, -1, -1)


def test_gold_prefers_the_prompted_digit_and_the_target_look():
    images, labels = real_digits("train")
    sevens = np.flatnonzero(labels == 7)
    batch = _digits_as_tensors(images[sevens[:20]])
    right = gold_scores(batch, ["a handwritten digit 7"] * 20)
    wrong = gold_scores(batch, ["a handwritten digit 2"] * 20)
    assert (right > wrong).mean() >= 0.95
    faint = gold_scores(batch * 0.4, ["a handwritten digit 7"] * 20)  # the same strokes, 40% of the ink
    assert (right > faint).mean() >= 0.9


def test_bradley_terry_labels_agree_with_the_gold_as_often_as_asked():
    rng = np.random.default_rng(0)
    images, labels = real_digits("train")
    prompts = [f"a handwritten digit {d}" for d in labels]
    gold = gold_scores(_digits_as_tensors(images), prompts)
    a, b = rng.integers(0, len(gold), 4000), rng.integers(0, len(gold), 4000)
    tau = temperature_for_agreement(gold[a], gold[b], 0.775)
    a_wins = preference_labels(gold[a], gold[b], tau, rng)
    decided = gold[a] != gold[b]
    agreement = float((a_wins == (gold[a] > gold[b]))[decided].mean())
    assert 0.755 < agreement < 0.795, agreement
    assert expected_agreement(np.array([1.0]), np.array([0.0]), 1.0) == pytest.approx(1 / (1 + np.exp(-1.0)))
    with pytest.raises(ValueError):
        temperature_for_agreement(gold[a], gold[b], 0.4)


def test_each_pretraining_seed_has_its_own_cache_folder(tmp_path):
    from visreward.rewards.generative.pretraining import digit_vlm_dir

    assert digit_vlm_dir("4x", tmp_path, 100).name == "digits-vlm-v1-4x-s100-seed0"
    assert digit_vlm_dir("16x", tmp_path, 100, seed=2) == tmp_path / "judges" / "digits-vlm-v1-16x-s100-seed2"
