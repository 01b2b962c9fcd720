"""The RewardDance miniature: what the generative reward paradigm buys, judged by a gold preference (issue 23).

    visreward demo --judges                 # one seed
    visreward demo --judges --seeds 3

Gao, Schulman and Hilton's set-up at small scale. The gold (gold.py) plays the human rater. Proxy reward models are
trained with train-vlm-rm, as a user trains them, on Bradley-Terry labels drawn from the gold (agreeing with its
sign --agreement of the time) for pairs of the bundled generator's samples of one prompt, each proxy starting from
a small VLM pretrained on captioned real digits (train-vlm, cached). Each proxy differs from the `generative` one
(yes-token, pairwise, task instruction, a base sample as the reference, size 4x, --pairs 1000) in one thing: the
paradigm (`bradley-terry`: a regression head), the mode (`pointwise`), the context (`no-instruction`,
`target-reference`: a bold real digit as the reference, `cot`: templated reasons as targets), the size (`1x`,
`16x`), the data (`fewer-pairs`: a quarter, `more-pairs`: four times as many) or the pretraining
(`not-pretrained`: the same model with random weights).

Measured on samples no proxy trained on: each proxy's accuracy on held-out pairs against the gold's sign, and
Best-of-N by each proxy for N = 1..64 (the exact expectation over a pool of --bon-pool samples per prompt): the
gold of what it picks and its own score of it. Overoptimisation is the gold turning down while the proxy rises.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import write_text
from ..core.errors import VisrewardError
from ..core.options import VLM_SIZES, JudgesDemoConfig
from ..core.progress import time_left
from ..evaluation.metrics import mean_sd
from ..io.digits import bold_indices, digit_image, digit_prompt, ink, real_digits, write_digits_folder
from ..io.images import quantize
from .gold import gold_scores, preference_labels, temperature_for_agreement
from .image_demo import prepare_run

PROMPTS = [digit_prompt(d) for d in range(10)]
TASK_INSTRUCTION = ("You are judging handwritten digits: the better image clearly shows the digit the prompt asks for, "
                    "drawn with bold strokes.")
BEST_OF = (1, 2, 4, 8, 16, 32, 64)
CONTROL = "random reward"  # the GRPO control's name among the runs
RL_MEASURES = ("gold_start", "gold_peak", "gold_end", "proxy_start", "proxy_end", "late_proxy_group_std")


@dataclass(frozen=True)
class Proxy:
    """One proxy reward model: how it is trained and how it scores."""

    name: str
    size: str = "4x"
    data: float = 1.0  # labelled pairs, in units of --pairs
    mode: str = "pairwise"
    bradley_terry: bool = False
    instruction: bool = True
    reference: str = "base"  # pairwise scoring against a base sample of the prompt, or a bold real digit ("target")
    cot: bool = False
    pretrained: bool = True  # False: the same model with random weights, never shown a captioned digit

    @property
    def base_model(self) -> str:
        return self.size if self.pretrained else f"{self.size}-random"


PROXIES = {p.name: p for p in (
    Proxy("generative"), Proxy("bradley-terry", bradley_terry=True, mode="pointwise"), Proxy("pointwise", mode="pointwise"),
    Proxy("no-instruction", instruction=False), Proxy("target-reference", reference="target"), Proxy("cot", cot=True),
    Proxy("1x", size="1x"), Proxy("16x", size="16x"), Proxy("fewer-pairs", data=0.25), Proxy("more-pairs", data=4.0),
    Proxy("not-pretrained", pretrained=False))}


@dataclass
class Pool:
    """Samples of the base generator, as written to PNG (what every judge sees), with their prompts and gold."""

    images: torch.Tensor  # [N,3,8,8] in [0,1], 8-bit values
    prompts: list[str]
    gold: np.ndarray
    paths: list[str]


def sample_pool(generator, folder: Path, per_prompt: int, seed: int) -> Pool:
    """per_prompt samples of every digit prompt, seeds from `seed` * 10^6 on, saved as an imagefolder of PNGs."""
    from ..io.samples import GeneratedSample, save_samples

    prompts = [p for p in PROMPTS for _ in range(per_prompt)]
    seeds = [seed * 1_000_000 + i for i in range(len(prompts))]
    images = quantize(generator.generate_from_seeds(prompts, seeds)).float() / 255
    save_samples([GeneratedSample(digit_image(image.mean(dim=0).numpy()), prompt, s)
                  for image, prompt, s in zip(images, prompts, seeds)], folder)
    return Pool(images, prompts, gold_scores(images, prompts), [str(folder / f"{i:06d}.png") for i in range(len(prompts))])


def _same_prompt_pairs(pool: Pool, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n random pairs of distinct samples of one prompt: (first indices, second indices)."""
    per_prompt = len(pool.prompts) // len(PROMPTS)
    prompt = rng.integers(0, len(PROMPTS), n)
    first = rng.integers(0, per_prompt, n)
    second = (first + rng.integers(1, per_prompt, n)) % per_prompt
    return prompt * per_prompt + first, prompt * per_prompt + second


