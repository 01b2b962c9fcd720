"""The reward server's wire format, version 1: requests in, images and prompts out, or a ProtocolError.

POST /v1/score, either
  application/json        {"images": [base64 PNG/JPEG/WebP, ...], "prompts": [...] (optional),
                           "rewards": [names] (optional, default: all)}; clips as "videos": [base64 MP4/WebM/GIF]
  application/x-npz       numpy's .npz with "images" (uint8 [B,H,W,3] or [B,H,W]) or "videos" (uint8
                          [B,T,H,W,3]) and optional "prompts" (a unicode array); reward names in the query: ?rewards=a,b
answered 200 {"scores": [...], "rewards": {"NAME": [...], ...}}: `scores` is the weighted combination.
The binary form skips PNG encoding and base64 on both sides (benchmarks/serve.py measures both).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .images import MAX_PIXELS, ImageLoadError, decode_image

VERSION = "v1"
NPZ = "application/x-npz"


class ProtocolError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask the server to decode, checked before anything is decompressed or decoded."""

    max_images: int = 1024
    max_pixels: int = 2**26  # all images of a request together: 64 images of 1024x1024


@dataclass
class ScoreRequest:
    images: list  # PIL images; for videos, each clip's file bytes or a [T,3,H,W] float tensor in [0,1]
    prompts: list[str | None]
    rewards: list[str] | None
    videos: bool = False


