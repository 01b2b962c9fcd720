"""The RewardDance miniature's harness (`visreward demo --judges`) on a 2-size, 1-seed configuration."""

import contextlib
import io
import itertools
import json

import numpy as np
import pytest
import torch
from conftest import built_once

from visreward.cli import main
from visreward.miniature.judges_demo import best_of_n_curve
from visreward.rewards.generative import GenerativeRewardModel


def test_best_of_n_is_the_exact_expectation_over_every_subset():
    """Against brute force: every N-subset of each prompt's pool, the gold of the one the proxy ranks first."""
    proxy = np.array([0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.4, 0.8, 0.6, 0.0])
    gold = np.array([1.0, -1.0, 2.0, 0.5, 3.0, 0.0, 1.5, 0.2, -0.5, 4.0])
    prompts = ["a"] * 6 + ["b"] * 4
    curve = best_of_n_curve(proxy, gold, prompts, sizes=(1, 2, 4))
    for n in (1, 2, 4):
        per_prompt_gold, per_prompt_proxy = [], []
        for rows in (range(6), range(6, 10)):
            subsets = list(itertools.combinations(rows, n))
            per_prompt_gold.append(np.mean([gold[max(s, key=lambda i: proxy[i])] for s in subsets]))
            per_prompt_proxy.append(np.mean([proxy[list(s)].max() for s in subsets]))
        assert curve[str(n)]["gold"] == pytest.approx(np.mean(per_prompt_gold))
        assert curve[str(n)]["proxy"] == pytest.approx(np.mean(per_prompt_proxy))
    assert curve["1"]["gold"] == pytest.approx((gold[:6].mean() + gold[6:].mean()) / 2)


@pytest.fixture(scope="module")
def judges_run(tmp_path_factory, tiny_generator_dir):
    """One harness run, shared by the pytest-xdist workers that run this module's tests."""

    def run(folder):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["demo", "--judges", "--generator", str(tiny_generator_dir), "--output", str(folder / "run"),
                         "--cache-dir", str(folder / "cache"), "--proxies", "generative", "1x", "bradley-terry",
                         "not-pretrained", "--pairs", "160", "--train-per-prompt", "24", "--heldout-per-prompt", "16",
                         "--heldout-pairs", "120", "--bon-pool", "64", "--epochs", "2", "--pretrain-steps", "100",
                         "--rl-proxies", "generative", "--rl-steps", "3"])
        assert code == 0
        (folder / "run" / "printed.txt").write_text(printed.getvalue())

    folder = built_once(tmp_path_factory, "judges-harness", run)
    return folder / "run", folder / "cache"


def test_the_harness_trains_each_proxy_on_noisy_gold_labels_and_measures_it_on_fresh_samples(judges_run):
    out, cache = judges_run
    metrics = json.loads((out / "demo_metrics.json").read_text())
    seed = metrics["per_seed"][0]
    assert abs(seed["label_agreement"] - 0.775) < 0.1  # 160 pairs: within sampling error of the asked-for rate
    assert set(metrics["proxies"]) == {"generative", "1x", "bradley-terry", "not-pretrained"}
    for name, row in seed["proxies"].items():
        assert 0.0 <= row["heldout_accuracy"] <= 1.0 and row["n_train"] == 160
        assert list(row["best_of_n"]) == ["1", "2", "4", "8", "16", "32", "64"]
        # best-of-1 is a random sample: every proxy's is the pool's mean gold, the oracle's too
        assert row["best_of_n"]["1"]["gold"] == pytest.approx(seed["oracle_best_of_n"]["1"]["gold"])
        assert row["best_of_n"]["64"]["gold"] <= seed["oracle_best_of_n"]["64"]["gold"] + 1e-9
    rl = seed["proxies"]["generative"]["rl"]  # GRPO against the proxy, the gold of each step's samples beside it
    assert [row["step"] for row in rl["curve"]] == [1, 2, 3] and "rl" not in seed["proxies"]["1x"]
    assert all(set(row) == {"step", "gold", "proxy", "proxy_group_std", "kl"} for row in rl["curve"])
    assert rl["gold_start"] == pytest.approx(np.mean([row["gold"] for row in rl["curve"]]))  # 3 steps: one window
    assert (out / "seed-0" / "grpo" / "generative" / "metrics.json").exists()
    control = seed["rl_control"]  # GRPO against uniform noise: the gold's drift under GRPO alone
    assert len(control["curve"]) == 3 and 0.0 <= min(row["proxy"] for row in control["curve"])
    assert max(row["proxy"] for row in control["curve"]) <= 1.0 and metrics["rl_control"]["gold_end"][1] == 0.0
    oracle = [seed["oracle_best_of_n"][n]["gold"] for n in seed["oracle_best_of_n"]]
    assert oracle == sorted(oracle) and oracle[-1] > oracle[0]
    assert sorted(p.name for p in (cache / "judges").iterdir()) == ["digits-vlm-v1-1x-s100-seed0",
                                                                   "digits-vlm-v1-4x-s100-seed0"]
    verdicts = metrics["claims"]
    assert verdicts["generative at least as accurate as the regression head (4x)"] in ("confirmed", "mixed", "not confirmed")
    assert "pretraining on captioned digits helps (accuracy)" in verdicts
    peak = metrics["proxies"]["bradley-terry"]["best_of_n_peak"]
    curve = metrics["proxies"]["bradley-terry"]["best_of_n"]
    assert curve[str(peak)]["gold"][0] == max(v["gold"][0] for v in curve.values())
    random = GenerativeRewardModel.from_pretrained(out / "seed-0" / "random-vlms" / "4x")  # never pretrained
    assert not (out / "seed-0" / "random-vlms" / "4x" / "pretraining_metrics.json").exists() and random.tokenizer.get_vocab()["bold"]