def _reason(pool: Pool, chosen: int, rejected: int) -> str:
    """A templated chain-of-thought target from the pair's own pixels and prompt (not from the gold)."""
    heavier = ink(pool.images[chosen : chosen + 1].numpy())[0] > ink(pool.images[rejected : rejected + 1].numpy())[0]
    digit = pool.prompts[chosen].split()[-1]
    return f"the better image shows a {digit} with {'bolder' if heavier else 'thinner'} strokes"


def write_labelled_pairs(pool: Pool, first: np.ndarray, second: np.ndarray, first_wins: np.ndarray, folder: Path) -> Path:
    from ..io.pairs import Pair, write_pairs

    pairs = []
    for a, b, a_wins in zip(first, second, first_wins):
        chosen, rejected = (a, b) if a_wins else (b, a)
        pairs.append(Pair(pool.prompts[chosen], pool.paths[chosen], pool.paths[rejected], float(pool.gold[chosen]),
                          float(pool.gold[rejected]), _reason(pool, chosen, rejected)))
    return write_pairs(pairs, folder)


def best_of_n_curve(proxy: np.ndarray, gold: np.ndarray, prompts: list[str], sizes: tuple[int, ...] = BEST_OF) -> dict:
    """{N: {"gold", "proxy"}}: the expected gold and proxy score of the sample the proxy ranks first among N drawn
    without replacement from each prompt's pool, exactly (the k-th lowest of K is the best of N with probability
    C(k-1, N-1) / C(K, N)), averaged over prompts."""
    curve = {}
    groups = [np.flatnonzero(np.array(prompts) == p) for p in sorted(set(prompts))]
    for n in sizes:
        gold_values, proxy_values = [], []
        for rows in groups:
            order = rows[np.argsort(proxy[rows], kind="stable")]
            k = len(order)
            if n > k:
                raise VisrewardError(f"best of {n} needs {n} samples per prompt; the pool has {k} (--bon-pool)")
            weights = np.array([math.comb(i, n - 1) for i in range(k)], dtype=np.float64) / math.comb(k, n)
            gold_values.append(float(weights @ gold[order]))
            proxy_values.append(float(weights @ proxy[order]))
        curve[str(n)] = {"gold": float(np.mean(gold_values)), "proxy": float(np.mean(proxy_values))}
    return curve


def write_references(folder: Path, generator, seed: int) -> dict[str, Path]:
    """Each prompt's reference for pairwise judges: a base sample ("base"), or a bold real digit ("target")."""
    bold = bold_indices("train", 0.25)
    labels = real_digits("train")[1]
    rng = np.random.default_rng(seed)
    chosen = [int(rng.choice(bold[labels[bold] == d])) for d in range(10)]
    sample_pool(generator, folder / "base", 1, seed)
    return {"base": folder / "base", "target": write_digits_folder(folder / "target", "train", chosen)}


def proxy_rewards(reward, pool: Pool) -> np.ndarray:
    """The proxy's reward of every pool sample, scored as a user would (a pairwise one against the references saved
    with it)."""
    from PIL import Image

    return reward.score([Image.open(path) for path in pool.paths], pool.prompts, batch_size=64).numpy()


