"""Preference pairs from a score table, written (and read back) in the two formats trainers read.

    visreward make-pairs --scores scores.parquet --output pairs/ --format trl|pickapic

trl: an imagefolder whose metadata.jsonl rows hold `prompt`, `chosen_file_name`,
`rejected_file_name` and both scores; `datasets.load_dataset("imagefolder", data_dir=...)`
turns the two *_file_name columns into image columns.
pickapic: `pairs.parquet` with `caption`, `jpg_0`, `jpg_1` (encoded image bytes) and
`label_0` (1.0 when jpg_0 is preferred), the format Diffusion-DPO's training scripts read.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.atomic import atomic_dir
from ..core.errors import VisrewardError
from ..core.options import FORMATS, PairsConfig
from .formats import read_table

PICKAPIC_FILE = "pairs.parquet"


@dataclass
class Pair:
    prompt: str
    chosen: str      # image path
    rejected: str
    chosen_score: float
    rejected_score: float
    rationale: str | None = None  # why chosen is better (chain-of-thought targets for train-vlm-rm)


def build_pairs(rows: list[dict], margin: float | None = None, group_by: str = "prompt") -> list[Pair]:
    """Best vs worst per group (unless tied); with `margin`, also every other pair of the group
    whose score gap exceeds it, best-first. A group whose gaps are all under the margin still
    gives its best-vs-worst pair."""
    groups: dict[object, list[dict]] = {}
    for row in rows:
        if row.get(group_by) is None:
            raise VisrewardError(f"score row {row.get('id')!r} has no {group_by!r}: pairs need a prompt per image")
        groups.setdefault(row[group_by], []).append(row)
    pairs = []
    for members in groups.values():
        ranked = sorted(members, key=lambda r: r["score"], reverse=True)
        if len(ranked) < 2:
            continue
        candidates = [(ranked[0], ranked[-1])]
        if margin is not None:
            candidates += [(a, b) for a, b in itertools.combinations(ranked, 2)
                           if a["score"] - b["score"] > margin and not (a is ranked[0] and b is ranked[-1])]
        for chosen, rejected in candidates:
            if chosen["score"] > rejected["score"]:
                pairs.append(Pair(chosen["prompt"], chosen["path"], rejected["path"], chosen["score"], rejected["score"]))
    return pairs


def write_pairs(pairs: list[Pair], output: str | os.PathLike, fmt: str = "trl") -> Path:
    if fmt not in FORMATS:
        raise VisrewardError(f"unknown pairs format {fmt!r} (have: {', '.join(FORMATS)})")
    if not pairs:
        raise VisrewardError("no pairs: every group has a single image or equal scores")
    output = Path(output)
    with atomic_dir(output) as tmp:
        if fmt == "trl":
            rows = []
            for i, pair in enumerate(pairs):
                chosen, rejected = f"{i:06d}_chosen{Path(pair.chosen).suffix}", f"{i:06d}_rejected{Path(pair.rejected).suffix}"
                shutil.copyfile(pair.chosen, tmp / chosen)
                shutil.copyfile(pair.rejected, tmp / rejected)
                row = {"prompt": pair.prompt, "chosen_file_name": chosen, "rejected_file_name": rejected,
                       "chosen_score": pair.chosen_score, "rejected_score": pair.rejected_score}
                rows.append(json.dumps(row if pair.rationale is None else {**row, "rationale": pair.rationale}))
            (tmp / "metadata.jsonl").write_text("\n".join(rows) + "\n")
        else:
            table = pa.table({
                "caption": [p.prompt for p in pairs],
                "jpg_0": [Path(p.chosen).read_bytes() for p in pairs],
                "jpg_1": [Path(p.rejected).read_bytes() for p in pairs],
                "label_0": [1.0] * len(pairs),
                "score_0": [p.chosen_score for p in pairs],
                "score_1": [p.rejected_score for p in pairs],
                **({"rationale": [p.rationale for p in pairs]} if any(p.rationale for p in pairs) else {}),
            })
            pq.write_table(table, tmp / PICKAPIC_FILE)
    return output


@dataclass
class PreferencePair:
    """A pair read back for training: encoded image bytes, preferred first."""

    prompt: str
    chosen: bytes
    rejected: bytes
    rationale: str | None = None  # why chosen is better, for chain-of-thought targets


def read_pairs(source: str | os.PathLike) -> list[PreferencePair]:
    """Our trl-style folders, Pick-a-Pic parquet (a file or a folder holding pairs.parquet)."""
    source = Path(source)
    if source.is_dir() and (source / "metadata.jsonl").exists():
        pairs = []
        for line_no, line in enumerate((source / "metadata.jsonl").read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not {"prompt", "chosen_file_name", "rejected_file_name"} <= set(row):
                raise VisrewardError(f"{source / 'metadata.jsonl'}: line {line_no} lacks prompt/chosen_file_name/rejected_file_name")
            pairs.append(PreferencePair(row["prompt"], (source / row["chosen_file_name"]).read_bytes(),
                                        (source / row["rejected_file_name"]).read_bytes(), row.get("rationale")))
        return pairs
    parquet = source / PICKAPIC_FILE if source.is_dir() else source
    if not parquet.exists():
        raise VisrewardError(f"{source}: no pairs found (need metadata.jsonl with chosen/rejected, or {PICKAPIC_FILE})")
    table = read_table(parquet)
    missing = {"caption", "jpg_0", "jpg_1", "label_0"} - set(table.column_names)
    if missing:
        raise VisrewardError(f"{parquet}: not Pick-a-Pic format (missing {', '.join(sorted(missing))})")
    pairs = []
    rationales = table["rationale"].to_pylist() if "rationale" in table.column_names else [None] * table.num_rows
    columns = (table[c].to_pylist() for c in ("caption", "jpg_0", "jpg_1", "label_0"))
    for (caption, first, second, label), rationale in zip(zip(*columns), rationales):
        if label == 0.5:
            continue  # ties carry no preference
        chosen, rejected = (first, second) if label > 0.5 else (second, first)
        pairs.append(PreferencePair(caption, chosen, rejected, rationale))
    return pairs


def run_make_pairs(config: PairsConfig) -> int:
    table = read_table(config.scores)
    group_by = config.group_by or ("group" if "group" in table.column_names else "prompt")
    pairs = build_pairs(table.to_pylist(), config.margin, group_by)
    write_pairs(pairs, config.output, config.format)
    return len(pairs)
