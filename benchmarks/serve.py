"""The reward server under load: concurrent clients against in-process score() on the same images.

    python benchmarks/serve.py [--clients 8] [--requests 50] [--images 8]

For the default GAN-RM (EfficientNet-Lite0 + a head trained here on photo crops) and a tiny
random Qwen2.5-VL judge, `visreward serve` runs as a subprocess on 127.0.0.1 and `--clients`
threads each send `--requests` requests of `--images` 256 px images through RemoteReward:
raw uint8 (.npz, the default form) and base64 PNG in JSON, and as flow_grpo's remote rewards do (pickled
JPEG bytes, POST / with --accept-pickle). Reported: the server's images per
second against in-process `score()` on the same images in the same run (target >= 0.8), p50
and p99 request latency, and the server's peak resident memory (VmHWM). On a small machine the
clients share the cores with the server, so the table also gives images per CPU-second of the
server process against in-process `score()`'s: the server's own overhead per image.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_vlms import save_tiny_qwen2_5_vl  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "immunohistochemistry", "hubble_deep_field")


def crops(count: int, seed: int, size: int = 256) -> list[Image.Image]:
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in PHOTOS]
    out = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(size, min(photo.size) + 1))
        x, y = rng.integers(0, photo.width - side + 1), rng.integers(0, photo.height - side + 1)
        out.append(photo.crop((x, y, x + side, y + side)).resize((size, size)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(spec: str, port: int) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen([sys.executable, "-m", "visreward.cli", "serve", "--reward", f"r={spec}", "--port", str(port),
                                "--accept-pickle"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError("server did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def remote_reward_sender(url: str, binary: bool):
    """One client's call through RemoteReward: raw uint8 (.npz), or base64 PNG in JSON."""
    from visreward.serving import RemoteReward

    remote = RemoteReward(url)

    def send(batch: list) -> None:
        if binary:  # images, or [T,H,W,3] clips
            remote.score(np.stack([np.asarray(item) for item in batch]))
        else:  # base64 PNG in JSON: sizes differ in the request, or the caller asks for it
            remote.score([batch[0].resize((255, 256)), *batch[1:]])  # one odd size forces the JSON form

    return send


def flow_grpo_sender(url: str):
    """One client's call as flow_grpo's remote rewards make it: JPEG bytes in a pickled dict, POST /."""
    import httpx

    session = httpx.Client(timeout=120)

    def send(batch: list[Image.Image]) -> None:
        jpeg = []
        for image in batch:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG")
            jpeg.append(buffer.getvalue())
        response = session.post(f"{url}/", content=pickle.dumps({"images": jpeg}))
        response.raise_for_status()
        assert len(pickle.loads(response.content)["outputs"]) == len(batch)

    return send


def clip_json_sender(url: str):
    """One client's call with clips as base64 MP4 in JSON (what a trainer holding encoded clips sends)."""
    import httpx

    session = httpx.Client(timeout=120)

    def send(batch: list[bytes]) -> None:
        response = session.post(f"{url}/v1/score", json={"videos": [base64.b64encode(clip).decode() for clip in batch]})
        response.raise_for_status()

    return send


FORMS = {"uint8 npz": lambda url: remote_reward_sender(url, True), "base64 PNG": lambda url: remote_reward_sender(url, False),
         "flow_grpo pickle (JPEG)": flow_grpo_sender}
CLIP_FORMS = {"uint8 [B,T,H,W,3] npz": lambda url: remote_reward_sender(url, True), "base64 MP4 in JSON": clip_json_sender}


def load(url: str, requests: list[list], clients: int, sender) -> tuple[float, list[float]]:
    latencies: list[float] = []
    per_client = [requests[i::clients] for i in range(clients)]

    def client(batches):
        send = sender(url)
        for batch in batches:
            start = time.perf_counter()
            send(batch)
            latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(batches,)) for batches in per_client]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(len(r) for r in requests) / (time.perf_counter() - start), latencies


def in_process_rate(spec: str, images: list[Image.Image]) -> tuple[float, float]:
    """(images per second, images per CPU-second) of score() in this process."""
    from visreward import load_reward_model

    model = load_reward_model(spec, backend="auto")
    model.score(images[:64])  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(images), 64):
        model.score(images[first : first + 64])
    return len(images) / (time.perf_counter() - start), len(images) / (time.process_time() - cpu)


