import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import photo

from visreward import DiscriminativeRewardModel
from visreward.scoring import ScoreConfig, merge_parts, run_score
from visreward.scoring import plan as scoring_module


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score-images") / "imgs"
    folder.mkdir()
    for i, name in enumerate(["coffee", "chelsea", "camera", "astronaut", "rocket", "coffee", "camera"]):
        photo(name).resize((48 + 8 * i, 40)).save(folder / f"{i}.{'jpg' if i % 2 else 'png'}")
    return folder


def _config(rm_dir, images, output, **overrides):
    values = dict(inputs=[str(images)], model=str(rm_dir), output=str(output), shard_size=3, progress=False, backend="torch")
    values.update(overrides)
    return ScoreConfig(**values)


def test_single_process_merges_parts_in_order(rm_dir, images, tmp_path):
    run = run_score(_config(rm_dir, images, tmp_path / "s.parquet"))
    table = pq.read_table(tmp_path / "s.parquet")
    assert run.rows == 7 and run.shards_done == 3 and table["id"].to_pylist() == [f"imgs/{i}.{'jpg' if i % 2 else 'png'}" for i in range(7)]
    assert not (tmp_path / "s.parquet.parts").exists()
    direct = DiscriminativeRewardModel.from_pretrained(rm_dir).score(table["path"].to_pylist())
    assert table["score"].to_pylist() == pytest.approx(direct.tolist(), abs=1e-4)


def test_killed_run_resumes_without_losing_or_duplicating(rm_dir, images, tmp_path, monkeypatch):
    real_write = scoring_module.write_table
    calls = []

    def dying_write(table, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing the second shard
        real_write(table, path)

    monkeypatch.setattr(scoring_module, "write_table", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run_score(_config(rm_dir, images, tmp_path / "parts"))
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["part-000000.parquet"]  # no half-written file
    monkeypatch.setattr(scoring_module, "write_table", real_write)
    run = run_score(_config(rm_dir, images, tmp_path / "parts"))
    assert run.shards_resumed == 1 and run.shards_done == 2 and run.rows == 4
    merge_parts(tmp_path / "parts", tmp_path / "merged.parquet")
    run_score(_config(rm_dir, images, tmp_path / "reference.parquet"))
    assert pq.read_table(tmp_path / "merged.parquet").equals(pq.read_table(tmp_path / "reference.parquet"))


def test_explicit_ranks_write_disjoint_parts(rm_dir, images, tmp_path):
    for rank in (0, 1):
        run_score(_config(rm_dir, images, tmp_path / "parts", rank=rank, world_size=2))
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [f"part-00000{i}.parquet" for i in range(3)]


def test_two_processes_with_gloo_match_one_process(rm_dir, images, tmp_path):
    worker = Path(__file__).with_name("score_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
         str(rm_dir), str(images), str(tmp_path / "parts")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rank 0 wrote 2 shards" in result.stdout and "rank 1 wrote 1 shards" in result.stdout
    merge_parts(tmp_path / "parts", tmp_path / "two.parquet")
    run_score(_config(rm_dir, images, tmp_path / "one.parquet"))
    two, one = pq.read_table(tmp_path / "two.parquet"), pq.read_table(tmp_path / "one.parquet")
    assert two["id"].to_pylist() == one["id"].to_pylist()
    assert two["score"].to_pylist() == one["score"].to_pylist()


def test_onnx_backend_matches_eager_and_reduced_precision_has_its_own_cache_key(rm_dir, images):
    from visreward.encoders import load_encoder

    paths = sorted(str(p) for p in images.iterdir())
    eager = DiscriminativeRewardModel.from_pretrained(rm_dir).score(paths)
    onnx_model = DiscriminativeRewardModel.from_pretrained(rm_dir, backend="onnx")
    assert onnx_model.encoder.backend == "onnx"
    assert (onnx_model.score(paths) - eager).abs().max() < 1e-3
    assert load_encoder(precision="bf16").cache_key.endswith("|bf16")
    assert load_encoder(backend="onnx").cache_key == load_encoder().cache_key


def test_merge_without_parts_is_an_error(tmp_path):
    from visreward.core.errors import VisrewardError

    with pytest.raises(VisrewardError, match="no score parts"):
        merge_parts(tmp_path, tmp_path / "x.parquet")


def test_a_rerun_refuses_parts_scored_with_another_shard_size_or_from_other_images(rm_dir, images, tmp_path):
    import shutil

    from visreward.core.errors import VisrewardError

    folder = tmp_path / "imgs"
    shutil.copytree(images, folder)
    parts = tmp_path / "parts"
    first = run_score(_config(rm_dir, folder, parts))
    assert (first.shards_done, first.shards_resumed) == (3, 0)
    again = run_score(_config(rm_dir, folder, parts))
    assert (again.shards_done, again.shards_resumed) == (0, 3)  # the same images and settings: every part is taken
    with pytest.raises(VisrewardError, match=r"part-000000\.parquet: scored from other shard_size, items than this run's"):
        run_score(_config(rm_dir, folder, parts, shard_size=2))  # before: shards of 2 over parts of 3, rows lost
    shutil.copyfile(folder / "0.png", folder / "00.png")  # sorts first: every shard's items move by one
    with pytest.raises(VisrewardError, match=r"part-000000\.parquet: scored from other items than this run's"):
        run_score(_config(rm_dir, folder, parts))
    assert pq.read_table(parts / "part-000000.parquet").num_rows == 3  # nothing was overwritten