def heldout_accuracy(reward, proxy: Proxy, pairs: Path) -> float:
    """Fraction of held-out pairs (chosen: the gold's choice) the proxy orders as the gold does."""
    from ..io.pairs import read_pairs
    from ..rewards.generative.trainer import _pairwise_accuracy

    judge, head = (reward.judge, reward.head) if proxy.bradley_terry else (reward, None)
    return _pairwise_accuracy(judge, read_pairs(pairs), judge.settings.get("instruction"), head,
                              pointwise=proxy.mode == "pointwise")


def train_proxy(config: JudgesDemoConfig, proxy: Proxy, base_model: Path, pairs: Path, references: dict[str, Path],
                output: Path, seed: int) -> dict:
    from ..rewards.generative import VLMTrainingConfig, train_vlm_reward_model

    pairwise = proxy.mode == "pairwise" and not proxy.bradley_terry
    metrics = train_vlm_reward_model(VLMTrainingConfig(
        model=str(base_model), pairs=[str(pairs)], output=str(output), mode=proxy.mode,
        references=str(references[proxy.reference]) if pairwise else None,
        cot="decision-first" if proxy.cot else None, instruction=TASK_INSTRUCTION if proxy.instruction else None,
        bradley_terry=proxy.bradley_terry, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, holdout=0.0,
        seed=seed, progress=False))
    return {"train_seconds": metrics["seconds"], "n_train": metrics["n_train"]}


