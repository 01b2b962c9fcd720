"""`visreward serve`: reward models behind HTTP for RL trainers (FastAPI on uvicorn).

    visreward serve --reward rm=runs/rm --reward judge=vlm:judge/:0.5 --port 8000 [--token SECRET]

Every reward is loaded once, before the port opens (so GET /health answers 200 only when they
are ready). Endpoints, version 1 (the wire format is in io/wire.py):
  POST /v1/score     images (+ prompts, + reward names) -> {"scores": [...], "rewards": {NAME: [...]}}
  POST /score        UniRL's reward-service JSON, item by item (unirl.py)
  POST /compute      Flow-Factory's remote pointwise reward JSON (flow_factory.py)
  POST /             with --accept-pickle: the ddpo-pytorch / flow_grpo pickle protocol (pickled.py)
  GET  /v1/rewards   names, kinds, encoders, weights, each model's training metrics
  GET  /v1/stats     per reward: running mean, std, quantiles, spread collapse; queue and request counts
  GET  /metrics      the same statistics in Prometheus' text format
  GET  /health
Errors are {"error": ...}: 400 bad request (naming the bad item), 401 without the token when one
is required, 413 over the size limit, 503 when the queue is full (retry later).
"""

import asyncio
import hmac
import json
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import VisrewardError
from ..core.options import ServeConfig
from ..io.wire import VERSION, ProtocolError, RequestLimits, check_clips, parse_score_request
from ..rewards.combination import RewardCombiner
from .batcher import DynamicBatcher, QueueFull
from .flow_factory import parse_compute_request
from .pickled import PICKLE, parse_pickle_request, pickle_answer
from .unirl import check_item_media, parse_unirl_request, unirl_answer


@dataclass
class LoadedReward:
    name: str
    spec: str
    weight: float
    model: object

    def describe(self) -> dict:
        from ..rewards.loader import reward_kind

        kind = reward_kind(self.spec)
        folder = Path(self.spec.partition(":")[2] if kind != "gan-rm" else self.spec)
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else None
        config = getattr(self.model, "config", None)
        return {"name": self.name, "kind": kind, "spec": self.spec,
                "weight": self.weight, "encoder": config.get("encoder") if isinstance(config, dict) else None,
                "metrics": metrics}

    @property
    def clip_sampling(self):
        """How it samples a clip's frames; None for a reward of images only."""
        if hasattr(self.model, "encoder"):  # GAN-RM: a video encoder samples frames, an image encoder takes none
            return getattr(self.model.encoder, "sampling", None)
        return self.model.sampling  # a judge sees images and clips

    @property
    def scores_images(self) -> bool:
        return not hasattr(getattr(self.model, "encoder", None), "sampling")

    def score(self, images: list, prompts: list) -> np.ndarray:
        return np.asarray(self.model.score(images, prompts if any(p is not None for p in prompts) else None))


def load_rewards(config: ServeConfig) -> list[LoadedReward]:
    from ..core.distributed import local_device
    from ..rewards.loader import load_reward_model, parse_reward_spec

    if not config.reward:
        raise VisrewardError("no rewards to serve (--reward NAME=SPEC[:WEIGHT])")
    parsed = [parse_reward_spec(text) for text in config.reward]
    names = [name for name, _, _ in parsed]
    if len(set(names)) != len(names):
        raise VisrewardError(f"--reward: names must be unique, got {', '.join(names)}")
    device = None if config.device == "cpu" else local_device(config.device)
    return [LoadedReward(name, spec, weight, load_reward_model(spec, device, config.backend, config.precision,
                                                               config.cache_dir)) for name, spec, weight in parsed]


def check_media(request, rewards: list[LoadedReward], limits: RequestLimits) -> None:
    """Every reward asked for scores what the request carries; its clips decode with each reward's frame sampling."""
    for reward in rewards:
        if (reward.clip_sampling is None) if request.videos else not reward.scores_images:
            sent, wanted = ("videos", "images") if request.videos else ("images", "videos")
            raise ProtocolError(400, f"reward {reward.name} scores {wanted}, and the request sends {sent}")
    if request.videos:
        samplings = {reward.clip_sampling.tag: reward.clip_sampling for reward in rewards}
        check_clips(request, list(samplings.values()), limits)


