"""The video miniature's judges, independent of every reward model: the ink's centroid track, pixels, and a held-out
digit classifier on the clip's frames; and the names of its table's columns."""

from __future__ import annotations

import torch

from ..io.digits import MOTIONS, parse_motion

JUDGED = ("speed", "toward_target", "direction", "accuracy", "consistency", "diversity")
LABELS = {"speed": "centroid speed, px/frame", "toward_target": "moved toward target", "direction": "moves as prompted",
          "accuracy": "digit accuracy (frames)", "consistency": "temporal consistency", "diversity": "diversity (pixels)"}


def judge(clips: torch.Tensor, prompts: list[str], target_speed: float, base_speed: float | None = None) -> dict:
    """Judges independent of every reward model: the ink's centroid track, pixels, a held-out classifier."""
    from ..evaluation.generation import digit_crops, digit_window_accuracy, within_prompt_diversity
    from ..evaluation.metrics import moved_toward
    from ..evaluation.video import centroid_track, temporal_consistency, track_speed

    track = centroid_track(clips)  # [B,T,(row, column)]
    windows = digit_crops(clips, track)
    speed = float(track_speed(track).mean())
    base = base_speed if base_speed is not None else speed
    travel = track[:, -1] - track[:, 0]
    wanted = torch.tensor([MOTIONS[parse_motion(p)] for p in prompts], dtype=travel.dtype)
    along = (travel * wanted).sum(dim=1)
    across = (travel * wanted.flip(1)).sum(dim=1).abs()
    pixels = ((clips.float().mean(dim=2) * 255).round() / 255).flatten(1)
    return {"speed": speed, "toward_target": moved_toward(speed, base, target_speed),
            "direction": float((along > across).float().mean()), "accuracy": digit_window_accuracy(windows, prompts),
            "consistency": float(temporal_consistency(windows).mean()),
            "diversity": within_prompt_diversity(pixels, prompts)}
