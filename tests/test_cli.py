"""The commands as a user runs them: `visreward ...` through main(), files in, files out."""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import photo
from PIL import Image

from visreward.cli import main


@pytest.fixture(scope="module")
def rm_dir(digit_folders, tmp_path_factory):
    output = tmp_path_factory.mktemp("cli") / "rm"
    assert main(["train-rm", "--target", str(digit_folders["target"]), "--generated", str(digit_folders["generated"]),
                 "--output", str(output), "--no-progress"]) == 0
    return output


def test_train_rm_prints_heldout_auc(rm_dir, capsys, digit_folders, tmp_path):
    main(["train-rm", "--target", str(digit_folders["target"]), "--generated", str(digit_folders["generated"]),
          "--output", str(tmp_path / "rm"), "--no-progress", "--epochs", "3"])
    out = capsys.readouterr().out
    assert "held-out AUC" in out and f"wrote {tmp_path / 'rm'}/" in out
    assert json.loads((tmp_path / "rm" / "training_config.json").read_text())["epochs"] == 3


def test_score_writes_parquet_with_stable_ids(rm_dir, digit_folders, tmp_path):
    args = ["score", "--model", str(rm_dir), "--no-progress", str(digit_folders["heldout_target"])]
    assert main(args + ["--output", str(tmp_path / "a.parquet")]) == 0
    assert main(args + ["--output", str(tmp_path / "b.parquet"), "--prob", "--no-cache"]) == 0
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.column_names == ["id", "path", "prompt", "score", "path_bytes"]
    assert b.column_names == ["id", "path", "prompt", "score", "prob", "path_bytes"]
    assert a.num_rows == 20 and a["id"].to_pylist() == b["id"].to_pylist()
    assert a["id"][0].as_py() == "heldout_target/000000.png"
    assert a["prompt"][0].as_py().startswith("a handwritten digit")
    assert a["score"].to_pylist() == pytest.approx(b["score"].to_pylist(), abs=1e-4)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temp files left


def test_score_writes_non_utf8_file_names_escaped_with_their_raw_bytes(rm_dir, digit_folders, tmp_path, capsys):
    folder = tmp_path / "names"
    folder.mkdir()
    image = next(digit_folders["heldout_target"].glob("*.png")).read_bytes()
    (folder / "plain.png").write_bytes(image)
    latin1 = os.fsencode(folder) + b"/latin1_\xe9.png"
    with open(latin1, "wb") as f:
        f.write(image)
    with open(os.fsencode(folder) + b"/broken_\xff.png", "wb") as f:
        f.write(b"not an image")  # its name must also survive the skip report
    assert main(["score", "--model", str(rm_dir), "--no-progress", str(folder), "--output", str(tmp_path / "s.parquet")]) == 0
    assert "broken_\\xff.png" in capsys.readouterr().out
    rows = {row["id"]: row for row in pq.read_table(tmp_path / "s.parquet").to_pylist()}
    assert sorted(rows) == ["names/latin1_\\xe9.png", "names/plain.png"]
    assert rows["names/latin1_\\xe9.png"]["path_bytes"] == latin1 and rows["names/plain.png"]["path_bytes"] is None
    assert rows["names/latin1_\\xe9.png"]["score"] == pytest.approx(rows["names/plain.png"]["score"], abs=1e-5)
    assert "broken_\\xff.png" in (tmp_path / "s.parquet.skipped.txt").read_text()


