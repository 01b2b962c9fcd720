"""The demo end to end on a briefly trained generator, and its HTML report as a person sees it."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import built_once, missing

from visreward.core.errors import VisrewardError
from visreward.miniature.image_demo import BEST_OF, DemoConfig, run_demo
from visreward.miniature.report import write_report
from visreward.rewards.probes import PROBES


def chromium() -> str:
    """Debian's headless Chromium, or the test is skipped (failed under CI, where make test installs it)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        missing("Debian's chromium is not installed (`make test` installs it where apt-get is allowed)")
    return browser


def render(report: Path, tmp_path: Path, height: int, budget_ms: int = 5000) -> tuple[str, Path]:
    """The report's DOM after its script ran, and a screenshot of its first `height` pixels, in headless Chromium.
    With $VISREWARD_SCREENSHOTS set, the screenshot is also kept there, named after the report's folder."""
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--virtual-time-budget={budget_ms}"]
    result = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    screenshot = tmp_path / "report.png"
    subprocess.run(flags + [f"--window-size=1280,{height}", f"--screenshot={screenshot}", report.as_uri()],
                   capture_output=True, text=True, timeout=120)
    if os.environ.get("VISREWARD_SCREENSHOTS"):
        kept = Path(os.environ["VISREWARD_SCREENSHOTS"]) / f"{report.parent.parent.name}-{report.parent.name}.png"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, kept)
    return result.stdout, screenshot


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, tiny_generator_dir) -> Path:
    """`visreward demo` with every stage but tiny sizes, two seeds (so every number has a spread); run once for
    both test workers."""
    def build(root: Path) -> None:
        run_demo(DemoConfig(output=str(root / "run"), generator=str(tiny_generator_dir), n_target=60,
                            target_sizes=[30, 60], eval_per_digit=3, rounds=1, n=2, repeats=1, negatives_per_prompt=8,
                            pool_per_prompt=1, sft_steps=2, dpo_steps=2, grpo_steps=2, probe_starts=1, probe_samples=10,
                            seeds=2))

    return built_once(tmp_path_factory, "demo", build) / "run"


def test_demo_metrics_hold_every_row_curve_and_probe_over_seeds(demo_run):
    out = demo_run
    metrics = json.loads((out / "demo_metrics.json").read_text())
    assert list(metrics["rows"]) == ["base", "Best-of-4", "Best-of-16", "SFT round 1", "DPO round 1", "GRPO"]
    for row in metrics["rows"].values():
        assert set(row) == {"ink", "toward_target", "accuracy", "frechet", "diversity", "nearest_target"}
        assert all(len(pair) == 2 and pair[1] >= 0 for pair in row.values())  # [mean, sd over 2 seeds]
    assert metrics["rows"]["base"]["toward_target"] == [0.0, 0.0]
    for run in metrics["per_seed"]:  # the headline: choosing by the reward moves the look toward the target's
        assert run["rows"]["Best-of-16"]["toward_target"] > 0.2, run["rows"]["Best-of-16"]
    assert [int(n) for n in metrics["best_of_n"]] == list(BEST_OF)
    assert list(metrics["target_sizes"]) == ["30", "60"]
    assert set(metrics["probes"]) == {"sft-round-1", "dpo-round-1"}
    assert all(set(p) == set(PROBES) for p in metrics["probes"].values())
    assert [run["seed"] for run in metrics["per_seed"]] == [0, 1]
    assert metrics["per_seed"][0]["rows"]["base"]["ink"] != metrics["per_seed"][1]["rows"]["base"]["ink"]
    curve = metrics["per_seed"][0]["grpo"]["curve"]
    assert [row["step"] for row in curve] == [1, 2] and all(0 <= row["accuracy"] <= 1 and row["ink"] > 0 for row in curve)
    assert 9 < metrics["reference"]["target_ink"] < 40  # a mean of 64 pixels in [0,1], bold digits


def test_report_is_one_self_contained_page(demo_run):
    out = demo_run
    page = write_report(out).read_text()
    assert page.count("<img") == 6 and page.count("data:image/png;base64,") == 6  # target, base, Best-of-16, SFT, DPO, GRPO
    assert "src=\"http" not in page and page.count("<svg") == 9 and "GRPO: ink mass" in page and "Best-of-16" in page and "gradient ascent" in page
    with pytest.raises(VisrewardError, match="no demo_metrics.json"):
        write_report(out / "assets")


def test_report_renders_in_headless_chromium_with_every_image_loaded_and_every_label_inside_its_chart(demo_run, tmp_path):
    dom, screenshot = render(write_report(demo_run), tmp_path, height=4200)
    assert 'data-images-total="6"' in dom and 'data-images-loaded="6"' in dom
    assert 'data-chart-text-outside="0"' in dom
    from PIL import Image

    picture = Image.open(screenshot).convert("L")
    assert picture.size == (1280, 4200) and len(set(picture.getdata())) > 20  # a page drawn, not a blank one
