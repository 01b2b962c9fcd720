"""RewardDance on tiny random VLMs (toys that prove the code, not the quality: no real VLM weights offline)."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_vlms import TINY_VLMS, save_tiny_internvl, save_tiny_qwen2_5_vl

from visreward.core.errors import VisrewardError
from visreward.io.digits import digit_image, digit_prompt, real_digits
from visreward.io.pairs import Pair, write_pairs
from visreward.rewards.generative import (
    GenerativeRewardModel,
    VLMTrainingConfig,
    train_vlm_reward_model,
    yes_probability,
)


@pytest.fixture(scope="module", params=sorted(TINY_VLMS))
def judge(request, tmp_path_factory):
    return GenerativeRewardModel.from_pretrained(TINY_VLMS[request.param](tmp_path_factory.mktemp("vlm") / request.param))


@pytest.fixture(scope="module")
def digits():
    images, labels = real_digits("train")
    return [digit_image(images[i]) for i in range(6)], [digit_prompt(int(labels[i])) for i in range(6)]


def test_yes_probability_on_literal_logits():
    logits = torch.tensor([[2.0, 0.0, 1.0, -1.0]])  # tokens: yes, no, Yes, other
    normalised = yes_probability(logits, yes_ids=[0, 2], no_ids=[1])
    expected = (np.exp(2) + np.exp(1)) / (np.exp(2) + np.exp(1) + np.exp(0))
    assert normalised.item() == pytest.approx(expected, rel=1e-6)
    full = yes_probability(logits, [0, 2], [1], full_vocabulary=True)
    assert full.item() == pytest.approx((np.exp(2) + np.exp(1)) / np.exp(logits[0].numpy()).sum(), rel=1e-6)


def _hand_p_yes(judge, text: str, images) -> float:
    """P(yes) at the answer position of `text`, read off the logits here, not by the judge's helpers."""
    batch = judge.processor(text=[text], images=[images], return_tensors="pt")
    with torch.no_grad():
        logits = judge.model(**batch).logits[0, -1]
    yes, no = judge.processor.tokenizer.convert_tokens_to_ids(["yes", "no"])  # the tiny vocabulary lower-cases
    return float(torch.exp(logits[yes]) / (torch.exp(logits[yes]) + torch.exp(logits[no])))


def test_score_is_p_yes_at_the_first_answer_position_of_a_hand_written_prompt(tmp_path, digits):
    """The chat text, the question and the yes/no tokens written out here by hand, not by the judge's helpers."""
    images, _ = digits
    judge = GenerativeRewardModel.from_pretrained(save_tiny_qwen2_5_vl(tmp_path / "qwen"))
    text = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>You are judging images made by a text-to-image "
            "model for how well they follow the prompt and how good they look.\nPrompt: a handwritten digit 5\n"
            "Does this image satisfy the prompt? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n")
    expected = _hand_p_yes(judge, text, [images[0]])
    assert judge.score(images[:1], ["a handwritten digit 5"]).item() == pytest.approx(expected, abs=1e-5)


def test_batching_gives_the_same_scores_as_one_at_a_time(judge, digits):
    images, prompts = digits
    batched = judge.score(images, prompts, batch_size=6)
    alone = torch.cat([judge.score([image], [prompt]) for image, prompt in zip(images, prompts)])
    assert torch.allclose(batched, alone, atol=1e-4)
    tensors = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255).permute(2, 0, 1) for im in images])
    assert torch.allclose(judge.score(tensors, prompts), batched, atol=1e-4)
    nhwc_uint8 = np.stack([np.asarray(im.convert("RGB")) for im in images])  # as RL trainers pass them
    rewards, _ = judge.reward_fn(nhwc_uint8, prompts)
    assert torch.allclose(rewards, batched, atol=1e-4)
    rewards += 1  # a normal tensor: a trainer may modify it in place


