"""Flow-Factory's remote reward protocol, served by `visreward serve` at POST /compute.

Flow-Factory's RemotePointwiseRewardModel (flow_factory/rewards/my_reward_remote.py) checks GET /health for a 200,
then sends {"prompt": [...], "image": [base64 PNG] or null, "video": [[base64 PNG frame, ...], ...] or null,
"condition_images", "condition_videos", "kwargs"} and reads {"rewards": [...]}: here the combined score of every
served reward (their weights and --normalise). The conditions and kwargs are accepted and not used.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from ..io.images import ImageLoadError, decode_image
from ..io.wire import (
    ProtocolError,
    RequestLimits,
    ScoreRequest,
    _base64_items,
    _check_size,
    _declared_pixels,
    _prompts,
    decode_images,
)


def _clip(frames: list[bytes], index: int) -> torch.Tensor:
    """A clip's PNG frames -> [T,3,H,W] float in [0,1]."""
    try:
        images = [np.asarray(decode_image(frame, f"video[{index}][{t}]")) for t, frame in enumerate(frames)]
    except ImageLoadError as e:
        raise ProtocolError(400, str(e)) from None
    if len({image.shape for image in images}) > 1:
        raise ProtocolError(400, f"video[{index}]: its frames differ in size")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def parse_compute_request(body: bytes, limits: RequestLimits = RequestLimits()) -> ScoreRequest:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(400, f"the body is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ProtocolError(400, "the body must be an object with 'prompt' and 'image' (or 'video') lists")
    key = "video" if data.get("video") else "image"
    items = data.get(key)
    if not isinstance(items, list) or not items:
        raise ProtocolError(400, "the body must be an object with a non-empty 'image' (or 'video') list")
    _check_size(len(items), 0, limits)
    if key == "image":
        media = decode_images(_base64_items(items, "image"), "image", limits)
    else:
        if not all(isinstance(frames, list) and frames for frames in items):
            raise ProtocolError(400, "'video' must hold one non-empty list of base64 PNG frames per clip")
        clips = [_base64_items(frames, f"video[{index}]") for index, frames in enumerate(items)]
        _check_size(len(clips), sum(_declared_pixels(frame) for frames in clips for frame in frames), limits)
        media = [_clip(frames, index) for index, frames in enumerate(clips)]
    return ScoreRequest(media, _prompts(data.get("prompt"), len(media)), None, videos=key == "video")
