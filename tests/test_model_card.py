"""Model cards of trained reward models, and reward models loaded from a pre-populated Hub cache with
HF_HUB_OFFLINE=1 (nothing is downloaded)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import visreward

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache_with(folder: Path, cache: Path, repo_id: str) -> Path:
    """The Hub cache's layout for one snapshot of `repo_id` holding `folder`'s files (what a download leaves)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def test_a_trained_gan_rm_carries_a_model_card_the_hub_reads(rm_dir):
    from huggingface_hub import ModelCard

    card = ModelCard.load(rm_dir / "README.md")
    metrics = json.loads((rm_dir / "metrics.json").read_text())
    assert card.data.library_name == "visreward" and {"reward-model", "gan-rm"} <= set(card.data.tags)
    assert card.data.base_model is None  # the offline EfficientNet is not a Hub id
    assert f"| target (label 1) | {metrics['n_target']} |" in card.text
    assert f"| generated (label 0) | {metrics['n_generated']} |" in card.text
    assert f'"auc": {metrics["heldout"]["auc"]}' in card.text and '"feature_distance_p99"' in card.text


def test_a_gan_rm_loads_by_repo_id_from_the_hub_cache_offline(rm_dir, digit_folders, tmp_path):
    cache = hub_cache_with(rm_dir, tmp_path / "hub", "someone/digit-rm")
    images = [str(p) for p in sorted(digit_folders["heldout_target"].glob("*.png"))[:4]]
    local = visreward.load_reward_model(str(rm_dir)).score(images).numpy()
    script = ("import json, sys, visreward; rm = visreward.load_reward_model(sys.argv[1]); "
              "print(json.dumps(rm.score(sys.argv[2:]).tolist()))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", script, "someone/digit-rm", *images], capture_output=True, text=True,
                            env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.abs(np.array(json.loads(result.stdout.strip().splitlines()[-1])) - local).max() < 1e-6
    missing = subprocess.run([sys.executable, "-c", script, "someone/absent", *images], capture_output=True, text=True,
                             env=env, timeout=300, cwd=tmp_path)
    assert missing.returncode != 0 and "someone/absent: not a local folder, and not in the Hub cache" in missing.stderr


def test_a_card_names_a_hub_base_model(tmp_path):
    from huggingface_hub import ModelCard

    from visreward.core.model_card import write_model_card

    write_model_card(tmp_path, kind="gan-rm", base="clip:openai/clip-vit-base-patch32",
                     data={"target (label 1)": (["my/targets"], 300)}, metrics={"heldout": {"auc": 0.9}}, usage="...")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "openai/clip-vit-base-patch32" and "| target (label 1) | 300 | my/targets |" in card.text
