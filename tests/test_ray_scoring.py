"""`visreward score --engine ray` on a local Ray instance (2 CPUs): the same ids, scores, parts and skip reports
as the local engine, on folders, a WebDataset tar, a parquet file and broken files of every kind."""

import io
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import missing, photo

from visreward.scoring import ScoreConfig, run_score

try:
    import ray
except ImportError:
    missing("ray is not installed (pip install visreward[ray])")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def _png(name: str, size=(40, 36)) -> bytes:
    buffer = io.BytesIO()
    photo(name).resize(size).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory):
    """11 readable images over a folder (with a prompt file), two tars and a parquet file, and 6 broken inputs:
    a corrupt PNG, a text file, an empty JPEG, a tar member that is not an image, a truncated tar, a parquet
    row without bytes."""
    root = tmp_path_factory.mktemp("mixed")
    folder = root / "folder"
    (folder / "sub").mkdir(parents=True)
    names = ["coffee", "chelsea", "camera", "astronaut", "rocket", "coffee"]
    for i, name in enumerate(names):
        photo(name).resize((44 + 4 * i, 40)).save(folder / ("sub" if i > 3 else ".") / f"{i}.{'jpg' if i % 2 else 'png'}")
    (folder / "metadata.jsonl").write_text('{"file_name": "0.png", "prompt": "a cup of coffee"}\n')
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / "empty.jpg").write_bytes(b"")
    members = {"a.png": _png("camera"), "a.txt": b"a camera", "b.png": _png("rocket"), "c.png": b"garbage"}
    with tarfile.open(root / "shard.tar", "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with tarfile.open(root / "shard.tar") as archive:
        cut = archive.getmember("b.png")
    (root / "cut.tar").write_bytes((root / "shard.tar").read_bytes()[: cut.offset_data + cut.size // 2])  # inside b.png
    rows = [{"bytes": _png(n), "path": None} for n in ("chelsea", "astronaut")] + [{"bytes": None, "path": None}]
    pq.write_table(pa.table({"image": rows, "text": ["a cat", "a person", "nothing"]}), root / "data.parquet")
    return [str(folder), str(root / "shard.tar"), str(root / "cut.tar"), str(root / "data.parquet")]


def _config(rm_dir, inputs, output, **overrides):
    values = dict(inputs=inputs, model=str(rm_dir), output=str(output), shard_size=3, batch_size=2, progress=False,
                  no_cache=True, prob=True)
    return ScoreConfig(**{**values, **overrides})


def test_the_ray_engine_writes_exactly_the_local_engines_scores_and_skip_report_and_resumes(rm_dir, mixed_inputs,
                                                                                              local_ray, tmp_path):
    from visreward.scoring import merge_parts

    local = run_score(_config(rm_dir, mixed_inputs, tmp_path / "local.parquet"))
    ray_run = run_score(_config(rm_dir, mixed_inputs, tmp_path / "parts", engine="ray", ray_actors=2))
    assert (ray_run.rows, ray_run.shards_done) == (local.rows, local.shards_done) == (11, 6)
    merge_parts(tmp_path / "parts", tmp_path / "ray.parquet")
    ours, theirs = pq.read_table(tmp_path / "ray.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert ours.column_names == ["id", "path", "prompt", "score", "prob", "path_bytes"] and theirs.num_rows == 11
    assert ours.to_pydict() == theirs.to_pydict()  # ids, paths, prompts, and every score to the last bit
    report = (tmp_path / "ray.parquet.skipped.txt").read_text()
    assert report == (tmp_path / "local.parquet.skipped.txt").read_text()
    assert sorted(line.split("\t")[0].rsplit("/", 1)[-1] for line in report.splitlines()) == [
        "broken.png", "c.png", "cut.tar", "data.parquet#2", "empty.jpg", "notes.txt"]

    part = sorted((tmp_path / "parts").glob("part-*.parquet"))[2]
    lost = pq.read_table(part).num_rows
    part.unlink()  # as if the job died while this shard was in flight
    again = run_score(_config(rm_dir, mixed_inputs, tmp_path / "parts", engine="ray"))
    assert (again.shards_resumed, again.shards_done, again.rows) == (5, 1, lost)
    merge_parts(tmp_path / "parts", tmp_path / "resumed.parquet")
    assert pq.read_table(tmp_path / "resumed.parquet").equals(ours)


def test_the_ray_engine_scores_videos_and_frame_folders_as_the_local_engine_does(video_rm, motion_clips, local_ray,
                                                                                tmp_path):
    import shutil

    from PIL import Image

    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("000.mp4", "001.mp4", "002.mp4"):
        shutil.copy(motion_clips / "gliding" / name, folder / name)
    shutil.copy(motion_clips / "shaking" / "050.mp4", folder / "050.mp4")
    (folder / "frames").mkdir()
    for i in range(6):
        Image.new("RGB", (28, 28), (40 * i, 0, 0)).save(folder / "frames" / f"{i:02d}.png")
    (folder / "broken.mp4").write_bytes(b"not a video")
    common = dict(inputs=[str(folder)], model=str(video_rm[0]), shard_size=2, batch_size=2, progress=False, no_cache=True)
    run_score(ScoreConfig(output=str(tmp_path / "local.parquet"), **common))
    run_score(ScoreConfig(output=str(tmp_path / "ray.parquet"), engine="ray", **common))
    ours, theirs = pq.read_table(tmp_path / "ray.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert ours["id"].to_pylist() == ["clips/000.mp4", "clips/001.mp4", "clips/002.mp4", "clips/050.mp4", "clips/frames"]
    assert ours.to_pydict() == theirs.to_pydict()
    assert (tmp_path / "ray.parquet.skipped.txt").read_text() == (tmp_path / "local.parquet.skipped.txt").read_text()
    assert "broken.mp4" in (tmp_path / "ray.parquet.skipped.txt").read_text()
