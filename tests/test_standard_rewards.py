"""clipscore:, pickscore: and aesthetic: on a tiny random CLIP built from a config, against transformers' own CLIP
forward and the formulas written out; their gradient path, and their use in combinations, ReFL and GRPO."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import photo
from PIL import Image

from visreward.io.digits import digit_prompt
from visreward.rewards.loader import load_reward_model, load_rewards

PROMPTS = ["a photo of 1", "a handwritten digit", "a photo of 7", "a digit 9"]


def _images() -> list[Image.Image]:
    """32x32 crops: the tiny CLIP's input size, so its processor's resize and ours have nothing to differ on."""
    return [photo(name).convert("RGB").resize((32, 32)) for name in ("astronaut", "coffee", "chelsea", "rocket")]


def _clip_logits(folder, images, prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' CLIPModel forward on its own processor's inputs: logit_scale.exp() * cos, per (image, text)."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    pixels = CLIPImageProcessor.from_pretrained(folder)(images=images, return_tensors="pt")["pixel_values"]
    tokens = AutoTokenizer.from_pretrained(folder)(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(pixel_values=pixels, **tokens).logits_per_image.diagonal(), model.logit_scale.exp()


def test_pickscore_is_the_clip_models_own_logit_and_clipscore_its_clipped_cosine(tiny_hf_encoders):
    folder = tiny_hf_encoders["clip"]
    logits, scale = _clip_logits(folder, _images(), PROMPTS)
    pick = load_reward_model(f"pickscore:{folder}").score(_images(), PROMPTS)
    clip = load_reward_model(f"clipscore:{folder}").score(_images(), PROMPTS)
    assert torch.allclose(pick, logits, atol=1e-4), (pick, logits)
    assert torch.allclose(clip, 100 * (logits / scale).clamp(min=0), atol=1e-3), (clip, logits / scale)


def test_the_formulas_on_literal_embeddings(tiny_hf_encoders, monkeypatch):
    folder = tiny_hf_encoders["clip"]
    texts = torch.tensor([[3.0, 4.0], [-1.0, 0.0], [0.0, 2.0]])
    images = torch.tensor([[6.0, 8.0], [1.0, 0.0], [1.0, 1.0]])  # cos 1, -1, 1/sqrt(2)
    clip = load_reward_model(f"clipscore:{folder}")
    monkeypatch.setattr(clip.encoder, "encode_text", lambda prompts: texts)
    assert clip._from_embeddings(images, ["a"] * 3).tolist() == pytest.approx([100.0, 0.0, 100 / math.sqrt(2)])
    pick = load_reward_model(f"pickscore:{folder}")
    monkeypatch.setattr(pick.encoder, "encode_text", lambda prompts: texts)
    pick.encoder.model.logit_scale.data.fill_(math.log(50.0))
    assert pick._from_embeddings(images, ["a"] * 3).tolist() == pytest.approx([50.0, -50.0, 50 / math.sqrt(2)], rel=1e-5)


SHAPES = {"0": (1024, 24), "2": (128, 1024), "4": (64, 128), "6": (16, 64), "7": (1, 16)}  # LAION's MLP on a 24-d CLIP


def aesthetic_folder(clip_folder, folder, file_name: str = "aesthetic_mlp.safetensors") -> dict:
    """The tiny CLIP plus random MLP weights under LAION's key names; returns the weights."""
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(clip_folder, folder)
    g = torch.Generator().manual_seed(0)
    state = {}
    for layer, (out, fan_in) in SHAPES.items():
        state[f"layers.{layer}.weight"] = torch.randn(out, fan_in, generator=g) / math.sqrt(fan_in)
        state[f"layers.{layer}.bias"] = torch.randn(out, generator=g)
    if file_name.endswith(".safetensors"):
        save_file(state, str(folder / file_name))
    else:
        torch.save(state, folder / file_name)
    return state


