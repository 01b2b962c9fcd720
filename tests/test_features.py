import torch
from conftest import photo

from visreward.encoders import ImageEncoder
from visreward.encoders.features import FeatureCache, extract_features
from visreward.io.readers import read_images


class CountingEncoder(ImageEncoder):
    """Wraps the real encoder, counting images it actually encodes."""

    def __init__(self, encoder):
        super().__init__()
        self.inner, self.calls = encoder, 0
        self.name, self.dim, self.preprocessing = encoder.name, encoder.dim, encoder.preprocessing

    def embed_pixels(self, pixels):
        self.calls += len(pixels)
        return self.inner.embed_pixels(pixels)


def test_cache_skips_seen_files_and_reencodes_changed_ones(tmp_path, encoder):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("coffee", "chelsea", "camera"):
        photo(name).save(folder / f"{name}.png")
    cache = FeatureCache(tmp_path / "cache")
    counting = CountingEncoder(encoder)
    items = read_images([folder])
    _, first = extract_features(items, counting, cache=cache, batch_size=2)
    assert counting.calls == 3 and len(cache) == 3
    _, second = extract_features(items, counting, cache=cache, batch_size=2)
    assert counting.calls == 3 and torch.equal(first, second)
    photo("astronaut").save(folder / "camera.png")  # same name, new content
    _, third = extract_features(items, counting, cache=cache)
    assert [r.id for r, _ in items] == ["images/camera.png", "images/chelsea.png", "images/coffee.png"]
    assert counting.calls == 4 and not torch.allclose(third[0], first[0])
    assert torch.equal(third[1:], first[1:])
    _, uncached = extract_features(items, counting, cache=None)
    assert counting.calls == 7 and torch.allclose(uncached, third, atol=1e-5)


def test_cache_is_keyed_by_encoder_and_its_preprocessing(tmp_path, encoder):
    import copy
    import dataclasses

    resized = copy.copy(encoder)
    resized.preprocessing = dataclasses.replace(encoder.preprocessing, resize=300)
    assert resized.name == encoder.name and resized.cache_key != encoder.cache_key
    cache = FeatureCache(tmp_path)
    cache.put_many("other-encoder", [("k", torch.ones(3).numpy())])
    assert cache.get(encoder.cache_key, "k") is None
    assert cache.get("other-encoder", "k").tolist() == [1.0, 1.0, 1.0]
    assert FeatureCache(tmp_path).get("other-encoder", "k") is not None  # persisted on disk