def test_pairwise_score_is_the_mean_of_p_yes_for_a_then_b_and_p_no_for_b_then_a_from_hand_written_questions(judge, digits):
    """The question written out here; each family's own chat template (transformers') around it."""
    images, prompts = digits
    question = ("You are judging images made by a text-to-image model for how well they follow the prompt and how "
                f"good they look.\nPrompt: {prompts[0]}\nIs image 1 better than image 2? Answer yes or no.")
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": question}]}]
    text = judge.processor.apply_chat_template(chat, add_generation_prompt=True)
    a_then_b = {k: _hand_p_yes(judge, text, [images[0], images[k]]) for k in (3, 4)}
    b_then_a = {k: _hand_p_yes(judge, text, [images[k], images[0]]) for k in (3, 4)}
    hand = {k: (a_then_b[k] + (1 - b_then_a[k])) / 2 for k in (3, 4)}
    scores, info = judge.score_with_info(images[:1], prompts[:1], references=images[3:4])
    assert scores.item() == pytest.approx(hand[3], abs=1e-5)
    assert info["order_bias"] == pytest.approx(a_then_b[3] - (1 - b_then_a[3]), abs=1e-5)
    several = judge.score(images[:1], prompts[:1], references=[[images[3], images[4]]])
    assert several.item() == pytest.approx((hand[3] + hand[4]) / 2, abs=1e-5)


def test_instruction_and_chain_of_thought(judge, digits):
    images, prompts = digits
    plain = judge.score(images[:2], prompts[:2])
    instructed = judge.score(images[:2], prompts[:2], instruction="Judge only the sharpness of the strokes.")
    assert not torch.allclose(plain, instructed)
    for mode in ("reason-first", "decision-first"):
        scores, info = judge.score_with_info(images[:2], prompts[:2], cot=mode, max_new_tokens=4)
        assert scores.shape == (2,) and len(info["rationales"]) == 2 and all(isinstance(r, str) for r in info["rationales"])
    with pytest.raises(VisrewardError, match="cot must be one of"):
        judge.score(images[:1], prompts[:1], cot="always")
    rewards, reward_info = judge.reward_fn(images[:2], prompts[:2], [{}, {}])
    assert rewards.shape == (2,) and {"reward_mean", "reward_std"} <= set(reward_info)


@pytest.fixture(scope="module")
def noisy_digit_pairs(tmp_path_factory):
    """A synthetic preference from real images: the clean digit over the same digit buried in noise."""
    root = tmp_path_factory.mktemp("vlm-pairs")
    images, labels = real_digits("train")
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(150):
        clean, noisy = images[i], np.clip(images[i] + rng.normal(0, 0.5, images[i].shape), 0, 1)
        digit_image(clean).save(root / f"{i}-clean.png")
        digit_image(noisy).save(root / f"{i}-noisy.png")
        pairs.append(Pair(digit_prompt(int(labels[i])), str(root / f"{i}-clean.png"), str(root / f"{i}-noisy.png"), 1.0, 0.0))
    return write_pairs(pairs, root / "pairs")