@pytest.mark.parametrize("file_name", ["aesthetic_mlp.safetensors", "aesthetic_mlp.pth"])
def test_the_aesthetic_score_is_its_mlp_on_the_normalised_clip_embedding(tiny_hf_encoders, tmp_path, file_name):
    from transformers import CLIPImageProcessor, CLIPModel

    folder = tmp_path / "aesthetic"
    state = aesthetic_folder(tiny_hf_encoders["clip"], folder, file_name)
    model = CLIPModel.from_pretrained(folder).eval()
    pixels = CLIPImageProcessor.from_pretrained(folder)(images=_images(), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embedding = model.get_image_features(pixel_values=pixels)
        embedding = embedding if isinstance(embedding, torch.Tensor) else embedding.pooler_output  # transformers 5
        x = torch.nn.functional.normalize(embedding, dim=-1)
    for layer in SHAPES:  # LAION's MLP has no activations: five affine maps in a row
        x = x @ state[f"layers.{layer}.weight"].T + state[f"layers.{layer}.bias"]
    scores = load_reward_model(f"aesthetic:{folder}").score(_images())
    assert torch.allclose(scores, x.squeeze(-1), atol=1e-4), (scores, x)


def test_a_missing_or_misshapen_aesthetic_mlp_is_a_one_line_error(tiny_hf_encoders, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from visreward.core.errors import VisrewardError

    folder = tmp_path / "aesthetic"
    shutil.copytree(tiny_hf_encoders["clip"], folder)
    with pytest.raises(VisrewardError, match="no aesthetic_mlp.safetensors or aesthetic_mlp.pth"):
        load_reward_model(f"aesthetic:{folder}")
    save_file({"layers.0.weight": torch.zeros(1024, 768)}, str(folder / "aesthetic_mlp.safetensors"))  # ViT-L's width
    with pytest.raises(VisrewardError, match="do not fit a 24-d CLIP"):
        load_reward_model(f"aesthetic:{folder}")


def test_the_gradient_path_scores_as_files_do_and_reaches_the_pixels(tiny_hf_encoders):
    pick = load_reward_model(f"pickscore:{tiny_hf_encoders['clip']}")
    pixels = torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in _images()]).float() / 255
    pixels.requires_grad_(True)
    scores = pick(pixels, PROMPTS)
    assert torch.allclose(scores.detach(), pick.score(_images(), PROMPTS), atol=1e-4)
    scores.sum().backward()
    assert pixels.grad.abs().sum() > 0


def test_a_gan_rm_and_pickscore_combine_with_weights(rm_dir, tiny_hf_encoders, digit_folders):
    images = sorted(digit_folders["heldout_target"].glob("*.png"))[:6]
    prompts = ["a handwritten digit"] * len(images)
    combined = load_rewards([f"gan={rm_dir}", f"pick=pickscore:{tiny_hf_encoders['clip']}:0.5"])
    scores, info = combined.score_with_info([str(p) for p in images], prompts)
    gan = load_reward_model(str(rm_dir)).score([str(p) for p in images]).numpy()
    pick = load_reward_model(f"pickscore:{tiny_hf_encoders['clip']}").score([str(p) for p in images], prompts).numpy()
    assert np.allclose(info["rewards"]["pick"], pick, atol=1e-5)
    assert np.allclose(scores, gan + 0.5 * pick, atol=1e-4)


