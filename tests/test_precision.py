"""Precision chosen by what the machine has: bf16 only where it is native, never by habit."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from visreward.core import options
from visreward.core.precision import describe, resolve_encoder_precision, resolve_mixed_precision
from visreward.generators.bundled import BUNDLED
from visreward.generators.conditional import sampling_precision


@pytest.fixture
def avx2_only_cpu(monkeypatch):
    """The AMD EPYC the budgets are set on: AVX2, no AVX512_BF16, no AMX."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def test_auto_picks_fp32_on_an_avx2_only_cpu(avx2_only_cpu):
    assert resolve_mixed_precision("auto", "cpu") == "no"
    assert resolve_encoder_precision("auto", "cpu") == "fp32"
    assert sampling_precision("bf16", torch.device("cpu")) == "no"  # trained in bf16 elsewhere: samples in fp32 here
    assert describe("no", "auto", "cpu") == "precision no (auto: no native bf16 on cpu, CPU capability AVX2)"


def test_auto_picks_bf16_where_the_cpu_has_it_and_explicit_choices_stand(bf16_cpu):
    assert resolve_mixed_precision("auto", "cpu") == "bf16"
    assert resolve_encoder_precision("auto", "cpu") == "bf16"
    assert sampling_precision("bf16", torch.device("cpu")) == "bf16"
    assert sampling_precision("no", torch.device("cpu")) == "no"
    assert resolve_mixed_precision("no", "cpu") == "no" and resolve_mixed_precision("fp16", "cpu") == "fp16"


def test_no_default_anywhere_is_bf16():
    configs = [value for value in vars(options).values() if dataclasses.is_dataclass(value)]
    defaults = {(config.__name__, f.name): f.default for config in configs for f in dataclasses.fields(config)
                if "precision" in f.name}
    assert len(defaults) >= 8
    assert {key: value for key, value in defaults.items() if value == "bf16"} == {}
    assert [name for name, (recipe, _) in BUNDLED.items() if recipe.mixed_precision == "bf16"] == []


def test_fine_tuning_records_the_precision_auto_picked(avx2_only_cpu, pairs_for_precision, tiny_generator_dir, tmp_path,
                                                       fresh_accelerator_state):
    from visreward.post_training import DPOConfig, run_dpo

    metrics = run_dpo(DPOConfig(generator=str(tiny_generator_dir), pairs=str(pairs_for_precision), steps=1, batch_size=2,
                                output=str(tmp_path / "dpo"), mixed_precision="auto", log_every=1, progress=False))
    assert metrics["mixed_precision"] == "no"


@pytest.fixture
def pairs_for_precision(tiny_generator, tmp_path):
    from visreward.generators import save_samples
    from visreward.io.digits import digit_prompt
    from visreward.io.pairs import Pair
    from visreward.post_training import write_pairs

    samples = save_samples(tiny_generator.generate([digit_prompt(1)], 2, seed=0), tmp_path / "samples")
    first, second = sorted(samples.glob("*.png"))
    return write_pairs([Pair(digit_prompt(1), str(first), str(second), 1.0, 0.0)], tmp_path / "pairs")


def test_the_gpu_check_runs_in_smoke_mode_and_fills_every_row(tmp_path, fresh_accelerator_state):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu

    result = gpu.main(["--smoke", "--output", str(tmp_path / "gpu.json")])
    rows = result["rows"]
    assert {(r["row"], r["what"], r["precision"]) for r in rows if r["row"] == "training"} == {
        (row, method, precision) for row in ("training",) for method in ("DPO", "SFT") for precision in ("no", "bf16")}
    assert len([r for r in rows if r["row"] == "scoring"]) == 4
    assert all(r.get("images_per_second", r.get("seconds_per_step", r.get("seconds_per_sample"))) > 0 for r in rows)
    assert (tmp_path / "gpu.md").read_text().count("\n| ") == len(rows) + 1
