"""`visreward serve` as a trainer meets it: a subprocess on 127.0.0.1, raw HTTP and the clients,
hostile payloads, a dropped client, a full queue and a restart. Every wait is bounded."""

import asyncio
import base64
import io
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import visreward
from visreward.rewards.combination import RewardCombiner, rank_in_batch
from visreward.serving import AsyncRemoteReward, RemoteReward, flow_grpo_multi_score, flow_grpo_reward_fn

TOKEN = "s3cret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(rm_dir, port: int, *flags: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "visreward.cli", "serve", "--reward", f"rm={rm_dir}",
                                "--reward", f"half={rm_dir}:0.5", "--port", str(port), *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(process.stdout.read())
        time.sleep(0.3)
    process.kill()
    raise TimeoutError("the server did not come up in 120 s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def server(rm_dir):
    port = _free_port()
    process = _start(rm_dir, port, "--token", TOKEN, "--max-request-mb", "1", "--accept-pickle")
    yield f"http://127.0.0.1:{port}"
    _stop(process)


@pytest.fixture(scope="module")
def images(digit_folders):
    return sorted(digit_folders["heldout_target"].glob("*.png"))[:10] + sorted(digit_folders["heldout_generated"].glob("*.png"))[:6]


@pytest.fixture(scope="module")
def local_scores(rm_dir, images):
    model = visreward.load_reward_model(str(rm_dir), backend="auto")  # the server's own default runtime
    return model.score([str(p) for p in images]).numpy()


def _b64(path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _post(url, body=None, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/v1/score", json=body, headers=headers, timeout=60, **kwargs)


def test_raw_http_and_remote_reward_score_like_the_model_in_process(server, images, local_scores):
    prompts = ["a handwritten digit"] * len(images)
    response = _post(server, {"images": [_b64(p) for p in images], "prompts": prompts})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"scores", "rewards"} and set(body["rewards"]) == {"rm", "half"}
    assert np.abs(np.array(body["rewards"]["rm"]) - local_scores).max() < 1e-5
    assert np.abs(np.array(body["scores"]) - 1.5 * local_scores).max() < 1e-5  # rm + 0.5 * half

    remote = RemoteReward(server, rewards=["rm"], token=TOKEN, batch_size=5)  # 4 requests, reassembled in order
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in images])
    assert np.abs(remote.score(pixels.float() / 255) - local_scores).max() < 1e-5  # NCHW float in [0, 1]
    assert np.abs(remote.score(pixels.permute(0, 2, 3, 1).numpy()) - local_scores).max() < 1e-5  # NHWC uint8
    scores, info = remote.reward_fn([Image.open(p) for p in images], prompts, [{}] * len(images))
    assert np.abs(scores - local_scores).max() < 1e-5 and set(info["rewards"]) == {"rm"}

    both = AsyncRemoteReward(server, token=TOKEN, batch_size=3)
    combined, info = asyncio.run(both.score_with_info(pixels.float() / 255, prompts))
    assert np.abs(info["rewards"]["half"] - local_scores).max() < 1e-5
    assert np.abs(combined - 1.5 * local_scores).max() < 1e-5


def test_flow_grpo_calls_get_their_shapes(server, images, local_scores):
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in images]) / 255
    prompts, metadata = ["a digit"] * len(images), [{} for _ in images]
    remote = RemoteReward(server, token=TOKEN)
    scores, info = flow_grpo_reward_fn(remote, "rm")(pixels, prompts, metadata)
    assert scores.shape == (len(images),) and info == {} and np.abs(scores - local_scores).max() < 1e-5
    details, info = flow_grpo_multi_score(remote)(pixels, prompts, metadata, only_strict=True)
    assert set(details) == {"rm", "half", "avg"} and np.abs(details["avg"] - 1.5 * local_scores).max() < 1e-5


def _flow_grpo_pickle(pixels: np.ndarray, **extra) -> bytes:
    """A request body as flow_grpo's remote rewards build it: NHWC uint8 images JPEG-encoded by PIL at its default
    quality, prompts (where sent) a numpy array of str from np.array_split, pickled with the default protocol."""
    jpeg = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG")
        jpeg.append(buffer.getvalue())
    return pickle.dumps({"images": jpeg, **extra})