class RandomReward:
    """GRPO's control: a reward that knows nothing (uniform noise), so what the gold does under it is GRPO's own."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def score(self, images, prompts=None) -> torch.Tensor:
        return torch.rand(len(images), generator=self.generator)


def rl_against(config: JudgesDemoConfig, folder: Path | None, generator_dir: str, out: Path, seed: int) -> dict:
    """GRPO from the base generator against one proxy (`vlm:FOLDER`; None: RandomReward), the gold of every step's
    samples logged."""
    from ..post_training import GRPOConfig, run_grpo

    def gold_of(images: torch.Tensor, prompts: list[str]) -> dict:
        return {"gold": float(gold_scores(images.detach().float().cpu(), prompts).mean())}

    # independent_drop watches the digit classifier, which is half of the gold: stopping on it would select by the gold
    metrics = run_grpo(GRPOConfig(generator=generator_dir, reward=[f"vlm:{folder}" if folder else "random"],
                                  prompts=PROMPTS, output=str(out),
                                  steps=config.rl_steps, lr=config.rl_lr, beta=config.rl_beta, independent_drop=1.0,
                                  seed=seed, progress=False),
                       reward=RandomReward(seed) if folder is None else None, watch=gold_of)
    curve = [{"step": row["step"], "gold": row["gold"], "proxy": row["reward_mean_all"],
              "proxy_group_std": row["reward_group_std"], "kl": row.get("kl", 0.0)} for row in metrics["history"]]
    return {"curve": curve, "stopped": metrics["stopped"], "seconds_per_step": metrics["seconds_per_step"],
            **overoptimisation(curve)}


def moving_mean(values, window: int) -> np.ndarray:
    """The means of every `window` consecutive values (of all of them, when there are fewer)."""
    width = min(window, len(values))
    return np.convolve(np.asarray(values, dtype=np.float64), np.ones(width) / width, mode="valid")


def rl_curves(per_seed: list[dict], window: int = 5) -> dict[str, dict[str, list[float]]]:
    """Per GRPO run (each proxy, and the random control): each logged measure's moving mean over `window` steps,
    averaged over the seeds (over the steps every seed reached: a run a monitor stopped is shorter), with its sd
    over the seeds as `KEY_sd`."""
    curves: dict[str, list[list[dict]]] = {}
    for seed in per_seed:
        for name, row in seed["proxies"].items():
            if "rl" in row:
                curves.setdefault(name, []).append(row["rl"]["curve"])
        if "rl_control" in seed:
            curves.setdefault(CONTROL, []).append(seed["rl_control"]["curve"])
    smoothed = {}
    for name, runs in curves.items():
        length = min(len(curve) for curve in runs)
        smoothed[name] = {"step": [row["step"] for row in runs[0][min(window, length) - 1 : length]]}
        for key in ("gold", "proxy", "proxy_group_std", "kl"):
            seeds = np.array([moving_mean([row[key] for row in curve[:length]], window) for curve in runs])
            smoothed[name][key], smoothed[name][f"{key}_sd"] = (list(v) for v in zip(*map(mean_sd, seeds.T)))
    return smoothed


def overoptimisation(curve: list[dict], window: int = 5, drop: float = 0.05) -> dict:
    """Where the gold (a moving mean over `window` steps) peaks, and whether it then falls by more than `drop` while the
    proxy's moving mean goes on rising (by a quarter of its whole rise or more): overoptimisation's onset, else None.
    A proxy that never rose (one that scores everything alike) cannot be overoptimised, whatever the gold does."""
    gold, proxy = (moving_mean([row[key] for row in curve], window) for key in ("gold", "proxy"))
    peak = int(np.argmax(gold))
    rise = proxy[-1] - proxy[0]
    still_rising = rise > 0 and proxy[-1] - proxy[peak] >= rise / 4
    onset = curve[peak + (len(curve) - len(gold))]["step"] if gold[peak] - gold[-1] > drop and still_rising else None
    late = curve[-max(1, len(curve) // 4):]
    return {"gold_start": float(gold[0]), "gold_peak": float(gold[peak]), "gold_end": float(gold[-1]),
            "proxy_start": float(proxy[0]), "proxy_end": float(proxy[-1]), "overoptimisation_onset": onset,
            "late_proxy_group_std": float(np.mean([row["proxy_group_std"] for row in late]))}


def random_vlm(size: str, folder: Path, seed: int) -> Path:
    """The pretrained models' architecture and tokenizer (the digit captions' words) with random weights from
    `seed`, saved."""
    from ..rewards.generative.pretraining import digit_captions
    from ..rewards.generative.tiny import build_tiny_llava

    model, processor = build_tiny_llava(digit_captions("train")[1], size, seed=seed)
    model.save_pretrained(folder / size)
    processor.save_pretrained(folder / size)
    return folder / size


def measure_proxy(config: JudgesDemoConfig, name: str, data: SeedData, base_model: Path, generator_dir: str) -> dict:
    """One proxy trained on its share of the seed's labelled pairs, loaded as a user loads it (a yes/no judge or the
    Bradley-Terry reward), and measured: its held-out accuracy, its Best-of-N curve, and GRPO against it when it is
    one of --rl-proxies."""
    from ..rewards.loader import load_reward_model

    proxy, folder = PROXIES[name], data.out / "proxies" / name
    row = train_proxy(config, proxy, base_model, data.pairs[pair_count(config, name)], data.references, folder,
                      data.seed)
    reward = load_reward_model(f"vlm:{folder}")
    row["heldout_accuracy"] = heldout_accuracy(reward, proxy, data.held_pairs)
    row["best_of_n"] = best_of_n_curve(proxy_rewards(reward, data.bon_pool), data.bon_pool.gold, data.bon_pool.prompts)
    if name in config.rl_proxies:
        row["rl"] = rl_against(config, folder, generator_dir, data.out / "grpo" / name, data.seed)
    return row


def pair_count(config: JudgesDemoConfig, name: str) -> int:
    """How many of the seed's labelled pairs the proxy trains on."""
    return round(PROXIES[name].data * config.pairs)


def expected_cost(config: JudgesDemoConfig, name: str) -> float:
    """A run's time in units of one --pairs training (a GRPO run costs about half of one), so that the longest start
    first and the workers finish together."""
    return 0.5 if name == CONTROL else PROXIES[name].data + 0.5 * (name in config.rl_proxies)


@dataclass
class SeedData:
    """One seed's samples and labels, drawn before any proxy trains: what its proxies train and are measured on."""

    seed: int
    out: Path
    pairs: dict[int, Path]  # labelled pairs, by their number
    held_pairs: Path
    bon_pool: Pool
    references: dict[str, Path]
    results: dict  # the labels' temperature and agreement, the gold's own Best-of-N