@pytest.mark.parametrize("bradley_terry, epochs, lr", [(False, 12, 1e-3), (True, 3, 1e-3)])
def test_training_a_pretrained_tiny_vlm_beats_chance_on_held_out_pairs(noisy_digit_pairs, pretrained_digit_vlm, tmp_path,
                                                                       bradley_terry, epochs, lr, monkeypatch):
    """A tiny judge pretrained on captioned digits (train-vlm) trains past chance; the trained one carries a model card,
    and loads by repo id from a Hub cache with the Hub offline."""
    model = pretrained_digit_vlm
    metrics = train_vlm_reward_model(VLMTrainingConfig(
        model=str(model), pairs=[str(noisy_digit_pairs)], output=str(tmp_path / "rm"), epochs=epochs, lr=lr,
        batch_size=16, bradley_terry=bradley_terry, progress=False))
    assert metrics["n_heldout"] == 30
    assert metrics["heldout_pairwise_accuracy"] >= 0.8  # chance is 0.5
    saved = json.loads((tmp_path / "rm" / "visreward_vlm.json").read_text())
    assert saved["template_version"] == "visreward-rewarddance-v1"
    if not bradley_terry:
        judge = GenerativeRewardModel.from_pretrained(tmp_path / "rm")
        clean = [str(Path(noisy_digit_pairs).parent / f"{i}-clean.png") for i in range(3)]
        noisy = [str(Path(noisy_digit_pairs).parent / f"{i}-noisy.png") for i in range(3)]
        assert (judge.score(clean, ["a handwritten digit 0"] * 3, references=noisy) > 0.5).all()
        from huggingface_hub import ModelCard

        card = ModelCard.load(tmp_path / "rm" / "README.md")
        assert "rewarddance-judge" in card.data.tags and f'"heldout_pairwise_accuracy": {metrics["heldout_pairwise_accuracy"]}' in card.text
        import huggingface_hub.constants as constants
        from test_model_card import hub_cache_with

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache_with(tmp_path / "rm", tmp_path / "hub", "someone/judge")))
        from visreward.rewards.loader import load_reward_model

        from_hub = load_reward_model("vlm:someone/judge")
        assert torch.allclose(from_hub.score(clean, ["a handwritten digit 0"] * 3, references=noisy),
                              judge.score(clean, ["a handwritten digit 0"] * 3, references=noisy), atol=1e-6)
    else:  # its backbone never learnt to answer yes or no: as a yes/no judge it is refused; vlm: loads it as the
        # reward it is, which ranks clean over noisy as trained
        from visreward.core.errors import VisrewardError
        from visreward.rewards.loader import load_reward_model

        with pytest.raises(VisrewardError, match="Bradley-Terry baseline"):
            GenerativeRewardModel.from_pretrained(tmp_path / "rm")
        reward = load_reward_model(f"vlm:{tmp_path / 'rm'}")
        clean = [str(Path(noisy_digit_pairs).parent / f"{i}-clean.png") for i in range(140, 150)]
        noisy = [str(Path(noisy_digit_pairs).parent / f"{i}-noisy.png") for i in range(140, 150)]
        prompts = [digit_prompt(int(d)) for d in real_digits("train")[1][140:150]]
        assert (reward.score(clean, prompts) > reward.score(noisy, prompts)).float().mean() >= 0.8
        rewards, info = reward.reward_fn(clean[:2], prompts[:2])
        assert rewards.shape == (2,) and {"reward_mean", "reward_std"} <= set(info)


def test_lora_training_saves_an_adapter_that_loads(noisy_digit_pairs, tmp_path):
    model = save_tiny_qwen2_5_vl(tmp_path / "base")
    train_vlm_reward_model(VLMTrainingConfig(model=str(model), pairs=[str(noisy_digit_pairs)], output=str(tmp_path / "rm"),
                                             epochs=1, lora=True, progress=False, mode="both"))
    assert (tmp_path / "rm" / "adapter_config.json").exists()
    judge = GenerativeRewardModel.from_pretrained(tmp_path / "rm")
    assert judge.score([str(Path(noisy_digit_pairs).parent / "0-clean.png")], ["a handwritten digit 0"]).shape == (1,)


def test_cli_scores_with_a_vlm_and_best_of_n_uses_references(tmp_path, tiny_generator_dir):
    import pyarrow.parquet as pq

    from visreward.cli import main

    model = save_tiny_internvl(tmp_path / "vlm")
    folder = tmp_path / "imgs"
    folder.mkdir()
    images, _ = real_digits("train")
    for i in range(3):
        digit_image(images[i]).save(folder / f"{i}.png")
    assert main(["score", "--model", f"vlm:{model}", "--output", str(tmp_path / "s.parquet"), "--no-progress", str(folder)]) == 0
    table = pq.read_table(tmp_path / "s.parquet").sort_by("id")
    question = ("You are judging images made by a text-to-image model for how well they follow the prompt and how "
                "good they look.\nPrompt: (none)\nDoes this image satisfy the prompt? Answer yes or no.")
    judge = GenerativeRewardModel.from_pretrained(model)
    text = judge.processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
                                               add_generation_prompt=True)
    hand = [_hand_p_yes(judge, text, [Image.open(folder / f"{i}.png").convert("RGB")]) for i in range(3)]
    assert table["id"].to_pylist() == ["imgs/0.png", "imgs/1.png", "imgs/2.png"]
    assert table["score"].to_pylist() == pytest.approx(hand, abs=1e-5)
    assert main(["best-of-n", "--generator", str(tiny_generator_dir), "--reward", f"vlm:{model}", "--prompts",
                 "a handwritten digit 4", "--n", "3", "--references", "top-2", "--output", str(tmp_path / "bon"),
                 "--no-progress"]) == 0
    assert pq.read_table(tmp_path / "bon" / "scores.parquet").num_rows == 3


