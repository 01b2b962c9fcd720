"""Shared fixtures: the real offline encoder, real digits, a briefly trained real generator,
and tiny randomly initialised transformers models saved to a temp folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, before torch is imported
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
from filelock import FileLock
from PIL import Image

from visreward import RewardTrainingConfig, train_reward_model
from visreward.generators import GeneratorTrainingConfig, save_samples, train_generator
from visreward.io.digits import digit_clip, digit_prompt, real_digits, write_digits_folder
from visreward.io.videos import write_video


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Nothing a test does reads or writes the user's ~/.cache (session-wide, so wider fixtures obey it too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISREWARD_CACHE", str(tmp_path_factory.getbasetemp() / "visreward-cache"))
        yield


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one precision per process; these tests change it."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="session")
def encoder():
    from visreward.encoders import load_encoder

    return load_encoder("efficientnet-lite0")


def missing(what: str) -> None:
    """A test whose tool or extra is not installed is skipped, except under CI (CI=true), where `make test` installs
    it: there a skip would hide that the install failed, so the test fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: make test installs it, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """A session fixture's folder, built by the first pytest-xdist worker that needs it and read by the others
    (every build is deterministic; each worker building its own copy cost the suite a minute)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    folder = root / "built-once" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def pretrained_digit_vlm(tmp_path_factory) -> Path:
    """`visreward train-vlm`'s real pretraining on the captioned digits, shortened (600 steps of the 4x size): a
    small VLM that reads held-out digits (0.88 of them, against 0.95 at the default 1500 steps)."""
    from visreward.core.options import VLMPretrainingConfig
    from visreward.rewards.generative.pretraining import pretrain_vlm

    def build(root: Path) -> None:
        pretrain_vlm(VLMPretrainingConfig(output=str(root / "vlm"), size="4x", steps=600, lr=3e-3, progress=False))

    return built_once(tmp_path_factory, "digit-vlm", build) / "vlm"


@pytest.fixture(scope="session")
def tiny_generator_dir(tmp_path_factory) -> Path:
    """The bundled generator's real training code, run briefly, saved and reloaded from disk."""
    def build(root: Path) -> None:
        data = write_digits_folder(root / "data", "train", range(300))
        # 100 steps: with 40 it drew blobs, and Best-of-16 could not move toward a look it never drew. In fp32 on
        # every CPU, so that it and every number drawn from it are the same with native bf16 (AMX) and without.
        train_generator(GeneratorTrainingConfig(data=[str(data)], output=str(root / "digits"), steps=100, width=32,
                                                inference_steps=10, mixed_precision="no", progress=False))

    return built_once(tmp_path_factory, "generator", build) / "digits"


@pytest.fixture(scope="session")
def tiny_generator(tiny_generator_dir):
    from visreward.generators import ConditionalGenerator

    return ConditionalGenerator.from_pretrained(tiny_generator_dir)


def denoising_error(generator, images: torch.Tensor, prompts: list[str], draws: int = 8) -> float:
    """The epsilon-prediction error on these images, over `draws` fixed draws of noise and timestep per image."""
    denoiser = generator.denoiser()
    x0 = denoiser.encode_images(images).repeat(draws, 1, 1, 1)
    rng = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=rng)
    timesteps = torch.randint(0, denoiser.objective.num_train_timesteps, (len(x0),), generator=rng)
    noisy = denoiser.objective.noise(x0, noise, timesteps)
    with torch.no_grad():
        prediction = denoiser.predict(denoiser.module, noisy.noisy, noisy.timesteps, denoiser.condition(prompts * draws))
    return float((prediction - noise).pow(2).mean())


def write_real_digits(folder: Path, n: int, split: str = "train", offset: int = 0) -> Path:
    return write_digits_folder(folder, split, range(offset, offset + n))


@pytest.fixture(scope="session")
def digit_folders(tmp_path_factory, tiny_generator) -> dict[str, Path]:
    """Real target digits vs the (barely trained) generator's outputs, plus a pool and held-out sets."""
    prompts = [digit_prompt(d) for d in range(10)]

    def build(root: Path) -> None:
        write_real_digits(root / "target", 40)
        write_real_digits(root / "heldout_target", 20, offset=40)
        save_samples(tiny_generator.generate(prompts, 4, seed=0), root / "generated")
        save_samples(tiny_generator.generate(prompts, 2, seed=10_000), root / "heldout_generated")
        save_samples(tiny_generator.generate(prompts, 2, seed=20_000), root / "unlabeled")

    root = built_once(tmp_path_factory, "digits", build)
    return {name: root / name for name in ("target", "heldout_target", "generated", "heldout_generated", "unlabeled")}