def test_score_skips_and_reports_corrupt_files_or_fails_in_strict_mode(rm_dir, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(3):
        photo("coffee").save(folder / f"good{i}.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "notes.txt").write_text("not an image")
    output = tmp_path / "scores.parquet"
    assert main(["score", "--model", str(rm_dir), "--output", str(output), "--no-progress", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "wrote 3 scores" in out and "skipped 2 unreadable file(s): " in out
    log = (tmp_path / "scores.parquet.skipped.txt").read_text()
    assert "broken.png" in log and "notes.txt" in log
    (folder / "notes.txt").unlink()  # strict mode stops at the first bad file: let it be the broken image
    assert main(["score", "--model", str(rm_dir), "--output", str(tmp_path / "strict.parquet"), "--strict",
                 "--no-progress", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("visreward: error: ") and "broken.png" in err and "\n" not in err
    assert not (tmp_path / "strict.parquet").exists()


def test_eval_rm_reports_auc_and_writes_json(rm_dir, digit_folders, tmp_path, capsys):
    assert main(["eval-rm", "--model", str(rm_dir), "--target", str(digit_folders["heldout_target"]),
                 "--generated", str(digit_folders["heldout_generated"]), "--output", str(tmp_path / "m.json"),
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("AUC ")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["auc"] > 0.9 and len(metrics["roc"]["fpr"]) == len(metrics["roc"]["tpr"])


def test_yaml_config_with_flag_overrides(digit_folders, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(f"target: [{digit_folders['target']}]\ngenerated: [{digit_folders['generated']}]\n"
                      f"epochs: 2\nhidden-dim: 16\nprogress: false\noutput: {tmp_path / 'rm'}\n")
    assert main(["train-rm", "--config", str(config), "--epochs", "4"]) == 0
    saved = json.loads((tmp_path / "rm" / "training_config.json").read_text())
    assert saved["epochs"] == 4 and saved["hidden_dim"] == 16
    assert json.loads((tmp_path / "rm" / "config.json").read_text())["hidden_dim"] == 16


@pytest.mark.parametrize("args, message", [
    (["train-rm", "--target", "{empty}", "--generated", "{empty}"], "no images or videos found"),
    (["train-rm", "--generated", "{empty}"], "no target images given"),
    (["score", "--model", "{empty}", "{empty}"], "not a reward model folder"),
    (["train-rm", "--config", "{empty}/missing.yaml"], "cannot read config"),
    (["train-rm", "--text-conditioning", "both", "--target", "{one}", "--generated", "{one}"], "no text tower"),
])
def test_bad_input_is_one_line_error_without_traceback(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "a.png")
    code = main([a.replace("{empty}", str(tmp_path / "empty")).replace("{one}", str(tmp_path / "one")) for a in args]
                + ["--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_generate_writes_an_imagefolder(tiny_generator_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a handwritten digit 4\n\na handwritten digit 9\n")
    assert main(["generate", "--generator", str(tiny_generator_dir), "--prompts", str(prompts), "--n", "3",
                 "--seed", "7", "--output", str(tmp_path / "samples")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "samples" / "metadata.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == list(range(7, 13)) and rows[3]["prompt"] == "a handwritten digit 9"
    assert main(["generate", "--generator", str(tiny_generator_dir), "--prompts", "a cat"]) == 2
    assert "is not one of this generator's 10 prompts" in capsys.readouterr().err


def test_installed_command_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "visreward.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train-rm" in result.stdout and "eval-rm" in result.stdout


def test_help_imports_no_framework_and_a_run_only_its_own_command(tmp_path):
    probe = ("import sys\nfrom visreward import cli\n"
             "for argv in {argv}:\n"
             "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('visreward.')))")

    def modules_after(*argvs):
        out = subprocess.run([sys.executable, "-c", probe.format(argv=list(argvs))], capture_output=True, text=True, timeout=120)
        return out.stdout.strip()

    helps = modules_after(["--help"], ["score", "--help"], ["dpo", "--help"], ["serve", "--help"], ["demo", "--help"])
    assert "'torch'" not in helps and "'visreward.scoring'" not in helps and "'visreward.post_training'" not in helps, helps
    run = modules_after(["merge-scores", str(tmp_path / "no-parts"), "--output", str(tmp_path / "s.parquet")])
    assert "'visreward.scoring.plan'" in run
    assert not any(name in run for name in ("visreward.post_training", "visreward.rewards.generative", "visreward.miniature",
                                            "visreward.serving")), run


def test_dpo_run_alone_from_the_command_line_gets_the_learning_rate_the_rounds_use_not_1e_4(monkeypatch):
    from visreward import cli
    from visreward.post_training.rounds import DEFAULT_LR

    seen = []
    name, _, text = cli.COMMANDS["dpo"]
    monkeypatch.setitem(cli.COMMANDS, "dpo", (name, seen.append, text))
    assert main(["dpo", "--generator", "gen", "--pairs", "pairs", "--output", "out"]) == 0
    assert seen[0].lr == 2e-6 == DEFAULT_LR["dpo"]  # 1e-4 over-optimised the bundled digits within 30 steps