def _rewards(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [name for name in value.split(",") if name]
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ProtocolError(400, "'rewards' must be a list of reward names")
    return value


def _prompts(value, count: int) -> list[str | None]:
    if value is None:
        return [None] * count
    if not isinstance(value, list) or not all(p is None or isinstance(p, str) for p in value):
        raise ProtocolError(400, "'prompts' must be a list of strings")
    if len(value) != count:
        raise ProtocolError(400, f"{count} images but {len(value)} prompts")
    return value


def _check_size(count: int, pixels: int, limits: RequestLimits) -> None:
    if count > limits.max_images:
        raise ProtocolError(413, f"{count} images is over the {limits.max_images}-image limit per request")
    if pixels > limits.max_pixels:
        raise ProtocolError(413, f"{pixels} pixels in all is over the {limits.max_pixels}-pixel limit per request")


def _declared_pixels(blob: bytes) -> int:
    """The pixel count an encoded image's header declares (Pillow reads the header only); 0 if unreadable
    (decoding then says why)."""
    try:
        with Image.open(io.BytesIO(blob)) as image:
            return image.width * image.height
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0


def _base64_items(items: list, key: str) -> list[bytes]:
    blobs = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise ProtocolError(400, f"{key}[{index}]: not a base64 string")
        try:
            blobs.append(base64.b64decode(item.split(",", 1)[-1] if item.startswith("data:") else item, validate=True))
        except (binascii.Error, ValueError):
            raise ProtocolError(400, f"{key}[{index}]: not valid base64") from None
    return blobs


def _json_request(body: bytes, limits: RequestLimits) -> ScoreRequest:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(400, f"the body is not JSON ({e})") from None
    key = "videos" if isinstance(data, dict) and "videos" in data else "images"
    if not isinstance(data, dict) or not isinstance(data.get(key), list) or not data[key]:
        raise ProtocolError(400, "the body must be an object with a non-empty 'images' (or 'videos') list")
    _check_size(len(data[key]), 0, limits)
    blobs = _base64_items(data[key], key)
    if key == "videos":  # decoded later, with each reward's frame sampling (check_clips)
        return ScoreRequest(blobs, _prompts(data.get("prompts"), len(blobs)), _rewards(data.get("rewards")), videos=True)
    images = decode_images(blobs, key, limits)
    return ScoreRequest(images, _prompts(data.get("prompts"), len(images)), _rewards(data.get("rewards")))


def decode_images(blobs: list[bytes], key: str, limits: RequestLimits) -> list[Image.Image]:
    """Encoded images held to the limits by their headers' sizes, then decoded; a bad one is a 400 naming key[i]."""
    _check_size(len(blobs), sum(_declared_pixels(blob) for blob in blobs), limits)
    try:
        return [decode_image(blob, f"{key}[{index}]") for index, blob in enumerate(blobs)]
    except ImageLoadError as e:
        raise ProtocolError(400, str(e)) from None


def check_clips(request: ScoreRequest, samplings: list, limits: RequestLimits) -> None:
    """Decode every encoded clip of a request with each frame sampling its rewards use, as scoring will (so a broken
    clip is a 400 naming it, before any reward sees the batch), and hold the decoded pixels to the limits."""
    from .videos import read_clip

    pixels = 0
    for index, clip in enumerate(request.images):
        for sampling in samplings if isinstance(clip, bytes) else ():
            try:
                frames = read_clip(clip, sampling, f"videos[{index}]")
            except ImageLoadError as e:
                raise ProtocolError(400, str(e)) from None
            pixels += frames.shape[0] * frames.shape[2] * frames.shape[3]
    _check_size(len(request.images), pixels, limits)


def _check_npz_members(body: bytes, limits: RequestLimits) -> None:
    """Refuse compressed members (a few KiB of deflate can expand to gigabytes) and an 'images' array whose
    declared shape is over the limits, reading only the zip directory and the .npy header."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            for member in archive.infolist():
                if member.compress_type != zipfile.ZIP_STORED:
                    raise ProtocolError(413, f"{member.filename}: compressed .npz members are refused (np.savez, not "
                                             "savez_compressed): their size is unknown until decompressed")
            for name in {"images.npy", "videos.npy"} & set(archive.namelist()):
                with archive.open(name) as stream:
                    major, _ = np.lib.format.read_magic(stream)
                    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, _, _ = read_header(stream)
                frame_axes = 4 if name == "videos.npy" else 3  # [B,T,H,W(,3)] or [B,H,W(,3)]
                if len(shape) >= frame_axes:
                    _check_size(shape[0], int(np.prod(shape[:frame_axes])), limits)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ProtocolError(400, f"the body is not an .npz with an 'images' array ({e})") from None


def _npz_request(body: bytes, rewards: str | None, limits: RequestLimits) -> ScoreRequest:
    _check_npz_members(body, limits)
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            key = "videos" if "videos" in archive.files else "images"
            pixels = archive[key]
            prompts = archive["prompts"].tolist() if "prompts" in archive.files else None
    except (ValueError, OSError, KeyError, EOFError) as e:
        raise ProtocolError(400, f"the body is not an .npz with an 'images' array ({e})") from None
    if key == "videos":
        return ScoreRequest(_npz_clips(pixels), _prompts(prompts, len(pixels)), _rewards(rewards), videos=True)
    if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4) or (pixels.ndim == 4 and pixels.shape[-1] != 3):
        raise ProtocolError(400, f"'images' must be uint8 [B,H,W,3] or [B,H,W], got {pixels.dtype} {list(pixels.shape)}")
    if len(pixels) == 0:
        raise ProtocolError(400, "'images' is empty")
    if pixels.shape[1] * pixels.shape[2] > MAX_PIXELS:
        raise ProtocolError(400, f"images[0]: {pixels.shape[2]}x{pixels.shape[1]} pixels is over the {MAX_PIXELS} limit")
    images = [Image.fromarray(image).convert("RGB") for image in pixels]
    return ScoreRequest(images, _prompts(prompts, len(images)), _rewards(rewards))


def _npz_clips(pixels: np.ndarray) -> list:
    import torch

    if pixels.dtype != np.uint8 or pixels.ndim != 5 or pixels.shape[-1] != 3 or not len(pixels):
        raise ProtocolError(400, f"'videos' must be uint8 [B,T,H,W,3], got {pixels.dtype} {list(pixels.shape)}")
    if pixels.shape[2] * pixels.shape[3] > MAX_PIXELS:
        raise ProtocolError(400, f"videos[0]: {pixels.shape[3]}x{pixels.shape[2]} frames are over the {MAX_PIXELS} pixel limit")
    return list(torch.from_numpy(pixels).permute(0, 1, 4, 2, 3).float() / 255)


def parse_score_request(body: bytes, content_type: str, rewards_query: str | None = None,
                        limits: RequestLimits = RequestLimits()) -> ScoreRequest:
    if content_type.split(";")[0].strip() == NPZ:
        return _npz_request(body, rewards_query, limits)
    return _json_request(body, limits)


def encode_images(images: np.ndarray | list[Image.Image], prompts, rewards) -> tuple[bytes, str, dict]:
    """(body, content type, query) of a request: the binary form for a uint8 [B,H,W,3] array (clips: [B,T,H,W,3]),
    base64 PNG in JSON for a list of images of different sizes."""
    if isinstance(images, np.ndarray):
        buffer = io.BytesIO()
        arrays = {"videos" if images.ndim == 5 else "images": images}
        if prompts is not None and any(p is not None for p in prompts):
            arrays["prompts"] = np.array([p or "" for p in prompts], dtype=str)
        np.savez(buffer, **arrays)
        return buffer.getvalue(), NPZ, {"rewards": ",".join(rewards)} if rewards else {}
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    body = {"images": encoded, **({"prompts": list(prompts)} if prompts is not None else {}),
            **({"rewards": list(rewards)} if rewards else {})}
    return json.dumps(body).encode(), "application/json", {}
