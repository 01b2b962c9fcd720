"""`visreward score`: images in, parquet scores out (reader -> encoder -> head -> writer), at any scale.

Inputs are cut into shards (see io/readers.py). Each process takes `shards[rank::world_size]`
(rank and world size from torchrun, accelerate or SLURM) and writes one parquet file per
shard, atomically, into a parts folder; shards already written are skipped, so a killed
run resumes with nothing lost or duplicated. Memory stays flat: one shard's names and a
few batches of pixels are all that is held.

    visreward score --model rm/ --output scores.parquet DIR          # one process: parts merged at the end
    torchrun --nproc_per_node 8 -m visreward.cli score --model rm/ --output scores/ --device cuda DIR
    visreward merge-scores scores/ --output scores.parquet           # after a multi-process run
    visreward score --engine ray --model rm/ --output scores.parquet DIR   # a Ray Data pipeline (ray_engine.py)
"""


from __future__ import annotations

from ..core.options import MergeConfig, ScoreConfig
from .plan import ScoreRun, merge_parts


def run_score(config: ScoreConfig) -> ScoreRun:
    """`visreward score` on the engine the config names: this process's shards, or a Ray Data pipeline."""
    if config.engine == "ray":
        from .ray_engine import run_ray_score

        return run_ray_score(config)
    from .local_engine import run_local_score

    return run_local_score(config)


__all__ = ["MergeConfig", "ScoreConfig", "ScoreRun", "merge_parts", "run_score"]