@pytest.mark.parametrize("kind", ["clipscore", "pickscore", "aesthetic"])
def test_refl_and_grpo_train_against_a_standard_reward(kind, tiny_hf_encoders, tiny_generator_dir, tmp_path):
    from visreward.post_training import GRPOConfig, ReFLConfig, run_grpo, run_refl

    folder = tiny_hf_encoders["clip"]
    if kind == "aesthetic":
        aesthetic_folder(folder, tmp_path / "aesthetic")
        folder = tmp_path / "aesthetic"
    spec = f"{kind}:{folder}"
    prompts = [digit_prompt(2), digit_prompt(6)]
    refl = run_refl(ReFLConfig(generator=str(tiny_generator_dir), reward=spec, output=str(tmp_path / "refl"),
                               prompts=prompts, steps=2, batch_size=4, num_inference_steps=4, last_steps=1, lr=1e-3,
                               log_every=1, stop_on_hacking=False, progress=False))
    assert [row["step"] for row in refl["history"]] == [1, 2] and math.isfinite(refl["history"][-1]["reward_mean"])
    grpo = run_grpo(GRPOConfig(generator=str(tiny_generator_dir), reward=[spec], prompts=prompts,
                               output=str(tmp_path / "grpo"), steps=1, group_size=2, prompts_per_step=2, sample_steps=3,
                               batch_size=4, progress=False, stop_on_hacking=False))
    assert grpo["history"][0]["first_ratio_error"] < 1e-5


def test_standard_rewards_normalise_in_a_combination_as_written_out(tiny_hf_encoders):
    """zscore: each reward against its running window (both batches), then weighted; rank: within the batch."""
    import visreward

    folder = tiny_hf_encoders["clip"]
    clip, pick = load_reward_model(f"clipscore:{folder}"), load_reward_model(f"pickscore:{folder}")
    images = _images()
    c = np.concatenate([clip.score(images[:2], PROMPTS[:2]).numpy(), clip.score(images[2:], PROMPTS[2:]).numpy()])
    p = np.concatenate([pick.score(images[:2], PROMPTS[:2]).numpy(), pick.score(images[2:], PROMPTS[2:]).numpy()])
    zscore = visreward.combine({"clip": clip, "pick": pick}, weights={"pick": 0.5}, normalise="zscore")
    zscore.score(images[:2], PROMPTS[:2])
    second = np.asarray(zscore.score(images[2:], PROMPTS[2:]))
    expected = (c[2:] - c.mean()) / c.std() + 0.5 * (p[2:] - p.mean()) / p.std()
    assert np.allclose(second, expected, atol=1e-4), (second, expected)
    ranked = np.asarray(visreward.combine({"clip": clip, "pick": pick}, normalise="rank").score(images, PROMPTS))
    def ranks(x):  # the fraction of the others below, ties counting half (CLIPScore's clipped zeros tie)
        return np.array([((x < v).sum() + 0.5 * ((x == v).sum() - 1)) / (len(x) - 1) for v in x])

    assert np.allclose(ranked, ranks(c) + ranks(p))


def test_the_ray_engine_refuses_a_standard_reward_with_one_line(tiny_hf_encoders, tmp_path):
    from visreward.core.errors import VisrewardError
    from visreward.core.options import ScoreConfig
    from visreward.scoring import run_score

    with pytest.raises(VisrewardError, match="--engine ray scores GAN-RM reward models; pickscore rewards run on the local"):
        run_score(ScoreConfig(inputs=[str(tmp_path)], model=f"pickscore:{tiny_hf_encoders['clip']}", engine="ray",
                              output=str(tmp_path / "s.parquet"), progress=False))


def test_visreward_score_writes_a_standard_rewards_scores(tiny_hf_encoders, tmp_path):
    import pyarrow.parquet as pq

    from visreward.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(_images()):
        image.save(folder / f"{i}.png")
    (folder / "metadata.jsonl").write_text("".join(f'{{"file_name": "{i}.png", "prompt": "{p}"}}\n'
                                                   for i, p in enumerate(PROMPTS)))
    spec = f"pickscore:{tiny_hf_encoders['clip']}"
    assert main(["score", "--model", spec, "--output", str(tmp_path / "s.parquet"), str(folder), "--no-progress"]) == 0
    table = pq.read_table(tmp_path / "s.parquet").to_pylist()
    by_name = {Path(row["path"]).name: row["score"] for row in table}
    expected = load_reward_model(spec).score(_images(), PROMPTS)
    assert [by_name[f"{i}.png"] for i in range(4)] == pytest.approx(expected.tolist(), abs=1e-5)
