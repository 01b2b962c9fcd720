"""Clients of `visreward serve`: a reward that lives in another process, called like an in-process one.

    reward = visreward.RemoteReward("http://127.0.0.1:8000", token=None)
    scores = reward.score(images, prompts)                        # combined score per image
    rewards, info = reward.reward_fn(images, prompts, metadata)   # info["rewards"]: each reward's scores

images: a [B,3,H,W] float tensor in [0,1] (or uint8), uint8 numpy arrays (NHWC or NCHW), or PIL
images; clips for a video reward as [B,T,3,H,W] (or [B,T,H,W,3]) batches. Same-sized batches travel as raw
uint8 (.npz); images of different sizes as base64 PNG.
Large batches are split into requests of `batch_size`; a request answered 502/503/504 or cut by a
dropped connection is sent again with exponential backoff. Each chunk's scores land in its own
slot, so a retry can neither lose nor duplicate a score. AsyncRemoteReward does the same with
`await`, so a trainer can score one batch while it samples the next.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from ..core.errors import VisrewardError
from ..io.wire import encode_images
from .spread import spread

RETRY_STATUSES = (502, 503, 504)


class RemoteRewardError(VisrewardError):
    pass


def _as_uint8_batch(images) -> np.ndarray | list:
    """A uint8 [B,H,W,3] array when the images share a size; otherwise a list of PIL images."""
    import torch
    from PIL import Image

    from ..io.images import as_image_batch
    from ..io.videos import as_video_batch

    if isinstance(images, (list, tuple)) and images and isinstance(images[0], Image.Image):
        sizes = {image.size for image in images}
        if len(sizes) > 1:
            return [image.convert("RGB") for image in images]
        return np.stack([np.asarray(image.convert("RGB")) for image in images])
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(image) for image in images])
    if images.ndim == 5:  # clips: [B,T,H,W,3] uint8
        clips = as_video_batch(images)
        return (clips * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    batch = as_image_batch(images)  # [B,3,H,W] float in [0,1]
    return (batch * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class _Client:
    def __init__(self, url: str, rewards: list[str] | None = None, timeout: float = 60.0, token: str | None = None,
                 batch_size: int = 64, retries: int = 8, backoff: float = 0.5, max_backoff: float = 8.0):
        self.url, self.rewards, self.timeout, self.batch_size = url.rstrip("/"), rewards, timeout, batch_size
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _chunks(self, images, prompts) -> list[tuple]:
        batch = _as_uint8_batch(images)
        if prompts is not None and len(prompts) != len(batch):
            raise RemoteRewardError(f"{len(batch)} images but {len(prompts)} prompts")
        chunks = []
        for start in range(0, len(batch), self.batch_size):
            part = batch[start : start + self.batch_size]
            part_prompts = None if prompts is None else list(prompts[start : start + self.batch_size])
            chunks.append(encode_images(part, part_prompts, self.rewards))
        return chunks

    def _request(self, chunk: tuple) -> dict:
        body, content_type, query = chunk
        return {"url": f"{self.url}/v1/score", "content": body, "params": query,
                "headers": {**self.headers, "Content-Type": content_type}}

    def _wait(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2**attempt)

    def _settle(self, attempt: int, response, error: Exception | None) -> dict | None:
        """The chunk's result; None to send it again (a 502/503/504 or a dropped connection, while
        tries are left); RemoteRewardError once they are used up or for any other answer than 200."""
        last = attempt == self.retries
        if error is not None:
            if last:
                raise RemoteRewardError(f"{self.url}: no answer after {self.retries + 1} tries ({error})") from None
            return None
        if response.status_code in RETRY_STATUSES and not last:
            return None
        return self._result(response)

    def _result(self, response) -> dict:
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise RemoteRewardError(f"{self.url}: {response.status_code} {message}")
        return response.json()

    @staticmethod
    def _merge(results: list[dict]) -> tuple[np.ndarray, dict]:
        scores = np.concatenate([np.asarray(r["scores"], dtype=np.float64) for r in results])
        names = results[0]["rewards"].keys()
        sub = {name: np.concatenate([np.asarray(r["rewards"][name], dtype=np.float64) for r in results]) for name in names}
        return scores, {"rewards": sub}


class RemoteReward(_Client):
    """A reward served by `visreward serve`, with score / score_with_info / reward_fn like a local model."""

    def _post(self, client, chunk: tuple) -> dict:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                response, error = client.post(**self._request(chunk)), None
            except httpx.TransportError as e:
                response, error = None, e
            result = self._settle(attempt, response, error)
            if result is not None:
                return result
            time.sleep(self._wait(attempt))

    def score_with_info(self, images, prompts=None) -> tuple[np.ndarray, dict]:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            return self._merge([self._post(client, chunk) for chunk in self._chunks(images, prompts)])

    def score(self, images, prompts=None) -> np.ndarray:
        return self.score_with_info(images, prompts)[0]

    def reward_fn(self, images, prompts=None, metadata=None) -> tuple[np.ndarray, dict]:
        scores, info = self.score_with_info(images, prompts)
        return scores, {**info, **spread(scores)}


class AsyncRemoteReward(_Client):
    """RemoteReward with `await`: chunks are sent concurrently, so scoring can overlap sampling."""

    async def _post(self, client, chunk: tuple) -> dict:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                response, error = await client.post(**self._request(chunk)), None
            except httpx.TransportError as e:
                response, error = None, e
            result = self._settle(attempt, response, error)
            if result is not None:
                return result
            await asyncio.sleep(self._wait(attempt))

    async def score_with_info(self, images, prompts=None) -> tuple[np.ndarray, dict]:
        import httpx

        async with httpx.AsyncClient(timeout=self.timeout) as client:
            results = await asyncio.gather(*(self._post(client, chunk) for chunk in self._chunks(images, prompts)))
        return self._merge(list(results))

    async def score(self, images, prompts=None) -> np.ndarray:
        return (await self.score_with_info(images, prompts))[0]

    async def reward_fn(self, images, prompts=None, metadata=None) -> tuple[np.ndarray, dict]:
        scores, info = await self.score_with_info(images, prompts)
        return scores, {**info, **spread(scores)}