def draw_seed(config: JudgesDemoConfig, seed: int, out: Path, generator) -> SeedData:
    """The seed's pools of base samples, its noisy labelled pairs, its held-out pairs (labelled by the gold's sign),
    its Best-of-N pool and its references."""
    rng = np.random.default_rng(seed)
    train_pool = sample_pool(generator, out / "pool-train", config.train_per_prompt, 3 * seed + 1)
    counts = {pair_count(config, name) for name in config.proxies}
    first, second = _same_prompt_pairs(train_pool, max(counts), rng)
    tau = temperature_for_agreement(train_pool.gold[first], train_pool.gold[second], config.agreement)
    labels = preference_labels(train_pool.gold[first], train_pool.gold[second], tau, rng)
    agreement = float((labels == (train_pool.gold[first] > train_pool.gold[second])).mean())
    pairs = {n: write_labelled_pairs(train_pool, first[:n], second[:n], labels[:n], out / f"pairs-{n}")
             for n in sorted(counts)}
    held_pool = sample_pool(generator, out / "pool-heldout", config.heldout_per_prompt, 3 * seed + 2)
    held_first, held_second = _same_prompt_pairs(held_pool, config.heldout_pairs, rng)
    decided = held_pool.gold[held_first] != held_pool.gold[held_second]
    held_first, held_second = held_first[decided], held_second[decided]
    held_pairs = write_labelled_pairs(held_pool, held_first, held_second,
                                      held_pool.gold[held_first] > held_pool.gold[held_second], out / "pairs-heldout")
    bon_pool = sample_pool(generator, out / "pool-best-of-n", config.bon_pool, 3 * seed + 3)
    references = write_references(out / "references", generator, 3 * seed + 4)
    results = {"seed": seed, "tau": tau, "label_agreement": agreement, "n_heldout_pairs": int(decided.sum()),
               "oracle_best_of_n": best_of_n_curve(bon_pool.gold, bon_pool.gold, bon_pool.prompts)}
    return SeedData(seed, out, pairs, held_pairs, bon_pool, references, results)


def submit_runs(pool: Executor, config: JudgesDemoConfig, seeds: list[SeedData], generator_dir: str,
                vlms: dict[int, dict[str, Path]]) -> dict[tuple[int, str], Future]:
    """Every seed's proxies and GRPO control, longest first across the seeds, so that no seed waits on another's."""
    names = list(config.proxies) + ([CONTROL] if config.rl_control and config.rl_proxies else [])
    futures = {}
    for data, name in sorted(((data, name) for data in seeds for name in names),
                             key=lambda run: -expected_cost(config, run[1])):
        if name == CONTROL:
            futures[data.seed, name] = pool.submit(rl_against, config, None, generator_dir,
                                                   data.out / "grpo" / "random-reward", data.seed)
        else:
            futures[data.seed, name] = pool.submit(measure_proxy, config, name, data,
                                                   vlms[data.seed][PROXIES[name].base_model], generator_dir)
    return futures


def collect_runs(config: JudgesDemoConfig, seeds: list[SeedData], futures: dict[tuple[int, str], Future]) -> list[dict]:
    """Each run's line as it finishes, then each seed's results: its draw's, its proxies' and its control's."""
    keys, started = {future: key for key, future in futures.items()}, time.time()
    for done, future in enumerate(as_completed(keys), start=1):
        (seed, name), row = keys[future], future.result()
        progress = f"seed {seed}; {time_left('run', done, len(futures), started)}"
        if name == CONTROL:
            print(f"   GRPO against a random reward (the control): gold {row['gold_start']:.3f} -> "
                  f"{row['gold_end']:.3f} ({progress})")
        else:
            print(f"   {name}: held-out accuracy {row['heldout_accuracy']:.3f}, best-of-64 gold "
                  f"{row['best_of_n']['64']['gold']:.3f} ({progress})")
    per_seed = []
    for data in seeds:
        control = {"rl_control": futures[data.seed, CONTROL].result()} if (data.seed, CONTROL) in futures else {}
        per_seed.append({**data.results, "proxies": {name: futures[data.seed, name].result() for name in config.proxies},
                         **control})
    return per_seed


