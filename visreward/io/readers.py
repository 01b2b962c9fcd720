"""Readers: every kind of image input as a stream of shards, each a lazy stream of images.

Inputs (mixed freely):
  FOLDER          recursive; `metadata.jsonl` prompts (imagefolder); .tar and .parquet inside are read too;
                  with clips=True (video rewards) a sub-folder of still frames is one clip
  IMAGE FILE      one image (or video: .mp4 .webm .mkv .mov .avi .m4v)
  LIST.txt        one image path per line (relative to the list's folder)
  SHARD.tar       WebDataset: key.jpg/png/... (or key.mp4/webm/...) with key.txt or key.json (prompt/caption/text)
  DATA.parquet    a Hugging Face datasets image column ({bytes, path} struct) or a binary column

Folders and lists are cut into shards of `shard_size` images in a fixed order; each .tar
and .parquet file is its own shard. Shard numbering is deterministic, so a process can
take `shards[rank::world_size]` and a rerun can skip shards already written. Nothing
holds more than one shard's file names in memory, whatever the number of images.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar, Union

from ..core.errors import VisrewardError
from . import images
from .images import IMAGE_EXTENSIONS, PROMPT_KEYS, ImageRecord, SkipLog
from .videos import VIDEO_EXTENSIONS

METADATA_FILE = "metadata.jsonl"
CONTAINER_EXTENSIONS = (".tar", ".parquet")
T = TypeVar("T")
ImageSource = Union[str, bytes]
Item = tuple[ImageRecord, ImageSource]


@dataclass(frozen=True)
class Shard:
    index: int
    name: str
    open: Callable[[], Iterator[Item]]
    container: Path | None = None  # a .tar or .parquet shard, read when opened (None: listed files)
    base: Path | None = None  # what its ids are relative to


def _prompt_of(row: dict) -> str | None:
    for key in PROMPT_KEYS:
        if isinstance(row.get(key), str):
            return row[key]
    return None


def _read_metadata(folder: Path, skipped: SkipLog, present: set[str]) -> dict[str, dict]:
    """file_name (relative to `folder`, posix) -> its metadata row. A line that is not a JSON
    object with a file_name, or that names a file not there, is reported and left out (an error
    with --strict): one bad row does not refuse the images the other rows describe. `present`: the
    folder's own file names, so rows naming them need no file-system call."""
    meta_path = folder / METADATA_FILE
    rows: dict[str, dict] = {}
    for line_no, line in enumerate(meta_path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            skipped.skip(f"{meta_path}:{line_no}", f"not valid JSON ({e.msg}); its image gets no metadata")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            skipped.skip(f"{meta_path}:{line_no}", "no 'file_name'; the row is ignored")
            continue
        name = Path(row["file_name"]).as_posix()
        if not (name in present if "/" not in name else (folder / name).exists()):
            skipped.skip(f"{meta_path}:{line_no}", f"names {row['file_name']!r}, which does not exist")
            continue
        rows[name] = row
    return rows


def _absolute(path: str | os.PathLike) -> Path:
    """The path as given, made absolute without following links: hub snapshots link every file to ../../blobs/,
    outside the folder the ids are relative to."""
    return Path(os.path.abspath(path))


def _record(path: Path, base: Path, row: dict) -> ImageRecord:
    extra = {k: v for k, v in row.items() if k != "file_name" and k not in PROMPT_KEYS}
    return ImageRecord(id=_absolute(path).relative_to(base).as_posix(), path=str(path), prompt=_prompt_of(row), metadata=extra)


def _is_frame_folder(folder: Path, dirnames: list[str], filenames: list[str]) -> bool:
    """A leaf folder of still images and no videos: one clip, where videos are expected."""
    suffixes = {Path(name).suffix.lower() for name in filenames if not name.startswith(".")}
    return not dirnames and bool(suffixes & IMAGE_EXTENSIONS) and not suffixes & VIDEO_EXTENSIONS


def _walk(root: Path, base: Path, skipped: SkipLog, containers: list[Path], clips: bool = False) -> Iterator[Item]:
    """Image and video files under `root` in sorted order; containers found on the way are noted, not read.
    clips: a sub-folder of still frames is one item (a clip), not one item per frame."""
    found = False
    metadata: dict[Path, dict] = {}  # rows not yet matched; a metadata.jsonl may describe sub-folders
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        folder = Path(dirpath)
        if METADATA_FILE in filenames:
            present = set(filenames) | set(dirnames)
            metadata.update({_absolute(folder / name): row for name, row in _read_metadata(folder, skipped, present).items()})
        if clips and folder != root and _is_frame_folder(folder, dirnames, filenames):
            found = True
            yield _record(folder, base, metadata.pop(_absolute(folder), {})), str(folder)
            continue
        for name in sorted(filenames):
            if name.startswith(".") or name == METADATA_FILE:
                continue
            path = folder / name
            suffix = path.suffix.lower()
            if suffix in CONTAINER_EXTENSIONS:
                containers.append(path)
                found = True
            elif suffix not in IMAGE_EXTENSIONS and suffix not in VIDEO_EXTENSIONS:
                skipped.skip(str(path), f"not an image or video file (extension '{path.suffix}')")
            else:
                found = True
                yield _record(path, base, metadata.pop(_absolute(path), {})), str(path)
    if not found:
        raise VisrewardError(f"{root}: no images or videos found (looked for "
                             f"{', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))}, .tar, .parquet)")


def _list_file(path: Path, base: Path) -> Iterator[Item]:
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            image = (path.parent / line) if not os.path.isabs(line) else Path(line)
            absolute = _absolute(image)
            yield ImageRecord(id=absolute.relative_to(base).as_posix() if absolute.is_relative_to(base)
                              else absolute.as_posix(), path=str(image)), str(image)


def _tar_items(path: Path, base: Path, skipped: SkipLog) -> Iterator[Item]:
    """WebDataset convention: members sharing a key (name up to the first dot) belong together."""
    prefix = _absolute(path).relative_to(base).as_posix()
    try:
        archive = tarfile.open(path, mode="r|*")
    except (OSError, tarfile.TarError) as e:
        skipped.skip(str(path), f"not a readable tar file ({e})")
        return
    pending: dict[str, dict] = {}

    def flush(key: str) -> Iterator[Item]:
        group = pending.pop(key)
        row = {}
        if "json" in group:
            try:
                row = json.loads(group["json"])
            except json.JSONDecodeError:
                row = {}
        prompt = _prompt_of(row) or (group["txt"].decode("utf-8", "replace").strip() if "txt" in group else None)
        for ext, data in group.items():
            if "." + ext in IMAGE_EXTENSIONS or "." + ext in VIDEO_EXTENSIONS:
                yield ImageRecord(id=f"{prefix}/{key}.{ext}", path=f"{path}/{key}.{ext}", prompt=prompt,
                                  metadata={k: v for k, v in row.items() if k not in PROMPT_KEYS}), data

    current = None
    try:
        with archive:
            for member in archive:
                if not member.isfile():
                    continue
                if member.size > images.MAX_MEMBER_BYTES:
                    skipped.skip(f"{path}/{member.name}", f"{member.size} bytes is over the {images.MAX_MEMBER_BYTES} limit")
                    continue
                directory, _, name = member.name.rpartition("/")
                stem, _, ext = name.partition(".")
                key = f"{directory}/{stem}" if directory else stem
                if current is not None and key != current and current in pending:
                    yield from flush(current)
                current = key
                pending.setdefault(key, {})[ext.lower()] = archive.extractfile(member).read()
    except (OSError, tarfile.TarError, EOFError) as e:
        skipped.skip(str(path), f"tar file is truncated or corrupt ({e})")
    for key in list(pending):
        yield from flush(key)


def _image_column(schema) -> str:
    import pyarrow as pa

    for field in schema:
        if pa.types.is_struct(field.type) and field.type.get_field_index("bytes") >= 0:
            return field.name
    for field in schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            return field.name
    raise VisrewardError("no image column (a {bytes, path} struct as datasets writes, or a binary column)")


def _parquet_items(path: Path, base: Path, skipped: SkipLog, batch_rows: int = 256) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    prefix = _absolute(path).relative_to(base).as_posix()
    try:
        table = pq.ParquetFile(path)
        column = _image_column(table.schema_arrow)
    except VisrewardError as e:
        raise VisrewardError(f"{path}: {e}") from None
    except (OSError, pa.ArrowInvalid) as e:
        skipped.skip(str(path), f"not a readable parquet file ({str(e).splitlines()[0]})")
        return
    names = set(table.schema_arrow.names)
    prompt_column = next((key for key in PROMPT_KEYS if key in names), None)
    wanted = [column] + [c for c in (prompt_column, "id") if c and c in names]
    row = 0
    for batch in table.iter_batches(batch_size=batch_rows, columns=wanted):
        values = batch.to_pydict()
        for i, image in enumerate(values[column]):
            data = image.get("bytes") if isinstance(image, dict) else image
            record_id = str(values["id"][i]) if "id" in values else f"{prefix}#{row}"
            record = ImageRecord(id=record_id, path=f"{path}#{row}",
                                 prompt=values[prompt_column][i] if prompt_column else None)
            row += 1
            if data is None:
                skipped.skip(record.path, "no image bytes in this row")
                continue
            yield record, data


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def iter_shards(inputs: Sequence[str | os.PathLike], skipped: SkipLog, shard_size: int = 10_000,
                clips: bool = False) -> Iterator[Shard]:
    """Shards of all inputs, numbered in a fixed order (clips: folders of frames are one item each)."""
    if not inputs:
        raise VisrewardError("no images given")
    base = Path(os.path.commonpath([_absolute(raw).parent for raw in inputs]))
    index = 0

    def shard(name: str, opener: Callable[[], Iterator[Item]], container: Path | None = None) -> Shard:
        nonlocal index
        index += 1
        return Shard(index - 1, name, opener, container, base)

    for raw in inputs:
        path = Path(raw)
        suffix = path.suffix.lower()
        containers: list[Path] = []
        if path.is_dir():
            streams = chunked(_walk(path, base, skipped, containers, clips), shard_size)
        elif path.is_file() and suffix == ".txt":
            streams = chunked(_list_file(path, base), shard_size)
        elif path.is_file() and suffix in CONTAINER_EXTENSIONS:
            streams, containers = iter(()), [path]
        elif path.is_file():
            streams = iter([[(ImageRecord(id=_absolute(path).relative_to(base).as_posix(), path=str(path)), str(path))]])
        else:
            raise VisrewardError(f"{path}: no such file or folder")
        for chunk in streams:
            yield shard(f"{index:06d}", lambda chunk=chunk: iter(chunk))
        for container in containers:
            yield shard(f"{index:06d}", lambda c=container: read_container(c, base, skipped), container)


def read_container(path: Path, base: Path, skipped: SkipLog) -> Iterator[Item]:
    """The items of a WebDataset .tar or a .parquet file; unreadable containers and rows go to `skipped`."""
    return (_tar_items if path.suffix.lower() == ".tar" else _parquet_items)(path, base, skipped)


def read_images(inputs: Sequence[str | os.PathLike], skipped: SkipLog | None = None, clips: bool = False) -> list[Item]:
    """Every image (or clip) of the inputs at once (for training sets, which fit in memory)."""
    skipped = skipped if skipped is not None else SkipLog()
    items: list[Item] = []
    for shard in iter_shards(inputs, skipped, clips=clips):
        items.extend(shard.open())
    seen: set[str] = set()
    unique = [item for item in items if not (item[0].id in seen or seen.add(item[0].id))]
    return unique


def find_images(inputs: Sequence[str | os.PathLike], skipped: SkipLog | None = None) -> list[ImageRecord]:
    """Image records of the inputs; ids are paths relative to the common parent of the inputs."""
    return [record for record, _ in read_images(inputs, skipped)]
