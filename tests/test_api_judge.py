"""vlm-api:URL#MODEL against an OpenAI-compatible server on 127.0.0.1 that answers as the chat-completions API documents
(choices[0].logprobs.content[0].top_logprobs), with a yes-probability set by the first image's brightness, so every
score has a hand computation."""

import base64
import io
import math
import socket
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from visreward.core.errors import VisrewardError
from visreward.io.digits import digit_prompt
from visreward.rewards.generative.templates import question
from visreward.rewards.loader import load_reward_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_image(body: dict) -> np.ndarray:
    url = next(part for part in body["messages"][0]["content"] if part["type"] == "image_url")["image_url"]["url"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.fixture(scope="module")
def engine():
    """(base URL, the requests it received, a switch for how it answers)."""
    import uvicorn
    from fastapi import FastAPI, Request

    app, received, mode = FastAPI(), [], {"answer": "logprobs"}

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        received.append(body)
        p = float(_first_image(body).mean()) / 255  # the yes-probability the test expects back
        if mode["answer"] == "no-logprobs":
            return {"choices": [{"message": {"role": "assistant", "content": "Yes"}}]}
        top = [{"token": " Yes", "logprob": math.log(0.9 * p)}, {"token": "no", "logprob": math.log(0.9 * (1 - p))},
               {"token": "Maybe", "logprob": math.log(0.1)}]
        if mode["answer"] == "neither":
            top = top[2:]
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes"},
                             "logprobs": {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                                       "top_logprobs": top}]}}]}

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", received, mode
    server.should_exit = True
    thread.join(timeout=10)


def _gray(value: int) -> Image.Image:
    return Image.new("RGB", (16, 16), (value, value, value))


def test_pointwise_and_pairwise_scores_are_the_yes_share_of_the_first_token(engine):
    url, received, _ = engine
    judge = load_reward_model(f"vlm-api:{url}#tiny/judge")
    received.clear()
    assert judge.score([_gray(51), _gray(153)], ["a cat", "a dog"]).tolist() == pytest.approx([0.2, 0.6], abs=1e-6)
    asked = {r["messages"][0]["content"][-1]["text"]: r for r in received}  # sent concurrently: in any order
    cat = asked[question("a cat", None, False)]
    assert (cat["model"], cat["max_tokens"], cat["logprobs"], cat["top_logprobs"]) == ("tiny/judge", 1, True, 20)
    assert cat["messages"][0]["content"][-1]["type"] == "text" and (_first_image(cat) == 51).all()
    assert (_first_image(asked[question("a dog", None, False)]) == 153).all()
    received.clear()
    # against a reference of 102 in both orders: (P(candidate first) + 1 - P(reference first)) / 2
    scores = judge.score([_gray(51), _gray(153)], ["a cat", "a dog"], references=[_gray(102), _gray(102)])
    assert scores.tolist() == pytest.approx([(0.2 + 0.6) / 2, (0.6 + 0.6) / 2], abs=1e-6)
    assert len(received) == 4 and all(len(r["messages"][0]["content"]) == 3 for r in received)
    assert {r["messages"][0]["content"][-1]["text"] for r in received} == {question(p, None, True) for p in ("a cat", "a dog")}


def test_answers_without_a_yes_or_no_probability_are_one_line_errors(engine):
    url, _, mode = engine
    judge = load_reward_model(f"vlm-api:{url}#tiny/judge")
    try:
        for answer, message in (("no-logprobs", "no first-token top_logprobs"), ("neither", "neither yes nor no")):
            mode["answer"] = answer
            with pytest.raises(VisrewardError, match=message):
                judge.score([_gray(51)], ["a cat"])
    finally:
        mode["answer"] = "logprobs"
    with pytest.raises(VisrewardError, match="expected vlm-api:URL#MODEL"):
        load_reward_model("vlm-api:127.0.0.1:8000/v1")
    with pytest.raises(VisrewardError, match="has no gradient"):
        judge.check_differentiable()


def test_grpo_trains_against_a_judge_behind_an_api(engine, tiny_generator_dir, tmp_path):
    from visreward.post_training import GRPOConfig, run_grpo

    url, received, _ = engine
    received.clear()
    metrics = run_grpo(GRPOConfig(generator=str(tiny_generator_dir), reward=[f"vlm-api:{url}#tiny/judge"],
                                  prompts=[digit_prompt(1), digit_prompt(2)], output=str(tmp_path / "grpo"), steps=1,
                                  group_size=2, prompts_per_step=2, sample_steps=3, batch_size=4, progress=False,
                                  stop_on_hacking=False))
    row = metrics["history"][0]
    assert len(received) == 4 and row["first_ratio_error"] < 1e-5 and 0 < row["reward_mean_all"] < 1
    assert torch.isfinite(torch.tensor(row["policy_loss"]))