def save_rl_samples(seed_dir: Path, generator_dir: str, run: dict, assets: Path) -> None:
    """Grids of 4 samples per digit (the same seeds) from the base and from the GRPO runs whose gold ended highest
    and that fell furthest from their gold's peak; run["rl_samples"] names them."""
    from ..generators import load_generator
    from .report import save_grid

    rl = {name: row["rl"] for name, row in run["proxies"].items() if "rl" in row}
    if not rl:
        return
    best = max(rl, key=lambda name: rl[name]["gold_end"])
    fallen = max(rl, key=lambda name: rl[name]["gold_peak"] - rl[name]["gold_end"])
    prompts = [p for _ in range(4) for p in PROMPTS]
    seeds = [9_000_000 + i for i in range(len(prompts))]
    assets.mkdir(parents=True, exist_ok=True)
    run["rl_samples"] = {"best": best, "most_overoptimised": fallen}
    for label, source in (("base", generator_dir), ("best", str(seed_dir / "grpo" / best)),
                          ("most-overoptimised", str(seed_dir / "grpo" / fallen))):
        images = load_generator(source).generate_from_seeds(prompts, seeds).clamp(0, 1)
        save_grid(images, 10, assets / f"grid-{label}.png", scale=8)


def summarise(per_seed: list[dict]) -> dict:
    names = list(per_seed[0]["proxies"])
    table = {name: {"heldout_accuracy": mean_sd([run["proxies"][name]["heldout_accuracy"] for run in per_seed]),
                    "best_of_n": {n: {k: mean_sd([run["proxies"][name]["best_of_n"][n][k] for run in per_seed])
                                      for k in ("gold", "proxy")} for n in per_seed[0]["proxies"][name]["best_of_n"]}}
             for name in names}
    for row in table.values():  # where Best-of-N's gold peaks: beyond it, a larger N picks worse (overoptimisation)
        row["best_of_n_peak"] = int(max(row["best_of_n"], key=lambda n: row["best_of_n"][n]["gold"][0]))
    for name in names:
        runs = [run["proxies"][name]["rl"] for run in per_seed if "rl" in run["proxies"][name]]
        if runs:
            table[name]["rl"] = {key: mean_sd([r[key] for r in runs]) for key in RL_MEASURES}
            table[name]["rl"]["overoptimisation_onsets"] = [r["overoptimisation_onset"] for r in runs]
            table[name]["rl"]["stopped_by_monitor"] = [r["stopped"]["step"] if r["stopped"] else None for r in runs]
    oracle = {n: mean_sd([run["oracle_best_of_n"][n]["gold"] for run in per_seed]) for n in per_seed[0]["oracle_best_of_n"]}
    controls = [run["rl_control"] for run in per_seed if "rl_control" in run]
    control = {key: mean_sd([r[key] for r in controls]) for key in RL_MEASURES} if controls else None
    return {"proxies": table, "oracle_best_of_n": oracle, "rl_control": control, "rl_curves": rl_curves(per_seed),
            "label_agreement": mean_sd([run["label_agreement"] for run in per_seed]), "claims": claims(table)}


def _verdict(better: tuple[float, float], worse: tuple[float, float], tolerance: float = 0.01) -> str:
    """'confirmed' when the first leads by more than the tolerance (or the seeds' spread), 'not confirmed' when it
    trails by as much, else 'mixed'."""
    margin = max(tolerance, better[1], worse[1])
    difference = better[0] - worse[0]
    return "confirmed" if difference > margin else "not confirmed" if difference < -margin else "mixed"


