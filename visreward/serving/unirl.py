"""UniRL's reward-service protocol, served by `visreward serve` at POST /score.

UniRL's RewardServiceExecutor (diffusionrl/reward/reward_service_executor.py) sends
  {"requests": [{"history": [{"text": PROMPT, "image_b64": BASE64 JPEG}], "required_rewards": [NAME, ...],
                 "metadata": ...}, ...]}
and reads, item by item, {"results": [{NAME: {SUB_METRIC: value}}], "errors": [{NAME: message}]}: one reward of
one item may fail while the others are scored. Each of our rewards answers one sub-metric, "score" (raw, not
normalised: the executor weights and aggregates them itself). It checks GET /health for
{"rewards": {NAME: [...]}} before its first call, which /health answers.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from PIL import Image

from ..io.images import ImageLoadError, decode_image
from ..io.wire import ProtocolError, RequestLimits, _check_size, _declared_pixels

SUB_METRIC = "score"


@dataclass
class Item:
    media: Image.Image | bytes | None  # the decoded image, or a clip's encoded bytes
    prompt: str | None
    rewards: list[str]
    errors: dict[str, str]  # reward -> why this item cannot be scored by it
    video: bool = False


def _item(index: int, entry) -> Item:
    where = f"requests[{index}]"
    if not isinstance(entry, dict):
        return Item(None, None, [], {"request": f"{where}: not an object"})
    rewards = entry.get("required_rewards")
    if not isinstance(rewards, list) or not rewards or not all(isinstance(r, str) for r in rewards):
        return Item(None, None, ["required_rewards"], {"required_rewards": f"{where}: 'required_rewards' must be a "
                                                                          "non-empty list of reward names"})
    history = entry.get("history")
    turn = history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else {}
    encoded, prompt = (entry.get("video_b64"), entry.get("prompt")) if "video_b64" in entry else (turn.get("image_b64"), turn.get("text"))
    prompt = prompt if isinstance(prompt, str) else None
    if not isinstance(encoded, str):
        return Item(None, prompt, rewards, dict.fromkeys(rewards, f"{where}: expected 'history' turns with an "
                                                                   "'image_b64' image, or a 'video_b64' clip"))
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return Item(None, prompt, rewards, dict.fromkeys(rewards, f"{where}: not valid base64"))
    return Item(blob, prompt, rewards, {}, video="video_b64" in entry)


def parse_unirl_request(body: bytes, limits: RequestLimits = RequestLimits()) -> list[Item]:
    """Every entry as an Item, images decoded; an entry's problems are its own errors, the body's a ProtocolError."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(400, f"the body is not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("requests"), list) or not data["requests"]:
        raise ProtocolError(400, "the body must be an object with a non-empty 'requests' list")
    _check_size(len(data["requests"]), 0, limits)
    items = [_item(index, entry) for index, entry in enumerate(data["requests"])]
    images = [(index, item) for index, item in enumerate(items) if item.media is not None and not item.video]
    _check_size(len(items), sum(_declared_pixels(item.media) for _, item in images), limits)
    for index, item in images:
        try:
            item.media = decode_image(item.media, f"requests[{index}]")
        except ImageLoadError as e:
            item.media, item.errors = None, dict.fromkeys(item.rewards, str(e))
    return items


def check_item_media(items: list[Item], rewards: dict) -> None:
    """Each item's error for each reward that cannot score it: an unknown reward, images sent to a reward of clips (or
    the reverse), a clip that does not decode with the reward's frame sampling."""
    from ..io.videos import read_clip

    for index, item in enumerate(items):
        for name in item.rewards:
            reward = rewards.get(name)
            if name in item.errors:
                continue
            if reward is None:
                item.errors[name] = f"unknown reward {name} (have {', '.join(rewards)})"
            elif item.video and reward.clip_sampling is None:
                item.errors[name] = f"requests[{index}]: reward {name} scores images, and the item is a clip"
            elif not item.video and not reward.scores_images:
                item.errors[name] = f"requests[{index}]: reward {name} scores clips, and the item is an image"
            elif item.video:
                try:
                    read_clip(item.media, reward.clip_sampling, f"requests[{index}]")
                except ImageLoadError as e:
                    item.errors[name] = str(e)


def unirl_answer(items: list[Item], scores: dict[str, dict[int, float]], failures: dict[str, str]) -> dict:
    """results and errors, item by item, from each reward's scores by item index and each failed reward's error."""
    results, errors = [], []
    for index, item in enumerate(items):
        result, error = {}, dict(item.errors)
        for name in item.rewards:
            if name in failures and name not in error:
                error[name] = failures[name]
            elif name not in error:
                result[name] = {SUB_METRIC: scores[name][index]}
        results.append(result)
        errors.append(error)
    return {"results": results, "errors": errors}
