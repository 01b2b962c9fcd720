"""Prompts given on the command line: literal strings, a .txt file with a prompt per line, or a .jsonl file
with a row per prompt: {"prompt": ..., "image": ...}, the image (a path, relative to the file) being what an
image-to-video generator starts the prompt's clips from."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import VisrewardError


def read_prompts(values: list[str]) -> list[str]:
    if len(values) == 1 and values[0].endswith(".jsonl"):
        return [row["prompt"] for row in _prompt_rows(Path(values[0]))]
    if len(values) == 1 and values[0].endswith(".txt"):
        path = _existing(Path(values[0]))
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not prompts:
            raise VisrewardError(f"{path}: no prompts in the file")
        return prompts
    if not values:
        raise VisrewardError("no prompts given (--prompts)")
    return values


def read_prompt_images(values: list[str]) -> dict[str, str]:
    """Each prompt's image from a .jsonl prompts file ({} for any other prompts)."""
    if not (len(values) == 1 and values[0].endswith(".jsonl")):
        return {}
    images: dict[str, str] = {}
    path = Path(values[0])
    for line_no, row in enumerate(_prompt_rows(path), 1):
        if "image" not in row:
            continue
        image = path.parent / row["image"]
        if not image.is_file():
            raise VisrewardError(f"{path}:{line_no}: image {row['image']!r} does not exist")
        if images.setdefault(row["prompt"], str(image)) != str(image):
            raise VisrewardError(f"{path}:{line_no}: prompt {row['prompt']!r} has two images; give each image its own prompt")
    return images


def _prompt_rows(path: Path) -> list[dict]:
    rows = []
    for line_no, line in enumerate(_existing(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise VisrewardError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise VisrewardError(f"{path}:{line_no}: no \"prompt\" string")
        rows.append(row)
    if not rows:
        raise VisrewardError(f"{path}: no prompts in the file")
    return rows


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise VisrewardError(f"{path}: no such prompts file")
    return path