def train_gan_rm(folder: Path) -> str:
    from visreward import RewardTrainingConfig, train_reward_model

    for name, seed in (("target", 1), ("generated", 2)):
        (folder / name).mkdir(parents=True)
        for i, image in enumerate(crops(40, seed, 128)):
            image.save(folder / name / f"{i}.png")
    train_reward_model(RewardTrainingConfig(target=[str(folder / "target")], generated=[str(folder / "generated")],
                                            output=str(folder / "rm"), progress=False))
    return str(folder / "rm")


def motion_clips(folder: Path, count: int, motion: str, seed: int) -> list[Path]:
    """Real digits moving as `motion` (or standing and shaking: "still"), 8 frames of 32x32, as mp4."""
    from visreward.io.digits import digit_clip, real_digits
    from visreward.io.videos import write_video

    images, _ = real_digits("train")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    jitter = 1.5 if motion == "still" else 0.0
    digits = [images[(seed * 300 + i) % len(images)] for i in range(count)]
    return [write_video(folder / f"{i:04d}.mp4", digit_clip(digit, motion, jitter=jitter, rng=rng), fps=8)
            for i, digit in enumerate(digits)]


def train_video_gan_rm(folder: Path) -> str:
    from visreward import RewardTrainingConfig, train_reward_model

    motion_clips(folder / "target", 40, "right", 1), motion_clips(folder / "generated", 40, "still", 2)
    train_reward_model(RewardTrainingConfig(target=[str(folder / "target")], generated=[str(folder / "generated")],
                                            output=str(folder / "rm"), frames=4, progress=False))
    return str(folder / "rm")


def measure(name: str, spec: str, form: str, sender, requests: list[list], clients: int, local: tuple[float, float]) -> None:
    """One row: the server under `clients` concurrent senders of `requests`, against in-process rates `local`."""
    port = free_port()
    server = start_server(spec, port)
    try:
        cpu = cpu_seconds(server.pid)
        rate, latencies = load(f"http://127.0.0.1:{port}", requests, clients, sender)
        per_cpu = sum(len(r) for r in requests) / (cpu_seconds(server.pid) - cpu)
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(f"| {name} | {form} | {rate:.1f} | {local[0]:.1f} | {rate / local[0]:.2f} | {per_cpu:.1f} | "
              f"{local[1]:.1f} | {per_cpu / local[1]:.2f} | {p50:.0f} ms | {p99:.0f} ms | "
              f"{peak_rss_mb(server.pid):.0f} MB |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--clip-requests", type=int, default=10, help="requests per client of --images clips each")
    args = parser.parse_args()
    images = crops(args.clients * args.requests * args.images, 0)
    requests = [images[i : i + args.images] for i in range(0, len(images), args.images)]
    print(f"{args.clients} clients x {args.requests} requests x {args.images} images of 256 px ({len(images)} images); "
          f"clips: {args.clients} x {args.clip_requests} requests x {args.images} clips of 8 frames of 32x32\n")
    print("| reward | form | server items/s | in-process items/s | ratio | server items per CPU-s | in-process items per "
          "CPU-s | ratio | p50 latency | p99 latency | server peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        rewards = (("default GAN-RM", train_gan_rm(Path(tmp))),
                   ("tiny Qwen2.5-VL judge", "vlm:" + str(save_tiny_qwen2_5_vl(Path(tmp) / "judge"))))
        for name, spec in rewards:
            local = in_process_rate(spec, images)
            for form, sender in FORMS.items():
                measure(name, spec, form, sender, requests, args.clients, local)
        from visreward.io.videos import FrameSampling, read_clip

        spec = train_video_gan_rm(Path(tmp) / "video")
        paths = motion_clips(Path(tmp) / "clips", args.clients * args.clip_requests * args.images, "right", 3)
        local = in_process_rate(spec, [str(p) for p in paths])
        encoded = [p.read_bytes() for p in paths]
        frames = [read_clip(p, FrameSampling(8)).permute(0, 2, 3, 1).numpy() for p in paths]  # [T,H,W,3] uint8
        for form, sender in CLIP_FORMS.items():
            items = frames if "npz" in form else encoded
            batches = [items[i : i + args.images] for i in range(0, len(items), args.images)]
            measure("video GAN-RM (4 frames)", spec, form, sender, batches, args.clients, local)


if __name__ == "__main__":
    main()
