"""The field's standard rewards on a transformers CLIP, as reward specs beside ours.

    clipscore:PATH   100 * max(cos(image, text), 0): CLIPScore as torchmetrics reports it (the paper's w = 2.5 on
                     max(cos, 0) is this times a combiner weight of 0.025)
    pickscore:PATH   PickScore: the CLIP's logit_scale.exp() * cos(image, text) (yuvalkirstain/PickScore_v1 is a
                     CLIPModel and processor)
    aesthetic:PATH   the LAION aesthetic predictor: the L2-normalised CLIP ViT-L/14 image embedding into its MLP, whose
                     weights are PATH/aesthetic_mlp.safetensors (or .pth, read with torch.load(weights_only=True))

PATH is a local folder or a hub id of the CLIP (model, processor, tokenizer). Each has `score(images, prompts)`
(paths, PIL images, or batches as RL trainers pass them, through the 8-bit path files take) and, for reward-gradient
training, `model(images [B,3,H,W] in [0,1], prompts)`, differentiable in the images. They score images, not clips.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..core.errors import VisrewardError
from .spread import spread

KINDS = ("clipscore", "pickscore", "aesthetic")
AESTHETIC_WEIGHTS = ("aesthetic_mlp.safetensors", "aesthetic_mlp.pth")


def aesthetic_mlp(dim: int) -> nn.Sequential:
    """The LAION improved-aesthetic-predictor's MLP (its state-dict keys: layers.0, .2, .4, .6, .7)."""
    return nn.Sequential(nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                         nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))


def _mlp_weights(folder: str) -> dict:
    for name in AESTHETIC_WEIGHTS:
        path = Path(folder) / name
        if path.is_file():
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
            return {key.removeprefix("layers."): value for key, value in state.items()}
    raise VisrewardError(f"aesthetic:{folder}: no {' or '.join(AESTHETIC_WEIGHTS)} with the predictor's MLP")


class StandardReward(nn.Module):
    """One of KINDS on a frozen CLIP; its score is a function of the normalised image (and text) embeddings."""

    def __init__(self, kind: str, path_or_id: str, device: str | None = None):
        super().__init__()
        from ..encoders.transformers_encoders import TransformersEncoder

        if kind not in KINDS:
            raise VisrewardError(f"unknown standard reward '{kind}' (have: {', '.join(KINDS)})")
        self.kind, self.spec = kind, f"{kind}:{path_or_id}"
        self.encoder = TransformersEncoder("clip", path_or_id)
        self.mlp = None
        if kind == "aesthetic":
            self.mlp = aesthetic_mlp(self.encoder.dim)
            try:
                self.mlp.load_state_dict(_mlp_weights(path_or_id))
            except RuntimeError as e:
                raise VisrewardError(f"{self.spec}: the MLP weights do not fit a {self.encoder.dim}-d CLIP "
                                     f"({str(e).splitlines()[0]})") from None
        self.requires_grad_(False)
        self.eval()
        if device:
            self.to(device)

    @property
    def needs_prompts(self) -> bool:
        return self.kind != "aesthetic"

    def _from_embeddings(self, images: torch.Tensor, prompts: Sequence[str] | None) -> torch.Tensor:
        images = nn.functional.normalize(images.float(), dim=-1)
        if self.mlp is not None:
            return self.mlp(images.to(next(self.mlp.parameters()).device)).squeeze(-1)
        if prompts is None or len(prompts) != len(images):
            raise VisrewardError(f"{self.spec}: needs one prompt per image ({len(images)} images, "
                                 f"{0 if prompts is None else len(prompts)} prompts)")
        text = nn.functional.normalize(self.encoder.encode_text(list(prompts)).to(images.device).float(), dim=-1)
        cosine = (images * text).sum(dim=-1)
        if self.kind == "clipscore":
            return 100 * cosine.clamp(min=0)
        return self.encoder.model.logit_scale.exp().float().to(cosine.device) * cosine

    def forward(self, images: torch.Tensor, prompts: Sequence[str] | None = None) -> torch.Tensor:
        """Differentiable scores of [B,3,H,W] images in [0,1]."""
        return self._from_embeddings(self.encoder(images), prompts)

    @torch.inference_mode()
    def score(self, images, prompts: Sequence[str | None] | None = None, batch_size: int = 32) -> torch.Tensor:
        from ..encoders.features import encode_tensors
        from ..io.images import as_image_batch, load_image

        batch = as_image_batch(images)
        if getattr(batch, "ndim", 4) != 4:
            raise VisrewardError(f"{self.spec}: scores images, not clips ({list(batch.shape)})")
        if isinstance(batch, torch.Tensor):
            embeddings = encode_tensors(self.encoder, batch, batch_size)
        else:
            batch = list(batch)
            embeddings = torch.cat([self.encoder.encode([load_image(image) for image in batch[start : start + batch_size]])
                                    for start in range(0, len(batch), batch_size)])
        return self._from_embeddings(embeddings, prompts).float().cpu().clone()

    def reward_fn(self, images, prompts=None, metadata=None) -> tuple[torch.Tensor, dict]:
        scores = self.score(images, prompts)
        return scores, spread(scores)


def standard_kind(spec: str) -> str | None:
    """The standard reward a spec names ('pickscore:PATH' -> 'pickscore'), or None."""
    kind, colon, _ = spec.partition(":")
    return kind if colon and kind in KINDS else None


def load_standard_reward(spec: str, device: str | None = None) -> StandardReward:
    kind, _, path = spec.partition(":")
    return StandardReward(kind, os.path.expanduser(path), device)
