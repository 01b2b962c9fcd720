"""Progress a user can plan around: how long the finished parts of a long job took, and what is left."""

from __future__ import annotations

import time


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def time_left(what: str, done: int, total: int, started: float) -> str:
    """'round 2/3 done after 3m10s; about 1m35s left' (the rest estimated at the finished parts' mean rate)."""
    elapsed = time.time() - started
    left = elapsed / done * (total - done)
    return f"{what} {done}/{total} done after {_minutes(elapsed)}" + (f"; about {_minutes(left)} left" if left else "")
