"""A GAN-RM reward model: frozen encoder + trained head, saved and loaded like Hugging Face models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ...core.atomic import atomic_path
from ...core.errors import VisrewardError
from ...encoders import ImageEncoder, load_encoder
from ...encoders.features import FeatureCache, encode_tensors, extract_features
from ...encoders.video import VideoEncoder
from ...io.images import ImageInput, as_image_batch, as_records
from ...io.videos import FrameSampling, as_video_batch
from ..spread import spread
from .head import RewardHead

MODEL_TYPE = "visreward-gan-rm"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class DiscriminativeRewardModel(nn.Module):
    """reward = head logit that an image looks like the target set (GAN-RM).

        rm = DiscriminativeRewardModel.from_pretrained("rm/")
        scores = rm.score(images=["a.png", pil_image], prompts=None)     # [B] logits
        logits = rm(images_01)          # differentiable: [B,3,H,W] in [0,1] -> [B]

    With a `VideoEncoder` it is a video reward: clips in, one score per clip, frames sampled
    by the recipe saved in config.json.
    """

    def __init__(self, encoder: ImageEncoder, head: RewardHead, calibration: dict | None = None):
        super().__init__()
        self.encoder = encoder
        self.head = head
        # Where real inputs land, measured at training time (see `calibrate`): what hacking monitors compare with.
        self.calibration = calibration or {}

    @classmethod
    def create(cls, encoder: ImageEncoder, hidden_dim: int = 512, dropout: float = 0.1,
               text_conditioning: str = "none", members: int = 1) -> "DiscriminativeRewardModel":
        text_dim = 0
        if text_conditioning != "none":
            text_dim = encoder.encode_text(["a"]).shape[-1]  # raises for image-only encoders
        head = RewardHead(encoder.dim, hidden_dim, dropout, text_conditioning, text_dim, members)
        return cls(encoder, head.to(encoder.device))

    @property
    def config(self) -> dict:
        from ...core import __version__

        return {
            "model_type": MODEL_TYPE,
            "encoder": self.encoder.name,
            "preprocessing": self.encoder.preprocessing.to_dict(),
            **self.head.init_args,
            **({"video": self.encoder.video_config} if hasattr(self.encoder, "video_config") else {}),
            "calibration": self.calibration,
            "visreward_version": __version__,
        }

    def text_features(self, prompts: Sequence[str | None] | None) -> torch.Tensor | None:
        if not self.head.uses_text:
            return None
        if prompts is None or any(p is None for p in prompts):
            raise VisrewardError("this reward model is prompt-conditioned: every image needs a prompt")
        unique = sorted(set(prompts))
        table = dict(zip(unique, self.encoder.encode_text(unique)))
        return torch.stack([table[p] for p in prompts]).to(self.encoder.device)

    def feature_distance(self, features: torch.Tensor) -> torch.Tensor:
        """Root-mean-square of the head's standardised input: how far features lie from the training data."""
        return self._distance(features).detach().cpu()

    def _distance(self, features: torch.Tensor) -> torch.Tensor:
        standardised = (features.to(self.head.feature_mean.device) - self.head.feature_mean) / self.head.feature_std
        return standardised.float().pow(2).mean(dim=-1).sqrt()

    def calibrate(self, target_features: torch.Tensor, target_text: torch.Tensor | None, natural: torch.Tensor,
                  off_data_penalty: float = 0.0, members: torch.Tensor | None = None) -> None:
        """Record the training inputs' feature distances, then held-out target images' score range as `score`
        gives it (with the off-data penalty that distance sets), so monitors compare like with like. `members` [N]:
        for an ensemble's out-of-fold scores, the member that held each target out (None: the whole head's)."""
        self.calibration = {"feature_distance_p99": float(self.feature_distance(natural).quantile(0.99)),
                            "off_data_penalty": off_data_penalty}
        device = self.head.feature_mean.device
        features, text = target_features.to(device), None if target_text is None else target_text.to(device)
        with torch.no_grad():
            if members is None:
                logits = self.head(features, text)
            else:
                each = torch.stack([self.head(features, text, member) for member in range(len(self.head.members))])
                logits = each.gather(0, members.to(device)[None]).squeeze(0)
            scores = self.guarded(logits, features).float().cpu()
        self.calibration.update(target_score_max=float(scores.max()), target_score_p5=float(scores.quantile(0.05)))

    def guarded(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Logits lowered for inputs beyond the training data (an unseen checkerboard can otherwise outscore
        real targets: the head extrapolates there); inputs within the 99th-percentile distance keep theirs."""
        weight = self.calibration.get("off_data_penalty", 0.0)
        if not weight:
            return logits
        limit = self.calibration["feature_distance_p99"]
        excess = torch.relu(self._distance(features) - limit) / limit
        return logits - weight * excess.to(logits.device, logits.dtype)

    def forward(self, images: torch.Tensor, prompts: Sequence[str] | None = None) -> torch.Tensor:
        """Differentiable reward logits for [B,3,H,W] images in [0,1] (for reward-gradient training)."""
        return self.reward_and_features(images, prompts)[0]

    def reward_and_features(self, images: torch.Tensor, prompts: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(differentiable logits, the encoder features they came from): monitors reuse the features."""
        features = self.encoder(images)
        return self.guarded(self.head(features, self.text_features(prompts)), features), features

    def score_features(self, features: torch.Tensor, prompts: Sequence[str | None] | None = None,
                       prob: bool = False) -> torch.Tensor:
        with torch.inference_mode():
            features = features.to(self.encoder.device)
            logits = self.guarded(self.head(features, self.text_features(prompts)), features).float().cpu()
        logits = logits.clone()  # a normal tensor: callers (RL trainers) may modify it in place
        return torch.sigmoid(logits) if prob else logits

    def score(self, images: Sequence[ImageInput] | torch.Tensor, prompts: Sequence[str | None] | None = None,
              prob: bool = False, batch_size: int = 32, cache: FeatureCache | None = None,
              num_workers: int = 4, progress: bool = False) -> torch.Tensor:
        """Reward per image (or per clip, for a video reward model), in input order: logits, or probabilities
        with prob=True.

        images: paths, PIL images, or a batch scored directly (no file round trip): a [B,3,H,W] float
        tensor in [0,1], or uint8 / NHWC arrays or tensors as RL trainers pass them (quantised to 8 bits
        first, so a tensor and the PNG saved from it get the same score). A video reward model takes video
        files, folders of frames, [T,3,H,W] clips, or a [B,T,3,H,W] batch (uint8 / [B,T,H,W,3] too).
        """
        self.eval()
        images = as_video_batch(images) if hasattr(self.encoder, "sampling") else as_image_batch(images)
        if isinstance(images, torch.Tensor) and images.ndim in (4, 5):
            if prompts is not None and len(prompts) != len(images):
                raise VisrewardError(f"{len(images)} images but {len(prompts)} prompts")
            return self.score_features(encode_tensors(self.encoder, images, batch_size), prompts, prob)
        items = as_records(images, prompts)
        _, features = extract_features(items, self.encoder, cache=cache, batch_size=batch_size,
                                       num_workers=num_workers, progress=progress)
        return self.score_features(features, [record.prompt for record, _ in items] if prompts else None, prob)

    def reward_fn(self, images, prompts=None, metadata=None) -> tuple[torch.Tensor, dict]:
        """RL-trainer convention: (rewards [B], info)."""
        scores = self.score(images, prompts)
        return scores, spread(scores)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(tmp))
        with atomic_path(directory / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(self.config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, encoder: ImageEncoder | None = None,
                        device: str | None = None, backend: str = "torch", precision: str = "fp32",
                        cache_dir: str | os.PathLike | None = None) -> "DiscriminativeRewardModel":
        """Head from `directory`, encoder named by its config (or `encoder`, which must match).

        backend/precision choose the encoder's inference runtime (see encoders/runtime.py).
        """
        from ...core.model_card import local_folder

        directory = local_folder(directory)
        config_path = directory / CONFIG_NAME
        try:
            config = json.loads(config_path.read_text())
        except FileNotFoundError:
            raise VisrewardError(f"{directory}: not a reward model folder (no {CONFIG_NAME})") from None
        except json.JSONDecodeError as e:
            raise VisrewardError(f"{config_path}: not valid JSON ({e.msg})") from None
        if config.get("model_type") != MODEL_TYPE:
            raise VisrewardError(f"{config_path}: model_type is {config.get('model_type')!r}, expected {MODEL_TYPE!r}")
        if encoder is None:
            encoder = load_encoder(config["encoder"], device, backend, precision, cache_dir)
        if "video" in config and not hasattr(encoder, "sampling"):  # scored the way it was trained
            video = config["video"]
            encoder = VideoEncoder(encoder, FrameSampling(video["frames"], video["fps"]), video["pooling"])
        if encoder.name != config["encoder"]:
            raise VisrewardError(f"{directory}: trained on encoder '{config['encoder']}', got '{encoder.name}'")
        if encoder.preprocessing.to_dict() != config["preprocessing"] or encoder.dim != config["feature_dim"]:
            raise VisrewardError(f"{directory}: encoder '{encoder.name}' preprocessing or feature size differs from training")
        head = RewardHead(**{k: config[k] for k in ("feature_dim", "hidden_dim", "dropout", "text_conditioning", "text_dim")},
                          members=config.get("members", 1))  # a model saved before ensembles has one
        try:
            head.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
        except FileNotFoundError:
            raise VisrewardError(f"{directory}: missing {WEIGHTS_NAME}") from None
        except RuntimeError as e:
            raise VisrewardError(f"{directory / WEIGHTS_NAME}: does not match config.json ({str(e).splitlines()[0]})") from None
        return cls(encoder, head.to(encoder.device), config.get("calibration")).eval()
