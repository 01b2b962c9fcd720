"""Images in: decoding, validation and conversion to RGB; records and the skip log.

Every way an image can be bad (empty, truncated, not an image, a decompression bomb)
becomes an `ImageLoadError` naming the file; `SkipLog` turns those into a skipped-and-
reported file, or, in strict mode, into an error.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.atomic import write_text
from ..core.errors import VisrewardError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
)
PROMPT_KEYS = ("prompt", "text", "caption")
# Larger than any real photo or generation, small enough that one file cannot exhaust memory.
MAX_PIXELS = 16384 * 16384
MAX_MEMBER_BYTES = 256 * 2**20  # a tar member over this is skipped unread, like an image over MAX_PIXELS

ImageInput = Union[str, os.PathLike, Image.Image, torch.Tensor]


class ImageLoadError(VisrewardError):
    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


@dataclass(frozen=True)
class ImageRecord:
    """One image to score or train on. `id` is stable across runs (a relative path)."""

    id: str
    path: str | None = None
    prompt: str | None = None
    metadata: dict = field(default_factory=dict, compare=False, hash=False)


def printable(name: str) -> str:
    """`name` as valid UTF-8: bytes a file name held that are not UTF-8 (which Python keeps as
    surrogate escapes) become \\xNN, so the name can be written to parquet, logs and terminals."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte, e.g. from JSON "\\ud800"
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def raw_name(name: str) -> bytes | None:
    """The original bytes of a file name that is not valid UTF-8 (None for every other name)."""
    try:
        name.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return os.fsencode(name)


class SkipLog:
    """Collects unreadable files: reported and skipped, or an error in strict mode."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.entries: list[tuple[str, str]] = []

    def skip(self, source: str, reason: str) -> None:
        if self.strict:
            raise ImageLoadError(source, reason)
        self.entries.append((source, reason))

    def __len__(self) -> int:
        return len(self.entries)

    def summary(self, log_path: str | os.PathLike | None = None, shown: int = 3) -> str:
        if not self.entries:
            return "no files skipped"
        names = ", ".join(printable(Path(src).name) for src, _ in self.entries[:shown])
        more = f" and {len(self.entries) - shown} more" if len(self.entries) > shown else ""
        where = f"; full list in {log_path}" if log_path else ""
        return f"skipped {len(self.entries)} unreadable file(s): {names}{more}{where}"

    def write(self, log_path: str | os.PathLike) -> None:
        write_text(log_path, "".join(f"{printable(src)}\t{printable(reason)}\n" for src, reason in self.entries))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, LA, P, RGBA, CMYK, 16-bit, float) to 8-bit RGB; alpha over white."""
    if image.mode == "F" or image.mode.startswith("I"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode == "F" and array.max(initial=0.0) <= 1.0:
            array = array * 255.0
        elif image.mode != "F" and (image.mode.startswith("I;16") or array.max(initial=0) > 255):
            array = array / 257.0
        image = Image.fromarray(np.clip(array, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(data: bytes, source: str, draft_size: int | None = None) -> Image.Image:
    """Encoded bytes to an RGB image with EXIF orientation applied; ImageLoadError if bad."""
    if not data:
        raise ImageLoadError(source, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageLoadError(source, f"{width}x{height} pixels is over the {MAX_PIXELS} limit (decompression bomb?)")
            if draft_size and image.format == "JPEG":
                # JPEG can decode at 1/2, 1/4, 1/8 scale: much faster when the model wants far fewer pixels.
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(source, "not a readable image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(source, f"decompression bomb ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageLoadError(source, f"corrupt or truncated image ({e})") from None


def read_bytes(source: str | os.PathLike | bytes) -> bytes:
    """The encoded bytes of an image: read from a path, or already in hand (tar members, parquet rows)."""
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as e:
        raise ImageLoadError(str(source), e.strerror or str(e)) from None


def load_image(source: str | os.PathLike | Image.Image, draft_size: int | None = None) -> Image.Image:
    if isinstance(source, Image.Image):
        return to_rgb(source)
    return decode_image(read_bytes(source), str(source), draft_size)


def fit_image(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """An RGB image -> uint8 [3,H,W] of `size` (height, width): shortest edge resized, centre-cropped."""
    height, width = size
    scale = max(height / image.height, width / image.width)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), Image.BICUBIC)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return torch.from_numpy(np.array(resized.crop((left, top, left + width, top + height)))).permute(2, 0, 1)


def clamp_unit(images: torch.Tensor) -> torch.Tensor:
    """Clamp to [0,1] going forward, pass gradients through unchanged going back (straight-through):
    a hard clamp would silence reward gradients wherever a generator overshoots."""
    return images + (images.clamp(0, 1) - images).detach()


def quantize(images: torch.Tensor) -> torch.Tensor:
    """[3,H,W] or [B,3,H,W] float in [0,1] (1 channel allowed) to uint8 RGB, as saving to PNG would."""
    if images.ndim not in (3, 4) or images.shape[-3] not in (1, 3):
        raise VisrewardError(f"image tensors must be [3,H,W] or [B,3,H,W], got {list(images.shape)}")
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return pixels.expand(*pixels.shape[:-3], 3, *pixels.shape[-2:])


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """A [3,H,W] (or [1,H,W]) float tensor in [0,1] to an RGB PIL image."""
    return Image.fromarray(np.ascontiguousarray(quantize(image).permute(1, 2, 0).numpy()))


def as_image_batch(images):
    """RL trainers' batches -> [B,3,H,W] float in [0,1]: numpy or torch, uint8 or float, NCHW or NHWC,
    1 or 3 channels. Anything else (paths, PIL images, lists) is returned as it is."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        return images
    if images.shape[1] not in (1, 3) and images.shape[-1] in (1, 3):
        images = images.permute(0, 3, 1, 2)
    if images.shape[1] not in (1, 3):
        raise VisrewardError(f"an image batch must be [B,3,H,W] or [B,H,W,3], got {list(images.shape)}")
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def as_records(images: Iterable[ImageInput] | torch.Tensor, prompts: Sequence[str | None] | None = None) -> list[tuple[ImageRecord, ImageInput]]:
    """Pair in-memory API inputs with records; ids are positions, paths are kept."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise VisrewardError(f"an image batch tensor must be [B,3,H,W], got {list(images.shape)}")
        images = list(images)
    images = list(images)
    if prompts is not None and len(prompts) != len(images):
        raise VisrewardError(f"{len(images)} images but {len(prompts)} prompts")
    out = []
    for i, image in enumerate(images):
        path = str(image) if isinstance(image, (str, os.PathLike)) else None
        out.append((ImageRecord(id=str(i), path=path, prompt=prompts[i] if prompts else None), image))
    return out