def claims(table: dict) -> dict:
    """RewardDance's claims, each judged on the proxies that test it (those that were run)."""
    def acc(name):
        return table[name]["heldout_accuracy"] if name in table else None

    def best64(name):
        return table[name]["best_of_n"]["64"]["gold"] if name in table else None

    found = {}
    if acc("bradley-terry") and acc("generative"):
        found["generative at least as accurate as the regression head (4x)"] = _verdict(
            acc("generative"), (acc("bradley-terry")[0] - 0.01, acc("bradley-terry")[1]))
    if acc("pointwise") and acc("generative"):
        found["pairwise more accurate than pointwise"] = _verdict(acc("generative"), acc("pointwise"))
    if acc("no-instruction") and acc("generative"):
        found["the task instruction helps (accuracy)"] = _verdict(acc("generative"), acc("no-instruction"))
    if acc("cot") and acc("generative"):
        found["chain-of-thought targets help (accuracy)"] = _verdict(acc("cot"), acc("generative"))
    if best64("target-reference") and best64("generative"):
        found["a target image as the reference helps (best-of-64 gold)"] = _verdict(best64("target-reference"),
                                                                                   best64("generative"))
    if acc("1x") and acc("16x") and acc("generative"):
        ordered = acc("1x")[0] < acc("generative")[0] < acc("16x")[0]
        found["larger reward models are more accurate (1x < 4x < 16x)"] = (
            _verdict(acc("16x"), acc("1x")) if ordered else "not confirmed")
    if acc("not-pretrained") and acc("generative"):  # the premise, not RewardDance's claim
        found["pretraining on captioned digits helps (accuracy)"] = _verdict(acc("generative"), acc("not-pretrained"))
    rl = {name: table[name]["rl"] for name in ("1x", "16x") if "rl" in table.get(name, {})}
    if len(rl) == 2:
        # the proxies' own scales differ: their late within-group std relative to their first steps' is not
        # comparable either, so the std is compared as measured (both are P(yes) differences in [0, 1])
        found["larger reward models keep a higher reward std late in RL (16x vs 1x)"] = _verdict(
            rl["16x"]["late_proxy_group_std"], rl["1x"]["late_proxy_group_std"], tolerance=0.002)
        found["larger reward models overoptimise later (16x vs 1x)"] = _onset_verdict(
            rl["16x"]["overoptimisation_onsets"], rl["1x"]["overoptimisation_onsets"])
    return found


def _onset_verdict(larger: list, smaller: list) -> str:
    """Onsets per seed (None: the gold never turned down): later, or never, for the larger model on every seed."""
    def late(step):
        return math.inf if step is None else step

    pairs = [(late(a), late(b)) for a, b in zip(larger, smaller)]
    if all(a == b == math.inf for a, b in pairs):
        return "mixed (neither overoptimised within the steps run)"
    if all(a > b for a, b in pairs):
        return "confirmed"
    return "not confirmed" if all(a <= b for a, b in pairs) else "mixed"