def test_the_held_out_pairs_are_labelled_by_the_gold_and_the_proxies_load_as_judges(judges_run):
    out, _ = judges_run
    rows = [json.loads(line) for line in (out / "seed-0" / "pairs-heldout" / "metadata.jsonl").read_text().splitlines()]
    assert rows and all(row["chosen_score"] > row["rejected_score"] for row in rows)
    trained = [json.loads(line) for line in (out / "seed-0" / "pairs-160" / "metadata.jsonl").read_text().splitlines()]
    against = np.mean([row["chosen_score"] < row["rejected_score"] for row in trained])
    assert 0.1 < against < 0.35  # noisy labels: about 22.5% of the chosen have the lower gold
    judge = GenerativeRewardModel.from_pretrained(out / "seed-0" / "proxies" / "generative")
    assert judge.settings["instruction"].startswith("You are judging handwritten digits")
    assert sorted(judge.references) == sorted(f"a handwritten digit {d}" for d in range(10))  # a base sample each
    assert not (out / "seed-0" / "proxies" / "bradley-terry" / "references").exists()


def test_the_report_shows_the_table_the_verdicts_the_curves_and_the_base_beside_the_rl_samples(judges_run):
    out, _ = judges_run
    page = (out / "report.html").read_text()
    assert "RewardDance in miniature" in page and "<td>bradley-terry</td>" in page and "<td>the gold itself</td>" in page
    assert "generative at least as accurate as the regression head (4x): <strong>" in page
    assert page.count("<svg") >= 7  # Best-of-N by paradigm, size; proxy score; GRPO gold, proxy, std; gold vs KL
    assert page.count('src="data:image/png;base64,') == 3  # base, best and most over-optimised GRPO runs
    assert "GRPO against generative: the highest gold at the end" in page


def test_an_unknown_proxy_is_named(tmp_path, capsys):
    assert main(["demo", "--judges", "--proxies", "generative", "bigger", "--output", str(tmp_path / "run")]) == 2
    assert "unknown proxy 'bigger'" in capsys.readouterr().err
    assert main(["demo", "--judges", "--bon-pool", "32", "--output", str(tmp_path / "run")]) == 2
    assert "--bon-pool 32: Best-of-64 needs 64 samples per digit" in capsys.readouterr().err


def test_overoptimisation_is_the_gold_falling_while_the_proxy_still_rises():
    from visreward.miniature.judges_demo import overoptimisation

    steps = range(1, 21)
    rising_proxy = [0.5 + 0.01 * s for s in steps]
    hump = [1.0 - 0.01 * (s - 8) ** 2 for s in steps]  # peaks at step 8, then falls far
    found = overoptimisation([{"step": s, "gold": g, "proxy": p, "proxy_group_std": 0.1}
                              for s, g, p in zip(steps, hump, rising_proxy)], window=1)
    assert found["overoptimisation_onset"] == 8 and found["gold_peak"] == pytest.approx(1.0)
    flat = overoptimisation([{"step": s, "gold": g, "proxy": 0.5, "proxy_group_std": 0.0} for s, g in zip(steps, hump)],
                            window=1)
    assert flat["overoptimisation_onset"] is None  # the proxy never rose: the gold's fall is not its doing
    climbing = overoptimisation([{"step": s, "gold": 0.1 * s, "proxy": p, "proxy_group_std": 0.1}
                                 for s, p in zip(steps, rising_proxy)], window=5)
    assert climbing["overoptimisation_onset"] is None and climbing["gold_end"] == pytest.approx(0.1 * 18)
    assert climbing["late_proxy_group_std"] == pytest.approx(0.1)


def test_the_report_renders_in_headless_chromium_with_its_three_grids_loaded(judges_run, tmp_path):
    from test_report import render

    out, _ = judges_run
    dom, _ = render(out / "report.html", tmp_path, height=4600)
    assert 'data-images-total="3"' in dom and 'data-images-loaded="3"' in dom
    assert 'data-chart-text-outside="0"' in dom


def test_each_proxy_reports_its_own_line_as_it_finishes(judges_run):
    out, _ = judges_run
    lines = (out / "printed.txt").read_text().splitlines()
    for name in ("generative", "1x", "bradley-terry", "not-pretrained"):
        assert sum(line.strip().startswith(f"{name}: held-out accuracy") for line in lines) == 1, name


def test_the_cli_knows_every_proxy_the_harness_defines():
    """options.py lists the names torch-free (for --help); demo_judges defines them: the two lists are one."""
    from visreward.core.options import PROXY_NAMES
    from visreward.miniature.judges_demo import PROXIES

    assert tuple(PROXIES) == PROXY_NAMES


def test_each_seed_draws_its_own_random_judge(tmp_path):
    """The not-pretrained proxy's start: random weights from the seed (a fixed start would hide that spread)."""
    from safetensors.torch import load_file

    from visreward.miniature.judges_demo import random_vlm

    weights = [load_file(random_vlm("1x", tmp_path / str(i), seed) / "model.safetensors")
               for i, seed in enumerate((0, 1, 0))]
    name = next(key for key in weights[0] if key.endswith("q_proj.weight"))
    assert not torch.equal(weights[0][name], weights[1][name])
    assert all(torch.equal(weights[0][key], weights[2][key]) for key in weights[0])
