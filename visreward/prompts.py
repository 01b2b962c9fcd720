"""Prompts given on the command line: literal strings, or one .txt file with a prompt per line."""

from __future__ import annotations

from pathlib import Path

from .errors import VisrewardError


def read_prompts(values: list[str]) -> list[str]:
    if len(values) == 1 and values[0].endswith(".txt"):
        path = Path(values[0])
        if not path.is_file():
            raise VisrewardError(f"{path}: no such prompts file")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not prompts:
            raise VisrewardError(f"{path}: no prompts in the file")
        return prompts
    if not values:
        raise VisrewardError("no prompts given (--prompts)")
    return values
