"""`vlm-api:URL#MODEL`: a RewardDance yes/no judge served by an OpenAI-compatible engine (vLLM, SGLang).

    visreward score --model vlm-api:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-VL-72B-Instruct IMAGES... --output s.parquet

The questions are our templates (templates.py), pointwise or pairwise in both orders, as the in-process judge asks
them (model.judged); images and frames travel as base64 PNG data URLs. Each query is one chat completion of one
token with the first token's top_logprobs, and its score is P(yes) / (P(yes) + P(no)) over the tokens that read "yes"
or "no" (any case, any surrounding space). The key comes from $OPENAI_API_KEY when the server wants one. Not
differentiable: ReFL refuses it, GRPO, Best-of-N, scoring and serving take it.
"""

from __future__ import annotations

import base64
import io
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image

from ...core.errors import VisrewardError
from ...io.videos import FrameSampling
from ..spread import spread
from .model import judged

TOP_LOGPROBS = 20
RETRY_STATUSES = (429, 502, 503, 504)


def image_url(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}}


def yes_share(answer: dict, where: str) -> float:
    """P(yes) / (P(yes) + P(no)) from a chat completion's first-token top_logprobs."""
    try:
        top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        raise VisrewardError(f"{where}: the answer has no first-token top_logprobs (the server must allow logprobs, "
                             f"e.g. vLLM's --max-logprobs {TOP_LOGPROBS})") from None
    mass = {"yes": 0.0, "no": 0.0}
    for entry in top:
        word = entry["token"].strip().lower()
        if word in mass:
            mass[word] += math.exp(entry["logprob"])
    if not mass["yes"] + mass["no"]:
        raise VisrewardError(f"{where}: neither yes nor no among the {len(top)} likeliest first tokens "
                             f"({', '.join(repr(e['token']) for e in top[:5])}, ...)")
    return mass["yes"] / (mass["yes"] + mass["no"])


class APIJudge:
    def __init__(self, base_url: str, model: str, instruction: str | None = None, frames: int = 8,
                 timeout: float = 120.0, concurrency: int = 8, retries: int = 4):
        self.base_url, self.model, self.instruction = base_url.rstrip("/"), model, instruction
        self.sampling = FrameSampling(frames)
        self.timeout, self.concurrency, self.retries = timeout, concurrency, retries
        key = os.environ.get("OPENAI_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    @classmethod
    def from_spec(cls, spec: str) -> "APIJudge":
        url, hash_sign, model = spec.removeprefix("vlm-api:").partition("#")
        if not url.startswith(("http://", "https://")) or not hash_sign or not model:
            raise VisrewardError(f"{spec}: expected vlm-api:URL#MODEL, e.g. vlm-api:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-VL-7B-Instruct")
        return cls(url, model)

    def _request(self, text: str, frames: list[Image.Image]) -> dict:
        return {"model": self.model, "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": TOP_LOGPROBS,
                "messages": [{"role": "user", "content": [*map(image_url, frames), {"type": "text", "text": text}]}]}

    def _ask_one(self, client, index: int, query: tuple[str, list]) -> float:
        import httpx

        where = f"vlm-api:{self.base_url}#{self.model}, query {index}"
        for attempt in range(self.retries + 1):
            try:
                response = client.post(f"{self.base_url}/chat/completions", json=self._request(*query), headers=self.headers)
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise VisrewardError(f"{where}: {type(e).__name__}: {e}") from None
            else:
                if response.status_code == 200:
                    return yes_share(response.json(), where)
                if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                    raise VisrewardError(f"{where}: HTTP {response.status_code}: {response.text[:200]}")
            time.sleep(min(8.0, 0.5 * 2**attempt))

    def check_differentiable(self) -> None:
        raise VisrewardError(f"vlm-api:{self.base_url}#{self.model}: a judge behind an API has no gradient: use it with "
                             "grpo, best-of-n or rounds, or load the VLM itself (vlm:PATH) for refl")

    def ask(self, queries: list[tuple[str, list]]) -> tuple[torch.Tensor, list]:
        import httpx

        with httpx.Client(timeout=self.timeout) as client, ThreadPoolExecutor(self.concurrency) as pool:
            shares = list(pool.map(lambda pair: self._ask_one(client, *pair), enumerate(queries)))
        return torch.tensor(shares, dtype=torch.float32), [None] * len(queries)

    def score_with_info(self, images, prompts=None, references=None, instruction: str | None = None) -> tuple[torch.Tensor, dict]:
        return judged(self.ask, self.sampling, images, prompts, references, instruction or self.instruction)

    def score(self, images, prompts=None, references=None, **kwargs) -> torch.Tensor:
        return self.score_with_info(images, prompts, references, kwargs.get("instruction"))[0]

    def reward_fn(self, images, prompts=None, metadata=None) -> tuple[torch.Tensor, dict]:
        scores, info = self.score_with_info(images, prompts)
        return scores, {**info, **spread(scores)}