def test_differentiable_path_matches_the_processor_and_carries_gradients(judge, digits):
    images, prompts = digits
    pixels = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255).permute(2, 0, 1) for im in images[:2]])
    from visreward.rewards.generative.templates import question

    batch = judge.encode([judge.chat_text(question(p, None, False), 1) for p in prompts[:2]], [[im] for im in images[:2]])
    ours = judge.pixel_values(pixels, batch)
    assert ours.shape == batch["pixel_values"].shape
    assert (ours - batch["pixel_values"]).abs().mean() < 0.05  # torch vs PIL resampling of the same pixels
    pixels.requires_grad_()
    rewards = judge(pixels, prompts[:2])
    assert torch.allclose(rewards.detach(), judge.score(images[:2], prompts[:2]), atol=0.02)
    rewards.sum().backward()
    assert pixels.grad.abs().sum() > 0


@pytest.mark.parametrize("family, setting", [("internvl", "crop_to_patches"), ("idefics3", "do_image_splitting")])
def test_refl_refuses_a_tiling_vlm_reward_before_training(tmp_path, tiny_generator_dir, family, setting):
    from visreward.post_training import ReFLConfig, run_refl

    model = TINY_VLMS[family](tmp_path / family)
    config_file = model / "preprocessor_config.json"
    if not config_file.exists():
        config_file = model / "processor_config.json"
    settings = json.loads(config_file.read_text())
    (settings.get("image_processor", settings))[setting] = True
    config_file.write_text(json.dumps(settings))
    with pytest.raises(VisrewardError, match=f"cuts images into tiles \\({setting}=True\\)"):
        run_refl(ReFLConfig(generator=str(tiny_generator_dir), reward=f"vlm:{model}", output=str(tmp_path / "refl"),
                            prompts=["a handwritten digit 1"], steps=1, progress=False))
    assert not (tmp_path / "refl").exists()


def test_refl_with_a_vlm_reward(tmp_path, tiny_generator_dir):
    from visreward.post_training import ReFLConfig, run_refl

    model = save_tiny_internvl(tmp_path / "vlm")
    metrics = run_refl(ReFLConfig(generator=str(tiny_generator_dir), reward=f"vlm:{model}", output=str(tmp_path / "refl"),
                                  prompts=["a handwritten digit 4"], steps=4, batch_size=2, num_inference_steps=3,
                                  last_steps=1, lr=1e-3, log_every=1, progress=False))
    rewards = [row["reward_mean"] for row in metrics["history"]]
    assert rewards[-1] > rewards[0]
    assert (tmp_path / "refl" / "generator" / "generator.json").exists()


def test_two_processes_train_a_bradley_terry_judge_with_averaged_gradients_and_one_evaluator(noisy_digit_pairs, tmp_path):
    import subprocess
    import sys

    model = save_tiny_qwen2_5_vl(tmp_path / "base")
    worker = Path(__file__).with_name("vlm_worker.py")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(worker), str(model), str(noisy_digit_pairs), str(tmp_path / "rm")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of world size 2" in result.stdout and "rank 1 of world size 2" in result.stdout
    accuracies = {line.split("accuracy ")[1] for line in result.stdout.splitlines() if "held-out accuracy" in line}
    assert len(accuracies) == 1 and accuracies != {"nan"}  # measured once, shared with rank 1
    assert json.loads((tmp_path / "rm" / "metrics.json").read_text())["world_size"] == 2
    assert (tmp_path / "rm.evaluations.rank0").read_text().count("evaluated") == 2  # before training, after epoch 1
    assert not (tmp_path / "rm.evaluations.rank1").exists()
    head0, head1 = (torch.load(tmp_path / f"rm.head.rank{rank}.pt") for rank in (0, 1))
    assert all(torch.equal(head0[name], head1[name]) for name in head0)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "rm" / "bradley_terry_head.safetensors"))
    assert torch.equal(saved["linear.weight"], head0["linear.weight"])