def format_table(summary: dict) -> str:
    lines = ["| proxy | held-out accuracy | best-of-1 gold | best-of-8 gold | best-of-64 gold | best-of-64 proxy | "
             "gold peaks at N |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in summary["proxies"].items():
        bon = row["best_of_n"]
        lines.append(f"| {name} | {row['heldout_accuracy'][0]:.3f} ± {row['heldout_accuracy'][1]:.3f} | "
                     f"{bon['1']['gold'][0]:.3f} | {bon['8']['gold'][0]:.3f} | {bon['64']['gold'][0]:.3f} ± "
                     f"{bon['64']['gold'][1]:.3f} | {bon['64']['proxy'][0]:.3f} | {row['best_of_n_peak']} |")
    oracle = summary["oracle_best_of_n"]
    lines.append(f"| (the gold itself) | 1 | {oracle['1'][0]:.3f} | {oracle['8'][0]:.3f} | {oracle['64'][0]:.3f} | | 64 |")
    rl_rows = {name: row["rl"] for name, row in summary["proxies"].items() if "rl" in row}
    if summary.get("rl_control"):
        rl_rows["a random reward (control)"] = {**summary["rl_control"], "overoptimisation_onsets": []}
    if rl_rows:
        lines += ["", "| GRPO against | gold: start | peak | end | proxy: start | end | late within-group std | "
                      "overoptimisation from step |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for name, rl in rl_rows.items():
            onsets = ", ".join("none" if step is None else str(step) for step in rl["overoptimisation_onsets"])
            lines.append(f"| {name} | {rl['gold_start'][0]:.3f} | {rl['gold_peak'][0]:.3f} | {rl['gold_end'][0]:.3f} | "
                         f"{rl['proxy_start'][0]:.3f} | {rl['proxy_end'][0]:.3f} | {rl['late_proxy_group_std'][0]:.4f} | "
                         f"{onsets} |")
    return "\n".join(lines)


def pretrain_judges(pool: Executor, config: JudgesDemoConfig, seeds: list[SeedData],
                    sizes: list[str]) -> dict[int, dict[str, Path]]:
    """Per seed, the base model of each of its proxies: the VLMs pretrained from that seed (so that the spread over
    seeds includes the pretraining's: one pretraining's verdicts need not be another's), and the random ones."""
    from ..rewards.generative.pretraining import load_digit_vlm

    largest_first = sizes[::-1]  # the 16x pretrains as long as the 1x and 4x together
    futures = {(data.seed, size): pool.submit(load_digit_vlm, size, config.cache_dir, config.pretrain_steps, False,
                                              data.seed) for size in largest_first for data in seeds}
    vlms = {data.seed: {size: futures[data.seed, size].result() for size in sizes} for data in seeds}
    for data in seeds:
        vlms[data.seed].update({proxy.base_model: random_vlm(proxy.size, data.out / "random-vlms", data.seed)
                                for proxy in map(PROXIES.get, config.proxies) if not proxy.pretrained})
    return vlms


def pretraining_summary(vlms: dict[int, dict[str, Path]], sizes: list[str]) -> dict:
    """Per size: its parameters, and its probes after pretraining, averaged over the seeds' pretrainings."""
    from ..rewards.generative.pretraining import METRICS_FILE

    summary = {}
    for size in sizes:
        runs = [json.loads((seed_vlms[size] / METRICS_FILE).read_text()) for seed_vlms in vlms.values()]
        summary[size] = {"parameters": runs[0]["parameters"],
                         **{key: float(np.mean([run["after"][key] for run in runs])) for key in runs[0]["after"]}}
    return summary


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes (0: one per thread torch would use) sharing those threads. Small models train faster side
    by side than one at a time on every core: on a 2-core CPU two one-thread trainings take 22 s where one two-thread
    training takes 19 s."""
    threads = torch.get_num_threads()
    workers = workers or threads
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads,
                               initargs=(max(1, threads // workers),))


def run_judges_demo(config: JudgesDemoConfig) -> dict:
    from ..generators import load_generator
    from .report import write_report

    unknown = sorted(set(config.proxies) - set(PROXIES))
    if unknown:
        raise VisrewardError(f"--proxies: unknown proxy '{unknown[0]}' (have: {', '.join(PROXIES)})")
    if config.bon_pool < max(BEST_OF):  # found now, not after every proxy has trained
        raise VisrewardError(f"--bon-pool {config.bon_pool}: Best-of-{max(BEST_OF)} needs {max(BEST_OF)} samples per digit")
    if min(config.train_per_prompt, config.heldout_per_prompt) < 2:
        raise VisrewardError("--train-per-prompt and --heldout-per-prompt: a pair needs 2 samples of a digit")
    started = time.time()
    out, generator_dir = prepare_run(config, "digits")
    sizes = [size for size in VLM_SIZES if any(PROXIES[name].size == size for name in config.proxies)]
    generator = load_generator(generator_dir)
    seeds = [draw_seed(config, seed, out / f"seed-{seed}", generator)
             for seed in range(config.seed, config.seed + config.seeds)]
    print(f"2/3 small VLMs pretrained on captioned digits ({', '.join(sizes)}; each seed its own, from that seed; "
          f"cached after the first run)")
    with worker_pool(config.workers) as pool:
        vlms = pretrain_judges(pool, config, seeds, sizes)
        print(f"3/3 {config.seeds} seed(s): {len(config.proxies)} proxies trained, each measured by held-out accuracy "
              f"and best-of-N" + (f", {len(config.rl_proxies)} of them by GRPO" if config.rl_proxies else ""))
        per_seed = collect_runs(config, seeds, submit_runs(pool, config, seeds, generator_dir, vlms))
    save_rl_samples(out / f"seed-{config.seed}", generator_dir, per_seed[0], out / "assets")
    summary = summarise(per_seed)
    results = {"config": json.loads((out / "demo_config.json").read_text()), **summary, "per_seed": per_seed,
               "pretraining": pretraining_summary(vlms, sizes), "seconds": time.time() - started}
    write_text(out / "demo_metrics.json", json.dumps(results, indent=2) + "\n")
    write_report(out)
    print()
    print(format_table(summary))
    for claim, verdict in summary["claims"].items():
        print(f"- {claim}: {verdict}")
    print(f"\nreport: {out / 'report.html'}   metrics: {out / 'demo_metrics.json'}   ({results['seconds']:.0f}s)")
    return results
