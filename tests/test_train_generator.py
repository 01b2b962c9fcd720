"""`visreward train-generator` on a data set that is not the digits, then the GAN-RM loop on it."""

import json

import numpy as np
import pytest
import torch
from conftest import denoising_error
from PIL import Image

from visreward.cli import main
from visreward.core.errors import VisrewardError
from visreward.generators import ConditionalGenerator, GeneratorTrainingConfig, load_generator, train_generator

FACE, OTHER = "a face", "not a face"


@pytest.fixture(scope="module")
def faces_folder(tmp_path_factory):
    """scikit-image's lfw_subset: 100 real 25x25 face crops and 100 non-face crops, as an imagefolder."""
    import skimage.data

    images = skimage.data.lfw_subset()
    folder = tmp_path_factory.mktemp("faces") / "data"
    folder.mkdir()
    rows = []
    for i, image in enumerate(images):
        name = f"{i:03d}.png"
        Image.fromarray((image * 255).round().astype(np.uint8), mode="L").save(folder / name)
        rows.append({"file_name": name, "prompt": FACE if i < 100 else OTHER})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_train_generator_lowers_the_denoising_error_on_its_data_then_rounds_run_on_faces(faces_folder, tmp_path):
    from visreward.post_training.sft import load_sft_data

    def train(name: str, steps: int):
        assert main(["train-generator", "--data", str(faces_folder), "--output", str(tmp_path / name), "--resolution",
                     "16", "--steps", str(steps), "--batch-size", "32", "--width", "32", "--inference-steps", "5",
                     "--no-progress"]) == 0
        return load_generator(str(tmp_path / name))

    gen = tmp_path / "gen"
    generator, barely = train("gen", 30), train("one-step", 1)
    faces = load_sft_data([str(faces_folder)], (16, 16))
    pixels = faces.images.float() / 255
    trained_error = denoising_error(generator, pixels, faces.prompts, draws=1)
    assert trained_error < 0.8 * denoising_error(barely, pixels, faces.prompts, draws=1)
    assert generator.prompts == [FACE, OTHER] and generator.resolution == (16, 16) and generator.channels == 1
    images, prompts, seeds = generator.generate_tensors([OTHER, FACE], 2, seed=3)
    assert images.shape == (4, 3, 16, 16) and prompts == [OTHER, OTHER, FACE, FACE] and seeds == [3, 4, 5, 6]
    with pytest.raises(VisrewardError, match="not one of this generator's 2 prompts"):
        generator.generate_tensors(["a cat"], 1)

    target = tmp_path / "target"  # the look: the brightest faces
    target.mkdir()
    rows = [json.loads(line) for line in (faces_folder / "metadata.jsonl").read_text().splitlines()][:100]
    brightness = [np.asarray(Image.open(faces_folder / r["file_name"])).mean() for r in rows]
    for r in [rows[i] for i in np.argsort(brightness)[-30:]]:
        (target / r["file_name"]).write_bytes((faces_folder / r["file_name"]).read_bytes())
    assert main(["rounds", "--generator", str(gen), "--target", str(target), "--prompts", FACE, "--output",
                 str(tmp_path / "run"), "--rounds", "1", "--n", "2", "--repeats", "2", "--negatives-per-prompt", "20",
                 "--pool-per-prompt", "4", "--steps", "2", "--batch-size", "2", "--method", "sft", "--no-progress"]) == 0
    tuned = load_generator(str(tmp_path / "run" / "round-1" / "finetune"))
    assert tuned.prompts == [FACE, OTHER]
    assert not torch.equal(tuned.generate_tensors([FACE], 1, 0)[0], generator.generate_tensors([FACE], 1, 0)[0])


def test_interrupted_training_resumes_to_the_same_weights(faces_folder, tmp_path, monkeypatch):
    from visreward.generators import conditional

    config = GeneratorTrainingConfig(data=[str(faces_folder)], output=str(tmp_path / "straight"), resolution=8, steps=6,
                                     width=32, checkpoint_every=2, progress=False)
    straight = train_generator(config)

    real_checkpoint = conditional._checkpoint

    def dies_after_step_four(checkpoints, step, *args):
        real_checkpoint(checkpoints, step, *args)
        if step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(conditional, "_checkpoint", dies_after_step_four)
    resumed_config = GeneratorTrainingConfig(**{**config.__dict__, "output": str(tmp_path / "resumed")})
    with pytest.raises(KeyboardInterrupt):
        train_generator(resumed_config)
    assert not (tmp_path / "resumed").exists() and (tmp_path / "resumed.checkpoints" / "step.json").exists()
    monkeypatch.setattr(conditional, "_checkpoint", real_checkpoint)
    resumed = train_generator(resumed_config)
    for (name, a), b in zip(straight.unet.state_dict().items(), resumed.unet.state_dict().values()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "resumed.checkpoints").exists()


def test_bad_training_folders_get_one_line_errors(faces_folder, tmp_path):
    def folder(name, sizes, prompts):
        path = tmp_path / name
        path.mkdir()
        for i, (size, prompt) in enumerate(zip(sizes, prompts)):
            Image.new("L", (size, size), i * 10).save(path / f"{i}.png")
        if prompts[0] is not None:
            (path / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i}.png", "prompt": p}) + "\n"
                                                         for i, p in enumerate(prompts)))
        return str(path)

    def error(data, **kwargs):
        with pytest.raises(VisrewardError) as caught:
            train_generator(GeneratorTrainingConfig(data=[data], output=str(tmp_path / "out"), steps=1, progress=False, **kwargs))
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "no prompt" in error(folder("bare", [8] * 8, [None] * 8))
    assert "1 image(s), fewer than --min-per-prompt 8" in error(folder("rare", [8] * 9, ["a"] * 8 + ["b"]))
    assert "9x9, but" in error(folder("mixed", [8] * 8 + [9], ["a"] * 9), min_per_prompt=1)
    assert "8 to 64 px" in error(folder("huge", [8] * 8, ["a"] * 8), resolution=128)
    assert not (tmp_path / "out").exists()


def test_rgb_folders_train_an_rgb_generator(tmp_path):
    data = tmp_path / "rgb"
    data.mkdir()
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    rows = []
    for i in range(16):
        prompt = "red" if i % 2 else "blue"
        Image.new("RGB", (12, 12), colours[prompt]).save(data / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": prompt})
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    generator = train_generator(GeneratorTrainingConfig(data=[str(data)], output=str(tmp_path / "g"), resolution=8, steps=2,
                                                        width=32, inference_steps=2, progress=False))
    assert generator.channels == 3 and isinstance(ConditionalGenerator.from_pretrained(tmp_path / "g"), ConditionalGenerator)
    assert generator.generate([("red")], 1)[0].image.mode == "RGB"
