import json

import numpy as np
import pytest
import torch

from visreward.core.errors import VisrewardError
from visreward.generators import ConditionalGenerator, save_samples
from visreward.io.digits import SPLITS, digit_prompt, parse_digit, real_digits
from visreward.io.readers import find_images


def test_prompts_name_digits():
    assert parse_digit(digit_prompt(7)) == 7
    assert parse_digit("A handwritten digit Seven") == 7
    with pytest.raises(VisrewardError, match="names no digit"):
        parse_digit("a cat")


def test_real_digit_splits_are_disjoint_and_cover_the_data():
    sizes = {name: len(real_digits(name)[0]) for name in SPLITS}
    assert sizes == {"train": 1400, "evaluation": 397}  # all 1797, each index once
    images, labels = zip(*(real_digits(name) for name in SPLITS))
    assert np.concatenate(labels).shape == (1797,) and np.bincount(np.concatenate(labels)).min() > 170
    assert all(0.0 <= part.min() and part.max() <= 1.0 for part in images)
    assert all(set(np.unique(part_labels)) == set(range(10)) for part_labels in labels)


def test_every_sample_can_be_regenerated_from_its_seed(tiny_generator):
    samples = tiny_generator.generate([digit_prompt(3), digit_prompt(8)], n_per_prompt=3, seed=100)
    assert [s.seed for s in samples] == list(range(100, 106))
    assert [s.prompt for s in samples] == [digit_prompt(3)] * 3 + [digit_prompt(8)] * 3
    again = tiny_generator.generate([samples[4].prompt], 1, seed=samples[4].seed)[0]
    assert np.array_equal(np.asarray(again.image), np.asarray(samples[4].image))
    assert samples[0].image.size == (8, 8)
    batch, prompts, seeds = tiny_generator.generate_tensors([digit_prompt(3), digit_prompt(8)], 3, seed=100)
    chosen = [5, 0, 3]  # any recorded samples, in any order, in one batched call
    again = tiny_generator.generate_from_seeds([prompts[i] for i in chosen], [seeds[i] for i in chosen])
    assert torch.allclose(again, batch[chosen], atol=1e-5)
    assert not np.array_equal(np.asarray(samples[0].image), np.asarray(samples[1].image))


def test_generated_tensors_match_the_saved_images(tiny_generator, tmp_path):
    images, prompts, seeds = tiny_generator.generate_tensors([digit_prompt(1)], 2, seed=5)
    assert images.shape == (2, 3, 8, 8) and 0 <= images.min() and images.max() <= 1
    folder = save_samples(tiny_generator.generate([digit_prompt(1)], 2, seed=5), tmp_path / "out")
    from PIL import Image

    saved = np.stack([np.asarray(Image.open(folder / f"00000{i}.png")) for i in range(2)])
    assert saved.shape == (2, 8, 8)  # grayscale PNGs
    assert np.abs(saved.astype(int) - (images[:, 0].numpy() * 255).round().astype(int)).max() == 0
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert rows[1] == {"file_name": "000001.png", "prompt": digit_prompt(1), "seed": 6}
    assert [r.prompt for r in find_images([folder])] == [digit_prompt(1)] * 2


def test_save_and_load_round_trip(tiny_generator, tmp_path):
    tiny_generator.save_pretrained(tmp_path / "g")
    loaded = ConditionalGenerator.from_pretrained(tmp_path / "g")
    a, _, _ = tiny_generator.generate_tensors([digit_prompt(0)], 1, seed=1)
    b, _, _ = loaded.generate_tensors([digit_prompt(0)], 1, seed=1)
    assert torch.equal(a, b)
    with pytest.raises(VisrewardError, match="not a generator folder"):
        ConditionalGenerator.from_pretrained(tmp_path)
