"""GAN-RM's reward prediction layer: a small MLP on frozen features (optionally with the prompt)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...core.options import TEXT_CONDITIONING


class RewardHead(nn.Module):
    """Standardise features with stored training statistics, then MLP -> one logit.

    Text conditioning (off by default, as in the paper) appends the prompt's unit-norm text
    embedding and/or the image-text cosine similarity to the head's input. With `members` > 1 the
    head is an ensemble: that many MLPs on the same standardised input, each trained on its own
    split, and the logit is their mean.
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 512, dropout: float = 0.1,
                 text_conditioning: str = "none", text_dim: int = 0, members: int = 1):
        super().__init__()
        if text_conditioning not in TEXT_CONDITIONING:
            raise ValueError(f"text_conditioning must be one of {TEXT_CONDITIONING}")
        if members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        self.init_args = {"feature_dim": feature_dim, "hidden_dim": hidden_dim, "dropout": dropout,
                          "text_conditioning": text_conditioning, "text_dim": text_dim, "members": members}
        self.text_conditioning = text_conditioning
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        in_dim = feature_dim
        in_dim += text_dim if text_conditioning in ("embedding", "both") else 0
        in_dim += 1 if text_conditioning in ("similarity", "both") else 0
        self.members = nn.ModuleList([_mlp(in_dim, hidden_dim, dropout) for _ in range(members)])
        self.register_load_state_dict_pre_hook(_one_mlp_is_member_0)

    @property
    def uses_text(self) -> bool:
        return self.text_conditioning != "none"

    @torch.no_grad()
    def fit_normalisation(self, features: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Standardise each feature by the training inputs' statistics; with `weights`, feature i's standardised
        value is also scaled by weights[i] (kept in feature_std, so a saved head scores the same)."""
        std = features.std(0)
        # Dimensions (almost) constant in training would turn any unseen activation into a huge input.
        floor = max(1e-4, 0.1 * float(std.median()))
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(std.clamp_min(floor) / (1.0 if weights is None else weights.to(std)))

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor | None = None,
                member: int | None = None) -> torch.Tensor:
        """Logits [B]: the members' mean, or with `member` that member's alone (what training it optimises)."""
        parts = [(image_features - self.feature_mean) / self.feature_std]
        if self.uses_text:
            if text_features is None:
                raise ValueError("this reward head is prompt-conditioned: pass prompts")
            text_unit = F.normalize(text_features, dim=-1)
            if self.text_conditioning in ("embedding", "both"):
                parts.append(text_unit)
            if self.text_conditioning in ("similarity", "both"):
                parts.append((F.normalize(image_features, dim=-1) * text_unit).sum(-1, keepdim=True))
        inputs = torch.cat(parts, dim=-1)
        if member is not None:
            return self.members[member](inputs).squeeze(-1)
        return torch.stack([mlp(inputs) for mlp in self.members]).mean(dim=0).squeeze(-1)


def _mlp(in_dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    if hidden_dim > 0:
        return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, 1))


def _one_mlp_is_member_0(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Heads saved before ensembles kept their one MLP under `mlp.`: it loads as member 0."""
    for key in [k for k in state_dict if k.startswith(prefix + "mlp.")]:
        state_dict[prefix + "members.0." + key[len(prefix + "mlp."):]] = state_dict.pop(key)
