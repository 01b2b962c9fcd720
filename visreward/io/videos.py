"""Videos in: a clip's frames, sampled without decoding (or holding) the rest.

A clip is a video file (decoded with PyAV, whose wheels bundle FFmpeg), an animated GIF or
WebP, or a folder of frames. `FrameSampling` says which frames a reward sees: `frames`
spread uniformly over the clip (the centre of each of `frames` equal spans), or `frames`
consecutive frames at `fps` around the clip's middle. Either way a clip gives exactly
`frames` frames: a shorter clip repeats its nearest frame, so batches stack.

Long clips are read by seeking to each wanted time and decoding from the keyframe before it,
one frame kept at a time: memory holds `frames` frames, whatever the clip's length. Rotation
metadata is applied; timestamps are used as they are (variable frame rates stay correct).
Every way a clip can be bad becomes an `ImageLoadError` naming it, as for images.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

from . import images
from .images import IMAGE_EXTENSIONS, ImageLoadError, decode_image, load_image, read_bytes, to_rgb

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".webm", ".mkv", ".mov", ".avi"})
ANIMATED_EXTENSIONS = frozenset({".gif", ".webp"})  # animated ones are read with Pillow
SEEK_AHEAD_SECONDS = 2.0  # a wanted frame further ahead than this is reached by seeking, not decoding through
TRUNCATION_SECONDS = 1.0  # a wanted time this far past the last decodable frame means the file was cut short


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a clip a reward sees; saved with a video reward model."""

    frames: int = 8
    fps: float | None = None

    def __post_init__(self):
        if self.frames < 1 or (self.fps is not None and self.fps <= 0):
            raise ValueError(f"frame sampling needs frames >= 1 and fps > 0, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def tag(self) -> str:
        return f"frames={self.frames},fps={self.fps}"

    def times(self, duration: float) -> list[float]:
        """Seconds into a clip of `duration` seconds at which to take frames."""
        if self.fps is None:
            return [(i + 0.5) * duration / self.frames for i in range(self.frames)]
        start = duration / 2 - (self.frames - 1) / (2 * self.fps)
        return [min(max(start + i / self.fps, 0.0), duration) for i in range(self.frames)]

    def indices(self, n_frames: int, frame_rate: float | None = None) -> list[int]:
        """Frame indices for a clip known as `n_frames` frames with no timestamps (a tensor, a folder of frames, a
        list of frames). It is taken to run at `frame_rate`, by default the sampling's own fps: with fps sampling,
        its frames are then consecutive, whatever kind of clip it is."""
        rate = frame_rate or self.fps or 1.0
        return [min(int(t * rate), n_frames - 1) for t in self.times(n_frames / rate)]


def is_clip(path: str | os.PathLike) -> bool:
    """A video file by its extension (animated images and frame folders are clips only where a video is expected)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _frame_folder(folder: Path, sampling: FrameSampling) -> list[np.ndarray]:
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not names:
        raise ImageLoadError(str(folder), "a folder of frames with no images in it")
    return [np.asarray(load_image(names[i])) for i in sampling.indices(len(names))]


def _animated(data: bytes, source: str, sampling: FrameSampling) -> list[np.ndarray]:
    """GIF / WebP frames, timed by their own durations (frames of an animation need not be evenly spaced)."""
    first = decode_image(data, source)  # the checks every image gets: size limit, corruption
    image = Image.open(io.BytesIO(data))
    if getattr(image, "n_frames", 1) == 1:
        return [np.asarray(first)] * sampling.frames
    try:
        starts, clock, frames = [], 0.0, []
        for frame in ImageSequence.Iterator(image):
            starts.append(clock)
            clock += (frame.info.get("duration") or 100) / 1000
        for t in sampling.times(clock):
            image.seek(max(0, int(np.searchsorted(starts, t, side="right")) - 1))
            frames.append(np.asarray(to_rgb(image)))
    except (OSError, ValueError, EOFError) as e:
        raise ImageLoadError(source, f"corrupt or truncated animation ({e})") from None
    return frames


def _rotated(frame) -> np.ndarray:
    pixels = frame.to_ndarray(format="rgb24")
    # FFmpeg's display matrix angle is counter-clockwise, as np.rot90's is.
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, k=turns)) if turns else pixels


def _video(source: str | bytes, name: str, sampling: FrameSampling) -> list[np.ndarray]:
    import av

    try:
        if not (source if isinstance(source, bytes) else os.path.getsize(source)):
            raise ImageLoadError(name, "empty file")
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else source) as container:
            if not container.streams.video:
                raise ImageLoadError(name, "audio only: no video stream" if container.streams.audio
                                     else "no video frames (the file holds no streams)")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > images.MAX_PIXELS:  # 8 such frames decoded would exhaust memory
                raise ImageLoadError(name, f"{width}x{height} frames are over the {images.MAX_PIXELS} pixel limit")
            stream.thread_type = "AUTO"
            return _sample_stream(container, stream, sampling, name)
    except ImageLoadError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
        raise ImageLoadError(name, f"not a readable video, or truncated ({str(e).splitlines()[0]})") from None


def _time(frame, start: float) -> float:
    return (frame.time if frame.time is not None else 0.0) - start


def _duration(container, stream) -> float:
    """Seconds, from the stream's or the container's header; decoded through (no frame kept) when neither says."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:  # in microseconds (webm and mkv often only have this one)
        return container.duration / 1_000_000
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    last = 0.0
    for frame in container.decode(stream):
        last = frame.time or last
    container.seek(0, stream=stream)
    return last


def _sample_stream(container, stream, sampling: FrameSampling, name: str) -> list[np.ndarray]:
    """The frame showing at each wanted time (the last one starting at or before it); only it and
    the frame after it are held. A time far ahead of the decoder is reached by seeking."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    duration = _duration(container, stream)
    wanted = sampling.times(duration)
    decoded = container.decode(stream)
    shown = ahead = None  # the last frame at or before the current time, and the first one after it
    position = 0.0
    frames: list[np.ndarray] = []
    for t in wanted:
        if t - position > SEEK_AHEAD_SECONDS:
            container.seek(int((start + t) / stream.time_base), stream=stream, backward=True)
            decoded, shown, ahead = container.decode(stream), None, None
        while ahead is None or _time(ahead, start) <= t:
            if ahead is not None:
                shown = ahead
            ahead = next(decoded, None)
            if ahead is None:
                break
            position = _time(ahead, start)
        chosen = shown if shown is not None else ahead  # after a seek that landed past t, the nearest frame
        if chosen is None:
            break
        if ahead is None and t - _time(chosen, start) > TRUNCATION_SECONDS:
            raise ImageLoadError(name, f"truncated: frames end at {_time(chosen, start):.2f} s of the "
                                       f"{duration:.2f} s its header gives")
        frames.append(_rotated(chosen))
    if not frames:
        raise ImageLoadError(name, "no video frames could be decoded")
    return frames + [frames[-1]] * (sampling.frames - len(frames))


def read_clip(source: str | os.PathLike | bytes, sampling: FrameSampling, name: str | None = None) -> torch.Tensor:
    """A clip's sampled frames as uint8 [T,3,H,W] (T = sampling.frames).

    source: a video file, an animated GIF / WebP, a folder of frames, or a file's bytes.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "video bytes")
    if not isinstance(source, bytes) and Path(source).is_dir():
        frames = _frame_folder(Path(source), sampling)
    elif not isinstance(source, bytes) and Path(source).suffix.lower() in ANIMATED_EXTENSIONS:
        frames = _animated(read_bytes(source), name, sampling)
    elif isinstance(source, bytes) and _is_animation(source):
        frames = _animated(source, name, sampling)
    elif not isinstance(source, bytes) and Path(source).suffix.lower() in IMAGE_EXTENSIONS:
        raise ImageLoadError(name, "a still image where a video is expected (a folder of frames is one clip)")
    else:
        frames = _video(source if isinstance(source, bytes) else str(source), name, sampling)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:  # frames of one clip at different sizes (a frame folder, a resolution change)
        height, width = frames[0].shape[:2]
        frames = [f if f.shape == frames[0].shape else np.asarray(Image.fromarray(f).resize((width, height))) for f in frames]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def pillow_frame_count(source: str | os.PathLike | bytes) -> int | None:
    """How many frames Pillow finds in an image file or its bytes (more than 1: an animation), or
    None when Pillow cannot read it (a video container, or not an image)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return getattr(image, "n_frames", 1)
    except (OSError, ValueError):
        return None


def pil_frames(clip: torch.Tensor) -> list[Image.Image]:
    """A uint8 [T,3,H,W] clip (what read_clip returns) as a list of RGB PIL images."""
    return [Image.fromarray(frame.permute(1, 2, 0).numpy()) for frame in clip]


def _is_animation(data: bytes) -> bool:
    return data[:6] in (b"GIF87a", b"GIF89a") or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def is_clip_bytes(data: bytes) -> bool:
    """Whether a file's bytes hold a clip: an MP4/MOV, Matroska/WebM or AVI container (by its magic bytes), or a GIF
    or WebP of more than one frame."""
    if data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3" or (data[:4] == b"RIFF" and data[8:12] == b"AVI "):
        return True
    return _is_animation(data) and (pillow_frame_count(data) or 1) > 1


# extension -> (FFmpeg container format, codec)
CODECS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
          ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx-vp9"), ".avi": ("avi", "mpeg4")}


def write_video(path: str | os.PathLike, frames, fps: float = 8.0, quality: int = 18, preset: str | None = None) -> Path:
    """Write uint8 frames ([T,H,W,3] or [T,3,H,W], or an iterable of [H,W,3] frames, streamed: a long
    video is never held) as a video, atomically; the container follows the extension: .mp4/.mov/.mkv
    (H.264), .webm (VP9), .avi (MPEG-4), .gif / .webp (animated, Pillow). H.264 and VP9 need even
    sizes: an odd edge is padded by one row or column (edge pixels repeated). quality: the constant
    rate factor (lower is better; 18 is visually lossless for H.264); preset: x264's speed preset."""
    from fractions import Fraction
    from itertools import chain

    import av

    from ..core.atomic import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANIMATED_EXTENSIONS and suffix not in CODECS:
        raise ValueError(f"{path}: cannot write video with extension '{path.suffix}'")
    stream_of_frames = _hwc_frames(frames)
    first = next(stream_of_frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    with atomic_path(path) as tmp:
        if suffix in ANIMATED_EXTENSIONS:
            images = [Image.fromarray(frame) for frame in chain([first], stream_of_frames)]
            images[0].save(tmp, format=suffix[1:].upper(), save_all=True, append_images=images[1:],
                           duration=round(1000 / fps), loop=0, **({"lossless": True} if suffix == ".webp" else {}))
            return path
        padding = ((0, first.shape[0] % 2), (0, first.shape[1] % 2), (0, 0))
        container_format, codec = CODECS[suffix]
        with av.open(str(tmp), mode="w", format=container_format) as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.height, stream.width = first.shape[0] + padding[0][1], first.shape[1] + padding[1][1]
            stream.pix_fmt = "yuv420p"
            if codec == "mpeg4":  # no constant-quality mode: a bit rate that keeps small frames near lossless
                stream.bit_rate = 50_000_000
            else:
                stream.options = ({"crf": str(quality)} | ({"b": "0"} if suffix == ".webm" else {})
                                  | ({"preset": preset} if preset and codec == "libx264" else {}))
            for frame in chain([first], stream_of_frames):
                frame = np.pad(frame, padding, mode="edge")
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    return path


def _hwc_frames(frames):
    """uint8 [H,W,3] numpy frames, one at a time, from a [T,H,W,3] / [T,3,H,W] array or tensor or an iterable."""
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        pixels = torch.as_tensor(frames)
        if pixels.ndim != 4 or pixels.dtype != torch.uint8 or 3 not in (pixels.shape[1], pixels.shape[-1]):
            raise ValueError(f"frames must be uint8 [T,H,W,3] or [T,3,H,W], got {pixels.dtype} {list(pixels.shape)}")
        yield from (pixels if pixels.shape[-1] == 3 else pixels.permute(0, 2, 3, 1)).contiguous().numpy()
        return
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.dtype != np.uint8 or frame.shape[-1] != 3:
            raise ValueError(f"each frame must be uint8 [H,W,3], got {frame.dtype} {list(frame.shape)}")
        yield frame


def as_video_batch(videos):
    """RL trainers' video batches -> [B,T,3,H,W] float in [0,1]: numpy or torch, uint8 or float,
    [B,T,3,H,W] or [B,T,H,W,3]. Anything else (paths, lists of clips) is returned as it is."""
    from .images import as_image_batch

    if isinstance(videos, np.ndarray):
        videos = torch.from_numpy(videos)
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5:
        return videos
    return as_image_batch(videos.flatten(0, 1)).unflatten(0, videos.shape[:2])
