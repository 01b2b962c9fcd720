import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import photo

from visreward.core.errors import VisrewardError
from visreward.io.images import SkipLog
from visreward.io.readers import iter_shards, read_images


def _png_bytes(name: str, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    photo(name).resize(size).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_webdataset_tar_with_prompts_from_txt_and_json(tmp_path):
    _write_tar(tmp_path / "shard-0.tar", {
        "a.png": _png_bytes("coffee"), "a.txt": b"a cup of coffee",
        "b.png": _png_bytes("chelsea"), "b.json": json.dumps({"caption": "a cat", "aesthetic": 6}).encode(),
        "c.png": b"not a png",
    })
    items = read_images([tmp_path / "shard-0.tar"])
    records = [record for record, _ in items]
    assert [r.id for r in records] == ["shard-0.tar/a.png", "shard-0.tar/b.png", "shard-0.tar/c.png"]
    assert [r.prompt for r in records] == ["a cup of coffee", "a cat", None]
    assert records[1].metadata == {"aesthetic": 6}
    assert isinstance(items[0][1], bytes)


def test_truncated_tar_is_reported_not_fatal(tmp_path):
    _write_tar(tmp_path / "full.tar", {"a.png": _png_bytes("coffee"), "b.png": _png_bytes("camera")})
    with tarfile.open(tmp_path / "full.tar") as archive:
        second = archive.getmember("b.png")
    data = (tmp_path / "full.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: second.offset_data + second.size // 2])  # cut inside b.png
    skipped = SkipLog()
    items = read_images([tmp_path / "cut.tar"], skipped)
    assert [r.id for r, _ in items] == ["cut.tar/a.png"]  # what came before the cut is kept
    assert len(skipped) == 1 and skipped.entries[0][0].endswith("cut.tar") and "truncated or corrupt" in skipped.entries[0][1]


def test_hugging_face_parquet_image_column(tmp_path):
    import datasets

    data = datasets.Dataset.from_dict({"image": [photo("coffee"), photo("camera")], "text": ["coffee", "camera"]})
    data = data.cast_column("image", datasets.Image())
    data.to_parquet(str(tmp_path / "train.parquet"))
    items = read_images([tmp_path / "train.parquet"])
    assert [r.id for r, _ in items] == ["train.parquet#0", "train.parquet#1"]
    assert [r.prompt for r, _ in items] == ["coffee", "camera"] and isinstance(items[0][1], bytes)


def test_parquet_binary_column_with_ids_and_missing_image_column(tmp_path):
    pq.write_table(pa.table({"id": ["x", "y"], "jpg": [_png_bytes("coffee"), _png_bytes("rocket")]}), tmp_path / "b.parquet")
    assert [r.id for r, _ in read_images([tmp_path / "b.parquet"])] == ["x", "y"]
    pq.write_table(pa.table({"n": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(VisrewardError, match=r"bad\.parquet: no image column"):
        read_images([tmp_path / "bad.parquet"])


def test_path_list_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    photo("coffee").save(tmp_path / "imgs" / "a.png")
    photo("camera").save(tmp_path / "imgs" / "b.png")
    (tmp_path / "list.txt").write_text("# my images\nimgs/b.png\n\nimgs/a.png\n")
    assert [r.id for r, _ in read_images([tmp_path / "list.txt"])] == ["imgs/b.png", "imgs/a.png"]


def test_shards_are_deterministic_and_include_containers_inside_folders(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for i in range(5):
        photo("coffee").resize((16, 16)).save(root / f"{i}.png")
    _write_tar(root / "z.tar", {"k.png": _png_bytes("camera")})
    shards = list(iter_shards([root], SkipLog(), shard_size=2))
    assert [s.index for s in shards] == [0, 1, 2, 3] and [s.name for s in shards] == ["000000", "000001", "000002", "000003"]
    assert [[r.id for r, _ in s.open()] for s in shards] == [
        ["data/0.png", "data/1.png"], ["data/2.png", "data/3.png"], ["data/4.png"], ["data/z.tar/k.png"]]
    again = list(iter_shards([root], SkipLog(), shard_size=2))
    assert [[r.id for r, _ in s.open()] for s in again][1] == ["data/2.png", "data/3.png"]


def test_tar_members_over_the_size_cap_are_skipped_unread(tmp_path, monkeypatch):
    from visreward.io import images

    small, large = _png_bytes("coffee", (8, 8)), _png_bytes("camera", (64, 64))
    _write_tar(tmp_path / "shard.tar", {"a.png": small, "b.png": large, "c.png": small})
    monkeypatch.setattr(images, "MAX_MEMBER_BYTES", len(small))
    skipped = SkipLog()
    items = read_images([tmp_path / "shard.tar"], skipped)
    assert [r.id for r, _ in items] == ["shard.tar/a.png", "shard.tar/c.png"]
    assert skipped.entries == [(f"{tmp_path / 'shard.tar'}/b.png", f"{len(large)} bytes is over the {len(small)} limit")]


def _imagefolder_with_bad_metadata(tmp_path):
    (tmp_path / "a.png").write_bytes(_png_bytes("coffee"))
    (tmp_path / "b.png").write_bytes(_png_bytes("camera"))
    (tmp_path / "metadata.jsonl").write_text("\n".join([
        json.dumps({"file_name": "a.png", "prompt": "coffee"}),
        '{"file_name": "b.png", "prompt": "cam',  # cut short
        json.dumps({"file_name": "gone.png", "prompt": "deleted"}),
        json.dumps({"prompt": "no file name"}),
    ]) + "\n")


def test_bad_metadata_rows_are_reported_and_the_images_still_read(tmp_path):
    _imagefolder_with_bad_metadata(tmp_path)
    skipped = SkipLog()
    records = {record.id: record for record, _ in read_images([tmp_path], skipped)}
    assert {k: r.prompt for k, r in records.items()} == {f"{tmp_path.name}/a.png": "coffee", f"{tmp_path.name}/b.png": None}
    meta = tmp_path / "metadata.jsonl"
    assert [source for source, _ in skipped.entries] == [f"{meta}:2", f"{meta}:3", f"{meta}:4"]
    assert "not valid JSON" in skipped.entries[0][1] and "'gone.png', which does not exist" in skipped.entries[1][1]


def test_bad_metadata_row_is_an_error_naming_file_and_line_in_strict_mode(tmp_path):
    _imagefolder_with_bad_metadata(tmp_path)
    with pytest.raises(VisrewardError, match=r"metadata.jsonl:2: not valid JSON"):
        read_images([tmp_path], SkipLog(strict=True))


def test_symlinked_inputs_read_as_a_hugging_face_snapshot_lays_them_out(tmp_path, rm_dir):
    """Hub snapshots link every file to ../../blobs/<hash>: ids come from the paths as given, not their targets."""
    from visreward.cli import main

    blobs, snapshot = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "0123abc"
    blobs.mkdir(parents=True)
    (snapshot / "images").mkdir(parents=True)
    for name in ("coffee", "rocket"):
        (blobs / f"hash-{name}").write_bytes(_png_bytes(name))
        (snapshot / "images" / f"{name}.png").symlink_to(f"../../../blobs/hash-{name}")
    (blobs / "hash-meta").write_text('{"file_name": "coffee.png", "prompt": "a cup of coffee"}\n')
    (snapshot / "images" / "metadata.jsonl").symlink_to("../../../blobs/hash-meta")
    items = read_images([str(snapshot / "images")], SkipLog(strict=True))
    assert [(record.id, record.prompt) for record, _ in items] == [("images/coffee.png", "a cup of coffee"),
                                                                   ("images/rocket.png", None)]
    assert main(["score", "--model", str(rm_dir), "--output", str(tmp_path / "scores.parquet"), "--no-progress",
                 str(snapshot / "images")]) == 0
    assert pq.read_table(tmp_path / "scores.parquet").column("id").to_pylist() == ["images/coffee.png", "images/rocket.png"]
