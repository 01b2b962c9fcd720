"""Where visreward keeps what it can recompute: features, exported models, the bundled generator."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    return Path(os.environ.get("VISREWARD_CACHE", Path.home() / ".cache" / "visreward"))
