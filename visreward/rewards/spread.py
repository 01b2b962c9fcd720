"""What every reward_fn reports beside its scores."""

from __future__ import annotations

import numpy as np


def spread(scores) -> dict:
    """What every reward_fn reports beside its scores: their mean and sample standard deviation."""
    values = np.asarray(scores, dtype=np.float64)
    return {"reward_mean": float(values.mean()), "reward_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
