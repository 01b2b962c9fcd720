"""Who am I among how many: rank and world size from the launcher's environment.

torchrun and `accelerate launch` set RANK / WORLD_SIZE; `srun` sets SLURM_PROCID /
SLURM_NTASKS; a SLURM job array sets SLURM_ARRAY_TASK_ID (with SLURM_ARRAY_TASK_COUNT
or the MIN/MAX ids). Scoring needs no collectives: each rank owns
the shards whose index is its rank modulo the world size, and writes their files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import VisrewardError


@dataclass(frozen=True)
class Placement:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def owns(self, shard_index: int) -> bool:
        return shard_index % self.world_size == self.rank


def _int(env: dict, key: str) -> int | None:
    value = env.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise VisrewardError(f"environment variable {key}={value!r} is not an integer") from None


def _array_task(env: dict) -> tuple[int, int]:
    """(index, count) of this SLURM job-array task; (0, 1) outside an array."""
    task = _int(env, "SLURM_ARRAY_TASK_ID")
    if task is None:
        return 0, 1
    count = _int(env, "SLURM_ARRAY_TASK_COUNT")
    low = _int(env, "SLURM_ARRAY_TASK_MIN") or 0
    if count is None:
        high = _int(env, "SLURM_ARRAY_TASK_MAX")
        count = (high - low + 1) if high is not None else None
    if count is None:
        raise VisrewardError("SLURM_ARRAY_TASK_ID is set but not the array's size (SLURM_ARRAY_TASK_COUNT)")
    return task - low, count


def placement_from_env(env: dict | None = None, rank: int | None = None, world_size: int | None = None) -> Placement:
    """Explicit rank/world_size win. Otherwise the processes of one launch (torchrun/accelerate,
    else srun's SLURM tasks) nest inside the tasks of a SLURM job array: array task a of A, process
    r of W is rank a*W + r of A*W. So an array that also exports SLURM_NTASKS=1 still splits the work."""
    env = dict(os.environ if env is None else env)
    local_rank = _int(env, "LOCAL_RANK") or 0
    if rank is None and world_size is None:
        rank, world_size = 0, 1
        for rank_key, size_key in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
            if _int(env, size_key) is not None:
                rank, world_size = _int(env, rank_key) or 0, _int(env, size_key)
                if rank_key == "SLURM_PROCID":
                    local_rank = _int(env, "SLURM_LOCALID") or 0
                break
        task, tasks = _array_task(env)
        rank, world_size = task * world_size + rank, tasks * world_size
    rank, world_size = rank or 0, world_size or 1
    if not 0 <= rank < world_size:
        raise VisrewardError(f"rank {rank} is outside world size {world_size}")
    return Placement(rank, world_size, local_rank)


def local_device(device: str, placement: Placement | None = None) -> str:
    """'cuda' means this process's own GPU (its local rank), not GPU 0 on every rank."""
    if device != "cuda":
        return device
    return f"cuda:{(placement or placement_from_env()).local_rank}"