@pytest.fixture(scope="session")
def rm_dir(digit_folders, tmp_path_factory) -> Path:
    """A small GAN-RM (real target digits vs the tiny generator's samples) for tests that need a reward."""
    def build(root: Path) -> None:
        train_reward_model(RewardTrainingConfig(target=[str(digit_folders["target"])],
                                                generated=[str(digit_folders["generated"])], output=str(root / "rm"),
                                                progress=False, epochs=10))

    return built_once(tmp_path_factory, "rm", build) / "rm"


TINY_WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + "a handwritten digit photo of 0 1 2 3 4 5 6 7 8 9".split()


def save_tiny_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                            bos_token="[BOS]", eos_token="[EOS]").save_pretrained(directory)


VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
TEXT = dict(vocab_size=len(TINY_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=16, bos_token_id=2, eos_token_id=3, pad_token_id=0)


@pytest.fixture(scope="session")
def tiny_hf_encoders(tmp_path_factory) -> dict[str, Path]:
    """Tiny random CLIP, SigLIP and DINOv2 folders (model + processor + tokenizer)."""
    import torch
    from transformers import (
        BitImageProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        Dinov2Config,
        Dinov2Model,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    CLIPModel(CLIPConfig(vision_config=VISION, text_config=TEXT, projection_dim=24)).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    save_tiny_tokenizer(root / "clip")
    SiglipModel(SiglipConfig(vision_config=VISION, text_config=TEXT)).save_pretrained(root / "siglip")
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "siglip")
    save_tiny_tokenizer(root / "siglip")
    Dinov2Model(Dinov2Config(**VISION)).save_pretrained(root / "dinov2")
    BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "dinov2")
    return {"clip": root / "clip", "siglip": root / "siglip", "dinov2": root / "dinov2"}


def photo(name: str) -> Image.Image:
    """A real photograph shipped with scikit-image."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def write_metadata(folder: Path, rows: list[dict]) -> None:
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def write_image_prompts(folder, digits_to_use=(3, 5)):
    """prompts.jsonl naming a real digit image (PNG, relative path) per prompt."""
    images, labels = real_digits("evaluation")
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for digit in digits_to_use:
        index = int(np.flatnonzero(labels == digit)[0])
        Image.fromarray(images[index]).convert("RGB").resize((32, 32)).save(folder / f"digit-{digit}.png")
        rows.append(json.dumps({"prompt": f"a digit {digit} moving right", "image": f"digit-{digit}.png"}))
    (folder / "prompts.jsonl").write_text("\n".join(rows) + "\n")
    return folder / "prompts.jsonl"


FRAMES = 4  # frames the tests' video reward models sample per clip: the default 8 doubles encoding time


@pytest.fixture(scope="session")
def motion_clips(tmp_path_factory):
    """Real digits gliding right (target) vs the same kind of digits standing and shaking (generated), as mp4."""
    def build(root: Path) -> None:
        images, labels = real_digits("train")
        rng = np.random.default_rng(0)
        for name, motion, jitter, offset in (("gliding", "right", 0.0, 0), ("shaking", "still", 1.5, 50)):
            (root / name).mkdir()
            rows = []
            for i in range(offset, offset + 50):
                write_video(root / name / f"{i:03d}.mp4", digit_clip(images[i], motion, jitter=jitter, rng=rng), fps=8)
                rows.append(json.dumps({"file_name": f"{i:03d}.mp4", "prompt": digit_prompt(int(labels[i]))}))
            (root / name / "metadata.jsonl").write_text("\n".join(rows) + "\n")

    return built_once(tmp_path_factory, "clips", build)


@pytest.fixture(scope="session")
def video_rm(motion_clips, tmp_path_factory):
    def build(root: Path) -> None:
        train_reward_model(RewardTrainingConfig(
            target=[str(motion_clips / "gliding")], generated=[str(motion_clips / "shaking")], output=str(root / "rm"),
            frames=FRAMES, test=0.3, progress=False))

    output = built_once(tmp_path_factory, "video-rm", build) / "rm"
    return output, json.loads((output / "metrics.json").read_text())
