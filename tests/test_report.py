"""The HTML report as a person sees it: rendered by headless Chromium, every image loaded."""

import json
import shutil
import subprocess

import pytest
import torch

from visreward.errors import VisrewardError
from visreward.report import save_grid, write_report


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def run_dir(tmp_path, tiny_generator):
    """A run folder shaped like the demo's, with real generator samples in its grids."""
    assets = tmp_path / "assets"
    assets.mkdir()
    prompts = [f"a handwritten digit {d}" for d in range(10)]
    images, _, _ = tiny_generator.generate_tensors(prompts, 4, seed=0)
    for name in ("base", "best-of-16", "dpo-round-1", "sft-round-1"):
        save_grid(images, 10, assets / f"grid-{name}.png")
    save_grid(images[:8], 4, assets / "highest-scored.png")
    save_grid(images[-8:], 4, assets / "lowest-scored.png")
    row = {"frechet_distance": 20.0, "classifier_accuracy": 0.9, "mean_reward": -1.0, "diversity": 8.0}
    rows = [{"name": name, **row} for name in ("base", "Best-of-4", "Best-of-16", "SFT round 1", "DPO round 1")]
    rounds = {m: [{"round": 1, "rm_heldout": {"auc": 0.7}}] for m in ("dpo", "sft")}
    (tmp_path / "demo_metrics.json").write_text(json.dumps({
        "rows": rows, "judge": "rounds-dpo/round-1/rm", "seconds": 1.0, "rounds": rounds,
        "judge_on_evaluation_split": {"auc": 0.75, "roc": {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1]}},
        "histograms": {"real": torch.randn(50).tolist(), "generated": (torch.randn(50) - 1).tolist()}}))
    return tmp_path


def test_report_is_one_self_contained_page(run_dir):
    page = write_report(run_dir).read_text()
    assert page.count("<img") == 6 and page.count("data:image/png;base64,") == 6
    assert "src=\"http" not in page and "<svg" in page and "Best-of-16" in page
    with pytest.raises(VisrewardError, match="no demo_metrics.json"):
        write_report(run_dir / "assets")


def test_report_renders_in_headless_chromium_with_every_image_loaded(run_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it where apt-get is allowed)")
    report = write_report(run_dir)
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'data-images-total="6"' in result.stdout
    assert 'data-images-loaded="6"' in result.stdout
