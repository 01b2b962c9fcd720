"""Reward models as Hub citizens: the model card each trained folder carries, and folders loaded from the Hub.

A card is the folder's README.md: YAML front matter (huggingface_hub's ModelCardData: library, tags, the base
model where it is a Hub id) and what a reader needs to trust the model: its base encoder or VLM, the training data's
size and source as the trainer was given them, the held-out metrics and, for a GAN-RM, its calibration.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .atomic import write_text
from .errors import VisrewardError

CARD_NAME = "README.md"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_repo_id(name: str) -> bool:
    return bool(REPO_ID.match(name)) and not Path(name).exists()


def write_model_card(folder: Path, *, kind: str, base: str, data: dict, metrics: dict, usage: str) -> None:
    """README.md in `folder`: `data` maps each input role to (sources, count); `metrics` are shown as JSON."""
    from huggingface_hub import ModelCard, ModelCardData

    base_id = base.partition(":")[2] if ":" in base else base
    card_data = ModelCardData(library_name="visreward", tags=["visreward", "reward-model", kind],
                              base_model=base_id if is_repo_id(base_id) else None)
    rows = "\n".join(f"| {role} | {count} | {', '.join(map(str, sources)) or '-'} |"
                     for role, (sources, count) in data.items())
    body = f"""
# {kind} reward model

Trained with visreward. Base: `{base}`.

## Training data (as given to the trainer)

| role | items | sources |
|---|---:|---|
{rows}

## Held-out metrics

```json
{json.dumps(metrics, indent=2)}
```

## Use

```python
{usage}
```
"""
    write_text(folder / CARD_NAME, f"---\n{card_data.to_yaml()}\n---\n{body}")
    ModelCard.load(folder / CARD_NAME)  # the card reads back as the Hub reads it


def local_folder(path_or_id: str | Path) -> Path:
    """A reward model folder: a local one as it is, a Hub repo id through huggingface_hub's cache (HF_HUB_OFFLINE=1
    reads the cache only)."""
    name = str(path_or_id)
    if not is_repo_id(name):
        return Path(name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, library_name="visreward"))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VisrewardError(f"{name}: not a local folder, and not in the Hub cache or reachable ({first_line})") from None


def repo_file(repo_id: str, filename: str) -> Path | None:
    """One file of a Hub repo through the cache (offline: the cache only), or None when the repo has no such file or
    cannot be reached."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, library_name="visreward"))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        return None