def test_pointwise_judges_are_evaluated_with_pointwise_questions(noisy_digit_pairs, tmp_path):
    from visreward.io.pairs import read_pairs

    model = save_tiny_qwen2_5_vl(tmp_path / "base")
    metrics = train_vlm_reward_model(VLMTrainingConfig(model=str(model), pairs=[str(noisy_digit_pairs)], mode="pointwise",
                                                       output=str(tmp_path / "rm"), epochs=0, holdout=1.0, progress=False))
    judge = GenerativeRewardModel.from_pretrained(model)
    pairs = read_pairs(noisy_digit_pairs)
    prompts = [p.prompt for p in pairs]
    chosen, rejected = ([Image.open(io.BytesIO(getattr(p, side))) for p in pairs] for side in ("chosen", "rejected"))
    pointwise = float((judge.score(chosen, prompts) > judge.score(rejected, prompts)).float().mean())
    pairwise = float((judge.score(chosen, prompts, references=rejected) > 0.5).float().mean())
    assert pointwise != pairwise  # the two ways of judging tell apart on this model
    assert metrics["history"][0]["heldout_pairwise_accuracy"] == pytest.approx(pointwise)

def test_load_reward_model_loads_a_vlm_judge_in_the_precision_asked_for(tmp_path):
    from visreward.rewards.loader import load_reward_model

    folder = save_tiny_qwen2_5_vl(tmp_path / "judge")
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        judge = load_reward_model(f"vlm:{folder}", precision=precision)
        assert {p.dtype for p in judge.model.parameters()} == {dtype}, precision


def test_a_pairwise_judge_saved_with_references_compares_each_candidate_with_its_prompts_own(
        noisy_digit_pairs, pretrained_digit_vlm, tmp_path, capsys):
    """train-vlm-rm --references: the files travel with the judge; score without references uses the prompt's own
    (and the ones without a prompt for any other prompt); a prompt with neither is named."""
    from visreward.cli import main
    from visreward.rewards.loader import load_reward_model

    images, labels = real_digits("evaluation")
    refs = tmp_path / "refs"
    refs.mkdir()
    digit_image(images[0]).save(refs / "three.png")
    digit_image(images[1]).save(refs / "any.png")
    (refs / "metadata.jsonl").write_text(json.dumps({"file_name": "three.png", "prompt": "a handwritten digit 3"}) + "\n")
    assert main(["train-vlm-rm", "--model", str(pretrained_digit_vlm), "--pairs", str(noisy_digit_pairs), "--output",
                 str(tmp_path / "rm"), "--epochs", "0", "--references", str(refs), "--no-progress"]) == 0
    shutil.rmtree(refs)  # the judge keeps its own copies
    judge = load_reward_model(f"vlm:{tmp_path / 'rm'}")
    candidates = [digit_image(images[i]) for i in (2, 3)]
    prompts = ["a handwritten digit 3", "a handwritten digit 5"]
    explicit = judge.score(candidates, prompts, references=[digit_image(images[0]), digit_image(images[1])])
    assert torch.allclose(judge.score(candidates, prompts), explicit, atol=1e-6)
    del judge.references[None]
    with pytest.raises(VisrewardError, match="no saved reference image for prompt 'a handwritten digit 5'"):
        judge.score(candidates, prompts)


def test_a_lora_bradley_terry_folder_loads_as_a_reward_with_its_adapter(noisy_digit_pairs, pretrained_digit_vlm, tmp_path):
    """--bradley-terry --lora saves an adapter, not a whole backbone: vlm: loads it on the base it names."""
    from visreward.rewards.loader import load_reward_model

    train_vlm_reward_model(VLMTrainingConfig(model=str(pretrained_digit_vlm), pairs=[str(noisy_digit_pairs)],
                                             output=str(tmp_path / "rm"), epochs=0, bradley_terry=True, lora=True,
                                             progress=False))
    assert (tmp_path / "rm" / "adapter_config.json").exists()
    reward = load_reward_model(f"vlm:{tmp_path / 'rm'}")
    images = [digit_image(real_digits("evaluation")[0][i]) for i in range(3)]
    assert reward.score(images, ["a handwritten digit 3"] * 3).shape == (3,)
