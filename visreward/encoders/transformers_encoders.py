"""CLIP, SigLIP and DINOv2 image towers (and CLIP/SigLIP text towers) through transformers."""

from __future__ import annotations

import os
from typing import Sequence

import torch

from ..core.errors import VisrewardError
from .base import ImageEncoder, Preprocessing

KINDS = ("clip", "siglip", "dinov2")


def _pooled(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projected embedding.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _preprocessing_of(processor) -> Preprocessing:
    """Our recipe from the processor's saved settings (plain JSON values in any transformers version)."""
    settings = processor.to_dict()
    size = settings["size"] if isinstance(settings["size"], dict) else {"shortest_edge": settings["size"]}
    crop = settings.get("crop_size") if settings.get("do_center_crop") else None
    crop = crop["height"] if isinstance(crop, dict) else crop
    if size.get("shortest_edge"):
        resize, mode = size["shortest_edge"], "shortest_edge"
    else:
        resize, mode = size["height"], "square"
    return Preprocessing(
        resize=int(resize),
        crop=int(crop) if crop else None,
        mean=tuple(float(m) for m in settings["image_mean"]),
        std=tuple(float(s) for s in settings["image_std"]),
        resize_mode=mode,
    )


class TransformersEncoder(ImageEncoder):
    """`kind:path_or_id`, loaded with trust_remote_code off."""

    def __init__(self, kind: str, path_or_id: str):
        super().__init__()
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        if kind not in KINDS:
            raise VisrewardError(f"unknown encoder kind '{kind}' (have: {', '.join(KINDS)})")
        location = os.path.abspath(path_or_id) if os.path.isdir(path_or_id) else path_or_id
        try:
            self.model = AutoModel.from_pretrained(location, trust_remote_code=False)
            processor = AutoImageProcessor.from_pretrained(location)
            self.tokenizer = AutoTokenizer.from_pretrained(location) if kind != "dinov2" else None
        except (OSError, ValueError) as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise VisrewardError(f"{kind}:{path_or_id}: cannot load the model ({first_line})") from None
        self.kind = kind
        self.name = f"{kind}:{location}"
        self.has_text = self.tokenizer is not None
        self.preprocessing = _preprocessing_of(processor)
        config = self.model.config
        self.dim = config.hidden_size if kind == "dinov2" else (
            config.projection_dim if kind == "clip" else config.vision_config.hidden_size
        )
        self.freeze()

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.kind == "dinov2":
            return self.model(pixel_values=pixels).pooler_output
        return _pooled(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        if not self.has_text:
            return super().encode_text(prompts)
        # SigLIP was trained on max-length padding; CLIP pools at the EOS token, so either works for it.
        padding = "max_length" if self.kind == "siglip" else True
        tokens = self.tokenizer(
            list(prompts), padding=padding, truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings, return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            return _pooled(self.model.get_text_features(**tokens)).float().cpu()