def _post_pickle(url, body: bytes):
    return httpx.post(f"{url}/", content=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def test_flow_grpos_pickled_requests_score_like_the_model_in_process(server, rm_dir, images):
    pixels = np.stack([np.array(Image.open(p).convert("RGB")) for p in images])
    jpeg_decoded = [Image.open(io.BytesIO(blob)) for blob in pickle.loads(_flow_grpo_pickle(pixels))["images"]]
    local = visreward.load_reward_model(str(rm_dir), backend="auto").score(jpeg_decoded).numpy()
    prompts = np.array_split(np.array(["a handwritten digit"] * len(images)), 1)[0]  # unifiedreward's client
    requests = {"unifiedreward": _flow_grpo_pickle(pixels, prompts=prompts),
                "deqa": _flow_grpo_pickle(pixels),
                "geneval": _flow_grpo_pickle(pixels, meta_datas=[{"tag": "single_object"}] * len(images), only_strict=True)}
    for client, body in requests.items():
        response = _post_pickle(server, body)
        assert response.status_code == 200, (client, response.text)
        answer = pickle.loads(response.content)
        assert np.abs(np.array(answer["outputs"]) - 1.5 * local).max() < 1e-5, client  # rm + 0.5 * half
        assert answer["scores"] == answer["outputs"] and np.abs(np.array(answer["rewards"]["rm"]) - local).max() < 1e-5


def _unirl_item(image: Image.Image, prompt: str, rewards: list[str]) -> dict:
    """One entry as UniRL's RewardServiceExecutor builds it: JPEG at quality 95, base64, one history turn."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return {"history": [{"text": prompt, "image_b64": base64.b64encode(buffer.getvalue()).decode("ascii")}],
            "required_rewards": rewards, "metadata": None}


def test_unirls_requests_score_item_by_item_like_the_model_in_process(server, rm_dir, images):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{server}/health", timeout=10).json()["rewards"] == {"rm": ["rm:ready"], "half": ["half:ready"]}
    items = [_unirl_item(Image.open(p), "a handwritten digit", ["rm", "half"]) for p in images[:6]]
    items[2]["history"][0]["image_b64"] = base64.b64encode(b"not an image").decode()
    items[4]["required_rewards"] = ["rm", "nope"]
    response = httpx.post(f"{server}/score", json={"requests": items}, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    decoded = [Image.open(io.BytesIO(base64.b64decode(item["history"][0]["image_b64"]))) for k, item in enumerate(items) if k != 2]
    local = visreward.load_reward_model(str(rm_dir), backend="auto").score(decoded).numpy()
    scored = [0, 1, 3, 4, 5]  # local[j] is item scored[j]'s score
    assert np.abs(np.array([body["results"][k]["rm"]["score"] for k in scored]) - local).max() < 1e-5
    half = np.array([body["results"][k]["half"]["score"] for k in (0, 1, 3, 5)])  # raw: weights are UniRL's to apply
    assert np.abs(half - local[[0, 1, 2, 4]]).max() < 1e-5
    assert body["results"][2] == {} and set(body["errors"][2]) == {"rm", "half"}
    assert "requests[2]: not a readable image" in body["errors"][2]["rm"]
    assert set(body["results"][4]) == {"rm"} and body["errors"][4]["nope"].startswith("unknown reward nope")
    assert [body["errors"][k] for k in (0, 1, 3, 5)] == [{}] * 4
    bad = httpx.post(f"{server}/score", json={"requests": []}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "non-empty 'requests' list" in bad.json()["error"]


def test_flow_factorys_requests_score_like_the_model_in_process(server, images, local_scores):
    """As Flow-Factory's RemotePointwiseRewardModel sends them: PIL images as base64 PNG under 'image', prompts under
    'prompt', unused conditions as null; it reads 'rewards', the combined score."""
    def png(image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    pictures = [Image.open(p) for p in images]
    payload = {"prompt": ["a handwritten digit"] * len(images), "image": [png(p) for p in pictures], "video": None,
               "condition_images": None, "condition_videos": None, "kwargs": None}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(f"{server}/compute", json=payload, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert np.abs(np.array(response.json()["rewards"]) - 1.5 * local_scores).max() < 1e-5  # rm + 0.5 * half
    frames = [png(p) for p in pictures[:2]]
    response = httpx.post(f"{server}/compute", json={**payload, "image": None, "video": [frames, frames[:1] + ["%%"]]},
                          headers=headers, timeout=60)
    assert response.status_code == 400 and "video[1][1]: not valid base64" in response.json()["error"]


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_hostile_pickle_runs_nothing_gets_400_and_the_server_keeps_serving(server, images, local_scores, tmp_path):
    marker = tmp_path / "ran"
    pixels = np.stack([np.array(Image.open(p).convert("RGB")) for p in images[:2]])
    cases = [(pickle.dumps({"images": [_RunsACommand(marker)]}), "names posix.system"),
             (pickle.dumps({"images": np.array([b"x", 1], dtype=object)}), "object arrays are refused"),
             (pickle.dumps({"images": [b"not an image"]}), "images[0]: not a readable image"),
             (pickle.dumps(["images"]), "a dict with an 'images' list"),
             (_flow_grpo_pickle(pixels, prompts=["one"]), "one string per image (2 images, 1 prompts)"),
             (b"\x80\x04not a pickle", "not an acceptable pickle")]
    for body, message in cases:
        response = _post_pickle(server, body)
        assert response.status_code == 400 and message in response.json()["error"], (message, response.text)
    assert not marker.exists()
    response = _post_pickle(server, pickle.dumps({"images": [Path(p).read_bytes() for p in images]}))  # PNG bytes too
    assert np.abs(np.array(pickle.loads(response.content)["rewards"]["rm"]) - local_scores).max() < 1e-5


def test_clips_over_http_score_like_the_video_model_in_process(rm_dir, video_rm, motion_clips, tiny_hf_encoders):
    """mp4 bytes in JSON, uint8 frames in .npz through RemoteReward, and UniRL's video_b64 items; a broken or cut clip
    among good ones is a 400 naming it (a per-item error for UniRL), and each reward gets only what it scores. A
    standard reward (pickscore:) serves beside them."""
    from visreward.io.videos import FrameSampling, read_clip

    paths = sorted((motion_clips / "gliding").glob("*.mp4"))[:3] + sorted((motion_clips / "shaking").glob("*.mp4"))[:3]
    model = visreward.load_reward_model(str(video_rm[0]), backend="auto")
    local = model.score([str(p) for p in paths]).numpy()
    clips = torch.stack([read_clip(p, FrameSampling(8)) for p in paths]).float() / 255  # [B,T,3,H,W]
    local_tensors = model.score(clips).numpy()
    port = _free_port()
    pickscore = f"pickscore:{tiny_hf_encoders['clip']}"
    process = _start(rm_dir, port, "--reward", f"vid={video_rm[0]}", "--reward", f"pick={pickscore}:0.5")
    url = f"http://127.0.0.1:{port}"
    try:
        listed = httpx.get(f"{url}/v1/rewards", timeout=10).json()["rewards"]
        assert [(r["name"], r["kind"], r["weight"]) for r in listed][2:] == [("vid", "gan-rm", 1.0), ("pick", "pickscore", 0.5)]
        pictures = [Image.new("RGB", (32, 32), color) for color in ((200, 30, 30), (20, 180, 40), (90, 90, 250))]
        prompts = ["a photo of 1", "a digit 7", "a handwritten digit"]
        served = RemoteReward(url, rewards=["pick"]).score_with_info(pictures, prompts)[1]["rewards"]["pick"]
        assert np.abs(served - visreward.load_reward_model(pickscore).score(pictures, prompts).numpy()).max() < 1e-4
        videos = [base64.b64encode(p.read_bytes()).decode() for p in paths]
        response = httpx.post(f"{url}/v1/score", json={"videos": videos, "rewards": ["vid"]}, timeout=60)
        assert response.status_code == 200, response.text
        assert np.abs(np.array(response.json()["rewards"]["vid"]) - local).max() < 1e-5
        assert np.abs(RemoteReward(url, rewards=["vid"]).score(clips) - local_tensors).max() < 1e-5
        cut = base64.b64encode(paths[1].read_bytes()[: len(paths[1].read_bytes()) // 3]).decode()
        for broken, message in ((cut, "videos[1]: "), (base64.b64encode(b"not a video").decode(), "videos[1]: not a readable")):
            response = httpx.post(f"{url}/v1/score", json={"videos": [videos[0], broken, videos[2]], "rewards": ["vid"]}, timeout=60)
            assert response.status_code == 400 and message in response.json()["error"], response.text
        wrong = httpx.post(f"{url}/v1/score", json={"videos": videos[:1]}, timeout=60)  # to every reward, rm included
        assert wrong.status_code == 400 and "reward rm scores images, and the request sends videos" in wrong.json()["error"]
        png = io.BytesIO()
        Image.new("RGB", (16, 16)).save(png, format="PNG")
        wrong = httpx.post(f"{url}/v1/score", json={"images": [base64.b64encode(png.getvalue()).decode()], "rewards": ["vid"]},
                           timeout=60)
        assert wrong.status_code == 400 and "reward vid scores videos" in wrong.json()["error"]
        items = [{"video_b64": videos[0], "prompt": "a digit", "required_rewards": ["vid", "rm"]},
                 {"video_b64": cut, "prompt": "a digit", "required_rewards": ["vid"]},
                 {"video_b64": videos[3], "prompt": "a digit", "required_rewards": ["vid"]}]
        body = httpx.post(f"{url}/score", json={"requests": items}, timeout=60).json()
        assert abs(body["results"][0]["vid"]["score"] - local[0]) < 1e-5 and abs(body["results"][2]["vid"]["score"] - local[3]) < 1e-5
        assert "scores images, and the item is a clip" in body["errors"][0]["rm"] and body["results"][1] == {}
        assert body["errors"][1]["vid"].startswith("requests[1]: ")
    finally:
        _stop(process)


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height: a decompression bomb's calling card."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_hostile_requests_get_their_status_and_the_server_keeps_serving(server, images, local_scores):
    good = _b64(images[0])
    cases = [
        ({"images": [good, "%%% not base64"]}, 400, "images[1]: not valid base64"),
        ({"images": [good, base64.b64encode(b"plain text").decode()]}, 400, "images[1]: not a readable image"),
        ({"images": [base64.b64encode(_png_claiming(20000, 20000)).decode()]}, 400, "images[0]: decompression bomb"),
        ({"images": [good, good], "prompts": ["one"]}, 400, "2 images but 1 prompts"),
        ({"images": [good], "rewards": ["nope"]}, 400, "unknown reward(s) nope"),
        ({"images": []}, 400, "non-empty 'images' (or 'videos') list"),
        ({"images": [_b64(images[0]) * 1 + "A" * (2**20)]}, 413, "over the 1048576-byte limit"),
    ]
    for body, status, message in cases:
        response = _post(server, body)
        assert response.status_code == status and message in response.json()["error"], (message, response.text)
    assert _post(server, {"images": [good]}, token=None).status_code == 401
    assert _post(server, {"images": [good]}, token="wrong").status_code == 401
    assert httpx.post(f"{server}/v1/score", content=b"{not json", timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 400
    response = _post(server, {"images": [_b64(p) for p in images], "rewards": ["rm"]})
    assert np.abs(np.array(response.json()["scores"]) - local_scores).max() < 1e-5
    stats = httpx.get(f"{server}/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert stats["errors"]["400"] >= 6 and stats["rewards"]["rm"]["count"] >= len(images)
    assert 'visreward_reward_mean{reward="rm"}' in httpx.get(f"{server}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    listed = httpx.get(f"{server}/v1/rewards", headers={"Authorization": f"Bearer {TOKEN}"}).json()["rewards"]
    assert [(r["name"], r["kind"], r["weight"], r["encoder"]) for r in listed] == [
        ("rm", "gan-rm", 1.0, "efficientnet-lite0"), ("half", "gan-rm", 0.5, "efficientnet-lite0")]
    assert listed[0]["metrics"]["heldout"]["auc"] > 0.5


def test_a_client_that_sends_a_whole_request_and_drops_the_socket_leaves_the_queue_empty(server, images, local_scores):
    port = int(server.rsplit(":", 1)[1])

    def stats():
        return httpx.get(f"{server}/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()

    before = stats()
    body = json.dumps({"images": [_b64(p) for p in images], "rewards": ["rm"]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    deadline, after = time.time() + 60, before
    while time.time() < deadline and (after["batches"]["rm"] == before["batches"]["rm"] or after["queue"]["rm"]):
        time.sleep(0.1)
        after = stats()
    assert after["batches"]["rm"] > before["batches"]["rm"]  # the dropped request reached the batcher
    assert after["queue"] == {"rm": 0, "half": 0}
    response = _post(server, {"images": [_b64(p) for p in images], "rewards": ["rm"]})
    assert np.abs(np.array(response.json()["scores"]) - local_scores).max() < 1e-5


def test_a_request_that_makes_the_model_fail_in_a_merged_batch_fails_alone():
    from visreward.serving.batcher import DynamicBatcher

    batches = []

    def score(images, prompts):
        batches.append(list(prompts))
        if "bad" in prompts:
            raise ValueError("this image breaks the model")
        return [10.0 * image for image in images]

    async def both():
        batcher = DynamicBatcher(score, max_batch=8, max_wait_ms=500)
        batcher.start()
        try:
            results = await asyncio.gather(batcher.submit([1, 2], ["good", "good"]), batcher.submit([3], ["bad"]),
                                           return_exceptions=True)
            return results, batcher.pending
        finally:
            await batcher.stop()

    (good, bad), pending = asyncio.run(both())
    assert good.tolist() == [10.0, 20.0] and isinstance(bad, ValueError) and pending == 0
    assert batches == [["good", "good", "bad"], ["good", "good"], ["bad"]]  # merged, failed, then one by one


def test_a_full_queue_answers_503_then_recovers(rm_dir, images, local_scores):
    port = _free_port()
    process = _start(rm_dir, port, "--max-queue", "8", "--max-wait-ms", "1500", "--max-batch", "64")
    url = f"http://127.0.0.1:{port}"
    try:
        off = httpx.post(f"{url}/", content=pickle.dumps({"images": [Path(images[0]).read_bytes()]}), timeout=10)
        assert off.status_code == 404 and "--accept-pickle" in off.json()["error"]  # the pickle protocol is off by default
        first = {}
        waiting = threading.Thread(target=lambda: first.update(r=_post(url, {"images": [_b64(p) for p in images[:8]],
                                                                               "rewards": ["rm"]}, token=None)))
        waiting.start()
        time.sleep(0.5)  # the first request's 8 images now fill the queue while their batch waits to fill
        assert _post(url, {"images": [_b64(images[8])], "rewards": ["rm"]}, token=None).status_code == 503
        waiting.join(timeout=60)
        assert np.abs(np.array(first["r"].json()["scores"]) - local_scores[:8]).max() < 1e-5
        again = _post(url, {"images": [_b64(images[8])], "rewards": ["rm"]}, token=None)
        assert again.status_code == 200 and abs(again.json()["scores"][0] - local_scores[8]) < 1e-5
    finally:
        _stop(process)


def test_the_client_rides_out_a_server_restart_with_every_score_once(rm_dir, images, local_scores):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(rm_dir, port)
    remote = RemoteReward(url, rewards=["rm"], batch_size=1, retries=10, backoff=0.2, max_backoff=2.0)
    result = {}
    many = [str(p) for p in images] * 4
    client = threading.Thread(target=lambda: result.update(scores=remote.score([Image.open(p) for p in many])))
    try:
        client.start()
        deadline = time.time() + 60
        while httpx.get(f"{url}/v1/stats", timeout=5).json()["requests"] < 3 and time.time() < deadline:
            time.sleep(0.05)
        process.kill()  # mid-run: some of the 64 requests answered, the rest not yet sent
        process.wait(timeout=20)
        process = _start(rm_dir, port)
        client.join(timeout=120)
        assert not client.is_alive()
        assert np.abs(result["scores"] - np.tile(local_scores, 4)).max() < 1e-5
        assert httpx.get(f"{url}/v1/stats", timeout=5).json()["requests"] < len(many)  # the rest came after the restart
    finally:
        _stop(process)


# --- combining rewards in-process ---------------------------------------------------------------

def test_rank_normalisation_on_literal_scores():
    assert rank_in_batch(np.array([3.0, 1.0, 2.0, 2.0])).tolist() == [1.0, 0.0, 0.5, 0.5]
    assert rank_in_batch(np.array([7.0])).tolist() == [0.5]


def test_zscore_uses_the_running_window_and_weights_apply_after_normalising():
    combiner = RewardCombiner({"a": 2.0, "b": 1.0}, normalise="zscore", window=4)
    combiner({"a": np.array([0.0, 2.0]), "b": np.array([10.0, 10.0])})
    out = combiner({"a": np.array([4.0, 6.0]), "b": np.array([10.0, 30.0])})
    a_window, b_window = np.array([0.0, 2.0, 4.0, 6.0]), np.array([10.0, 10.0, 10.0, 30.0])
    expected = 2 * (np.array([4.0, 6.0]) - 3.0) / a_window.std() + (np.array([10.0, 30.0]) - 15.0) / b_window.std()
    assert np.allclose(out, expected)
    assert combiner.stats()["b"]["mean"] == 15.0


def test_a_collapsing_spread_warns_once():
    combiner = RewardCombiner({"a": 1.0}, window=8)
    combiner({"a": np.arange(8.0)})  # the first full window: the starting spread
    with pytest.warns(UserWarning, match="spread collapsed"):
        combiner({"a": np.full(8, 3.0)})
    assert combiner.stats()["a"]["spread_collapsed"]


def test_combine_in_process_feeds_best_of_n_style_callers(rm_dir, images, local_scores):
    rm = visreward.load_reward_model(str(rm_dir), backend="auto")
    reward = visreward.combine({"a": rm, "b": rm}, weights={"b": 0.5})  # the function, after its module was imported
    files = [str(p) for p in images]
    assert torch.allclose(reward.score(files), torch.from_numpy(1.5 * local_scores).float(), atol=1e-5)
    details, _ = flow_grpo_multi_score(reward)(files, None, None)
    assert set(details) == {"a", "b", "avg"} and np.abs(details["a"] - local_scores).max() < 1e-5


def test_a_small_compressed_npz_that_would_expand_to_gigabytes_is_refused_unread():
    import zipfile

    from visreward.io.wire import NPZ, ProtocolError, parse_score_request

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("images.npy", "w") as member:
        header = {"descr": "|u1", "fortran_order": False, "shape": (2000, 1024, 1024, 3)}  # 6 GiB once decompressed
        np.lib.format.write_array_header_1_0(member, header)
        for _ in range(16):  # its first 16 MiB of zeros, as savez_compressed would stream them
            member.write(bytes(2**20))
    body = buffer.getvalue()
    assert len(body) < 2**17
    with pytest.raises(ProtocolError) as refused:
        parse_score_request(body, NPZ)
    assert refused.value.status == 413 and "compressed .npz members are refused" in refused.value.message


def test_requests_over_the_image_or_pixel_limit_get_413_before_decoding():
    from visreward.io.wire import ProtocolError, RequestLimits, encode_images, parse_score_request

    small = RequestLimits(max_images=2, max_pixels=3 * 64 * 64)
    body, content_type, _ = encode_images(np.zeros((3, 8, 8, 3), np.uint8), None, None)
    with pytest.raises(ProtocolError, match="3 images is over the 2-image limit") as refused:
        parse_score_request(body, content_type, limits=small)
    assert refused.value.status == 413
    body, content_type, _ = encode_images(np.zeros((2, 64, 128, 3), np.uint8), None, None)  # declared in the header
    with pytest.raises(ProtocolError, match="16384 pixels in all is over the 12288-pixel limit"):
        parse_score_request(body, content_type, limits=small)
    pngs = [Image.fromarray(np.zeros((64, 128, 3), np.uint8))] * 2
    body, content_type, _ = encode_images(pngs, None, None)
    with pytest.raises(ProtocolError, match="16384 pixels in all is over the 12288-pixel limit"):
        parse_score_request(body, content_type, limits=small)
    body, content_type, _ = encode_images(np.zeros((2, 64, 64, 3), np.uint8), None, None)
    assert len(parse_score_request(body, content_type, limits=small).images) == 2