def _prometheus(stats: dict) -> str:
    lines = []
    for name, summary in stats["rewards"].items():
        for key in ("count", "mean", "std", "p05", "p50", "p95"):
            if summary.get(key) is not None:
                lines.append(f'visreward_reward_{key}{{reward="{name}"}} {summary[key]}')
        lines.append(f'visreward_reward_spread_collapsed{{reward="{name}"}} {int(bool(summary.get("spread_collapsed")))}')
        lines.append(f'visreward_queue_images{{reward="{name}"}} {stats["queue"][name]}')
    lines += [f"visreward_requests_total {stats['requests']}", f"visreward_images_total {stats['images']}"]
    lines += [f'visreward_errors_total{{status="{status}"}} {count}' for status, count in stats["errors"].items()]
    return "\n".join(lines) + "\n"


class ServerState:
    """What every route shares: the rewards by name, their batchers and combiner, the counters and the limits."""

    def __init__(self, rewards: list[LoadedReward], config: ServeConfig):
        self.by_name = {reward.name: reward for reward in rewards}
        self.combiner = RewardCombiner({r.name: r.weight for r in rewards}, config.normalise, config.window)
        self.batchers = {r.name: DynamicBatcher(r.score, config.max_batch, config.max_wait_ms, config.max_queue)
                         for r in rewards}
        self.counters = {"requests": 0, "images": 0, "errors": {}}
        self.body_limit = int(config.max_request_mb * 2**20)
        self.limits = RequestLimits(config.max_images, config.max_pixels)

    def error(self, status: int, message: str):
        from fastapi.responses import JSONResponse

        self.counters["errors"][str(status)] = self.counters["errors"].get(str(status), 0) + 1
        return JSONResponse({"error": message}, status_code=status)

    def statistics(self) -> dict:
        return {"rewards": self.combiner.stats(), "queue": {n: b.pending for n, b in self.batchers.items()},
                "batches": {n: b.batches for n, b in self.batchers.items()}, **self.counters}

    async def read_body(self, request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.body_limit:
            raise ProtocolError(413, f"request body of {int(declared)} bytes is over the {self.body_limit}-byte limit")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.body_limit:
                raise ProtocolError(413, f"request body is over the {self.body_limit}-byte limit")
        return bytes(body)

    def _refuse_if_full(self, counts: dict[str, int]) -> None:
        full = [n for n, count in counts.items() if self.batchers[n].pending + count > self.batchers[n].max_queue]
        if full:
            raise QueueFull(f"the queue of {full[0]} is full ({self.batchers[full[0]].pending} images waiting)")

    async def scored(self, parsed) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The combined and per-reward scores of a parsed request, through the batchers."""
        from starlette.concurrency import run_in_threadpool

        names = parsed.rewards or list(self.by_name)
        unknown = [name for name in names if name not in self.by_name]
        if unknown:
            raise ProtocolError(400, f"unknown reward(s) {', '.join(unknown)} (have {', '.join(self.by_name)})")
        await run_in_threadpool(check_media, parsed, [self.by_name[n] for n in names], self.limits)
        count = len(parsed.images)
        self._refuse_if_full({n: count for n in names})
        results = await asyncio.gather(*(self.batchers[n].submit(parsed.images, parsed.prompts) for n in names))
        sub = dict(zip(names, results))
        self.counters["requests"] += 1
        self.counters["images"] += count
        return self.combiner(sub), sub

    async def scored_items(self, items) -> dict:
        """Each reward scores the items that ask for it and that it can score; a reward that fails fails alone."""
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(check_item_media, items, self.by_name)
        wanted: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            for name in (n for n in item.rewards if n not in item.errors):
                wanted.setdefault(name, []).append(index)
        self._refuse_if_full({n: len(indices) for n, indices in wanted.items()})
        results = await asyncio.gather(*(self.batchers[n].submit([items[i].media for i in wanted[n]],
                                                                 [items[i].prompt for i in wanted[n]]) for n in wanted),
                                       return_exceptions=True)
        scores, failures = {}, {}
        for name, result in zip(wanted, results):
            if isinstance(result, Exception):
                failures[name] = f"scoring failed: {type(result).__name__}: {result}"
            else:
                self.combiner.observe(name, result)
                scores[name] = dict(zip(wanted[name], result.tolist()))
        self.counters["requests"] += 1
        self.counters["images"] += len({i for indices in wanted.values() for i in indices})
        return unirl_answer(items, scores, failures)

    async def answer(self, request, parse, respond):
        """Read, parse (in a thread: decoding is CPU work), score and respond; every failure is one status."""
        from starlette.concurrency import run_in_threadpool

        try:
            body = await self.read_body(request)
            parsed = await run_in_threadpool(parse, body)
            combined, sub = await self.scored(parsed)
        except ProtocolError as e:
            return self.error(e.status, e.message)
        except QueueFull as e:
            return self.error(503, f"{e}; retry later")
        except Exception as e:  # noqa: BLE001 - a model failure fails this request, not the server
            return self.error(500, f"scoring failed: {type(e).__name__}: {e}")
        return respond(combined.tolist(), {name: scores.tolist() for name, scores in sub.items()})


def _add_information_routes(app, state: ServerState, rewards: list[LoadedReward], config: ServeConfig) -> None:
    """GET /health, /v1/rewards, /v1/stats and /metrics."""
    from fastapi.responses import PlainTextResponse

    @app.get("/health")
    async def health():
        # rewards as {NAME: [readiness]}: the roster UniRL's executor checks before its first call
        return {"status": "ok", "version": VERSION, "rewards": {name: [f"{name}:ready"] for name in state.by_name}}

    @app.get("/v1/rewards")
    async def list_rewards():
        return {"rewards": [reward.describe() for reward in rewards], "normalise": config.normalise}

    @app.get("/v1/stats")
    async def stats():
        return state.statistics()

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(_prometheus(state.statistics()))


def _add_scoring_routes(app, state: ServerState, config: ServeConfig) -> None:
    """POST /v1/score (ours), /score (UniRL), /compute (Flow-Factory) and / (the pickle protocol, if accepted)."""
    from fastapi import Request
    from fastapi.responses import Response
    from starlette.concurrency import run_in_threadpool

    limits = state.limits

    @app.post("/v1/score")
    async def score(request: Request):
        return await state.answer(request, lambda body: parse_score_request(
            body, request.headers.get("content-type", ""), request.query_params.get("rewards"), limits),
            lambda combined, rewards: {"scores": combined, "rewards": rewards})

    @app.post("/score")
    async def score_unirl(request: Request):
        try:
            items = await run_in_threadpool(parse_unirl_request, await state.read_body(request), limits)
            return await state.scored_items(items)
        except ProtocolError as e:
            return state.error(e.status, e.message)
        except QueueFull as e:
            return state.error(503, f"{e}; retry later")

    @app.post("/compute")
    async def score_flow_factory(request: Request):
        return await state.answer(request, lambda body: parse_compute_request(body, limits),
                                  lambda combined, rewards: {"rewards": combined})

    @app.post("/")
    async def score_pickle(request: Request):
        if not config.accept_pickle:
            return state.error(404, "the pickle protocol (ddpo-pytorch, flow_grpo) is off: start the server with "
                                    "--accept-pickle to serve it at POST /")
        return await state.answer(request, lambda body: parse_pickle_request(body, limits),
                                  lambda combined, rewards: Response(pickle_answer(combined, rewards), media_type=PICKLE))


def create_app(rewards: list[LoadedReward], config: ServeConfig):
    from fastapi import FastAPI, Request

    state = ServerState(rewards, config)
    token = config.token or os.environ.get("VISREWARD_TOKEN")

    @asynccontextmanager
    async def lifespan(app):
        for batcher in state.batchers.values():
            batcher.start()
        yield
        for batcher in state.batchers.values():
            await batcher.stop()

    app = FastAPI(title="visreward reward server", version=VERSION, lifespan=lifespan)

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token and request.url.path != "/health":
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return state.error(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)")
        return await call_next(request)

    _add_information_routes(app, state, rewards, config)
    _add_scoring_routes(app, state, config)
    return app


def serve(config: ServeConfig) -> None:
    import uvicorn

    rewards = load_rewards(config)
    app = create_app(rewards, config)
    print(f"serving {', '.join(f'{r.name} (weight {r.weight:g})' for r in rewards)} on http://{config.host}:{config.port}"
          f" (POST /v1/score)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
