"""`visreward eval-rm`: how well a reward model separates held-out target from generated images."""

from __future__ import annotations

import numpy as np
import torch

from ..core.options import EvalConfig
from ..encoders.features import FeatureCache
from ..evaluation.metrics import binary_metrics, score_summary
from ..io.images import SkipLog
from ..io.readers import find_images, read_images
from ..rewards.discriminative import DiscriminativeRewardModel


def evaluate_reward_model(model: DiscriminativeRewardModel, config: EvalConfig,
                          skipped: SkipLog) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(metrics, target scores, generated scores)."""
    from ..core.errors import VisrewardError
    from .local_engine import iter_scores

    cache = None if config.no_cache else FeatureCache(config.cache_dir)
    video = hasattr(model.encoder, "sampling")
    if video and config.probes:
        raise VisrewardError("--probes builds still images; it does not apply to a video reward model")

    def scores_of(paths: list[str], what: str) -> torch.Tensor:
        if not paths:
            raise VisrewardError(f"no {what} images given (--{what})")
        chunks = [s for _, s in iter_scores(model, read_images(paths, skipped, clips=video), cache, skipped,
                                            config.batch_size, config.num_workers, config.progress)]
        if not chunks:
            raise VisrewardError(f"--{what}: none of the images could be read")
        return torch.cat(chunks)

    target, generated = scores_of(config.target, "target"), scores_of(config.generated, "generated")
    metrics = {**binary_metrics(target, generated, curve=True),
               "target_scores": score_summary(target), "generated_scores": score_summary(generated),
               "n_skipped": len(skipped)}
    if config.probes:
        from ..io.images import load_image
        from ..rewards.probes import probe_report

        starts = [load_image(record.path) for record in find_images(config.generated, skipped)[:4]]
        size = starts[0].size
        pixels = torch.stack([torch.from_numpy(np.array(image.resize(size))).permute(2, 0, 1) for image in starts])
        metrics["probes"] = probe_report(model, target, pixels.float() / 255)
    return metrics, target, generated
