"""Training a VLM judge on preference pairs (RewardDance), and the Bradley-Terry baseline.

    visreward train-vlm-rm --model PATH_OR_ID --pairs pairs/ --output vlm-rm/ [--lora] [--cot decision-first]

Examples from each pair (prompt, chosen, rejected):
  pairwise   "is image 1 better than image 2?" with (chosen, rejected) -> yes and (rejected, chosen) -> no
  pointwise  "does this image satisfy the prompt?" chosen -> yes, rejected -> no
The loss is cross-entropy on the answer: the decision token, or with --cot the decision and
the pair's `rationale` (decision-first) or the rationale then the decision (reason-first).
Every epoch the main process measures the fraction of held-out pairs whose chosen image wins,
the way the judge was trained: pairwise questions in both orders (pairwise, both), pointwise
P(yes) of each image (pointwise), or the Bradley-Terry head's rewards.

--bradley-terry trains the baseline instead: a linear head on the same backbone's last hidden
state at the answer position, loss -log sigmoid(r_chosen - r_rejected).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ...core.atomic import atomic_dir, write_text
from ...core.config import save_config
from ...core.errors import VisrewardError
from ...core.model_card import write_model_card
from ...core.options import VLMTrainingConfig
from ...io.images import decode_image
from ...io.pairs import PreferencePair, read_pairs
from ...io.videos import FrameSampling, pil_frames, pillow_frame_count, read_clip
from .bradley_terry import BradleyTerryHead, answer_hidden_state
from .model import HEAD_FILE, REFERENCES_FOLDER, SETTINGS_FILE, GenerativeRewardModel, read_references
from .templates import ANSWER_CUE, TEMPLATE_VERSION, question


def _visual(data: bytes, sampling: FrameSampling) -> list[Image.Image]:
    """A pair member's encoded bytes -> what the judge sees: [image], or a clip's sampled frames."""
    if pillow_frame_count(data) == 1:  # otherwise an animation, or a video file's bytes
        return [decode_image(data, "preference pair image")]
    return pil_frames(read_clip(data, sampling, "preference pair video"))


def examples_of(pair: PreferencePair, mode: str, instruction: str | None, cot: str | None,
                sampling: FrameSampling = FrameSampling()) -> list[tuple[str, list, str]]:
    """(question, images, answer) training examples of one pair (of images, or of clips shown as frames)."""
    chosen, rejected = _visual(pair.chosen, sampling), _visual(pair.rejected, sampling)
    frames = len(chosen)
    reason = (pair.rationale or "").strip()
    if cot and not reason:
        raise VisrewardError("--cot needs a `rationale` for every pair")

    def answer(decision: str) -> str:
        if cot == "decision-first":
            return f"{decision}. {reason}"
        if cot == "reason-first":
            return f"{reason}{ANSWER_CUE} {decision}"
        return decision

    out = []
    if mode in ("pairwise", "both"):
        text = question(pair.prompt, instruction, True, cot, frames)
        out += [(text, chosen + rejected, answer("yes")), (text, rejected + chosen, answer("no"))]
    if mode in ("pointwise", "both"):
        text = question(pair.prompt, instruction, False, cot, frames)
        out += [(text, chosen, answer("yes")), (text, rejected, answer("no"))]
    return out


def _batch(judge: GenerativeRewardModel, examples: list[tuple[str, list, str]]) -> tuple[dict, torch.Tensor]:
    """Inputs for prompt+answer sequences (left-padded) and labels covering only the answer tokens."""
    answers = [judge.tokenizer.encode(a, add_special_tokens=False) for _, _, a in examples]
    texts = [judge.chat_text(q, len(imgs)) + a for (q, imgs, a) in examples]
    batch = judge.encode(texts, [imgs for _, imgs, _ in examples])
    labels = torch.full_like(batch["input_ids"], -100)
    for row, answer in enumerate(answers):
        labels[row, -len(answer):] = batch["input_ids"][row, -len(answer):]
    return batch, labels


def decision_loss(judge: GenerativeRewardModel, examples) -> torch.Tensor:
    batch, labels = _batch(judge, examples)
    logits = judge.model(**batch).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100)


def _pairwise_accuracy(judge, pairs: list[PreferencePair], instruction, head: BradleyTerryHead | None,
                       pointwise: bool) -> float:
    """Fraction of pairs whose chosen image wins: by the head, by pointwise P(yes) of each image, or
    by the pairwise question (both orders)."""
    if not pairs:
        return float("nan")
    prompts = [p.prompt for p in pairs]
    chosen = [_visual(p.chosen, judge.sampling) for p in pairs]
    rejected = [_visual(p.rejected, judge.sampling) for p in pairs]
    if head is None:  # the judge takes an image, or a clip as its list of frames
        chosen, rejected = ([v[0] if len(v) == 1 else v for v in side] for side in (chosen, rejected))
    with torch.no_grad():
        if head is not None:
            wins = head(answer_hidden_state(judge, prompts, chosen, instruction)) > \
                head(answer_hidden_state(judge, prompts, rejected, instruction))
        elif pointwise:
            wins = judge.score(chosen, prompts, instruction=instruction) > judge.score(rejected, prompts, instruction=instruction)
        else:
            wins = judge.score(chosen, prompts, references=rejected, instruction=instruction) > 0.5
    return float(wins.float().mean())


def _save_references(references: dict[str | None, list[str]], folder: Path) -> None:
    """Copies of the reference files (or frame folders), with their prompts, in the judge's own folder."""
    folder.mkdir()
    rows = []
    for i, (prompt, paths) in enumerate(references.items()):
        for j, path in enumerate(paths):
            name = f"{i:04d}-{j:04d}{Path(path).suffix}"
            if Path(path).is_dir():
                shutil.copytree(path, folder / name)
            else:
                shutil.copyfile(path, folder / name)
            rows.append(json.dumps({"file_name": name, **({"prompt": prompt} if prompt is not None else {})}))
    write_text(folder / "metadata.jsonl", "\n".join(rows) + "\n")


@dataclass
class _JudgeRun:
    """What training a judge holds: the accelerator, the judge (its model as prepared for training), the
    Bradley-Terry head or None, the optimizer, and this process's slice of the training examples."""
    accelerator: object
    judge: GenerativeRewardModel
    trained_model: torch.nn.Module
    head: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    examples: list


def _split_pairs(config: VLMTrainingConfig, rng: random.Random) -> tuple[list, list]:
    """(training pairs, held-out pairs), shuffled by the seed."""
    pairs = [pair for source in config.pairs for pair in read_pairs(source)]
    if len(pairs) < 2:
        raise VisrewardError(f"{len(pairs)} preference pair(s): need at least 2 (one to hold out)")
    rng.shuffle(pairs)
    n_held = max(1, round(len(pairs) * config.holdout)) if config.holdout > 0 else 0
    return pairs[n_held:], pairs[:n_held]


def _set_up(config: VLMTrainingConfig, train: list) -> _JudgeRun:
    """The judge (with LoRA or a Bradley-Terry head if asked), its optimizer through accelerate, and the examples."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # the Bradley-Terry head reads hidden states: the backbone's LM head gets no gradient
    unused = DistributedDataParallelKwargs(find_unused_parameters=config.bradley_terry)
    accelerator = Accelerator(cpu=config.device == "cpu", kwargs_handlers=[unused])
    judge = GenerativeRewardModel.from_pretrained(config.model, device=str(accelerator.device))
    judge.sampling = FrameSampling(config.frames)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        judge.model = get_peft_model(judge.model, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank,
                                                              target_modules=config.lora_targets))
    head = None
    if config.bradley_terry:
        head = BradleyTerryHead(judge.model.config.get_text_config().hidden_size).to(judge.device)
        examples = train
    else:
        examples = [e for pair in train for e in examples_of(pair, config.mode, config.instruction, config.cot, judge.sampling)]
    parameters = [p for p in judge.model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    optimizer = torch.optim.AdamW(parameters, lr=config.lr)
    if head is not None:
        judge.model, head, optimizer = accelerator.prepare(judge.model, head, optimizer)
    else:
        judge.model, optimizer = accelerator.prepare(judge.model, optimizer)
    # each process trains on its own equal slice (equal step counts keep the gradient all-reduces in step)
    examples = examples[: len(examples) - len(examples) % accelerator.num_processes]
    examples = examples[accelerator.process_index :: accelerator.num_processes]
    return _JudgeRun(accelerator, judge, judge.model, head, optimizer, examples)


def _step(run: _JudgeRun, chunk: list, instruction: str | None) -> float:
    """One optimizer step on a chunk of examples (or of pairs, for the Bradley-Terry head); its loss."""
    judge, head = run.judge, run.head
    if head is not None:  # one forward for both halves: DDP expects one per backward
        images = [_visual(p.chosen, judge.sampling) for p in chunk] + [_visual(p.rejected, judge.sampling) for p in chunk]
        chosen, rejected = head(answer_hidden_state(judge, [p.prompt for p in chunk] * 2, images, instruction)).chunk(2)
        loss = -F.logsigmoid(chosen - rejected).mean()
    else:
        loss = decision_loss(judge, chunk)
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    run.optimizer.step()
    return loss.item()


def _heldout_accuracy(run: _JudgeRun, held: list, config: VLMTrainingConfig) -> float:
    """Measured once, on the main process, and shared with the others."""
    from accelerate.utils import broadcast_object_list

    accelerator, judge = run.accelerator, run.judge
    accuracy = [float("nan")]
    if accelerator.is_main_process:
        judge.model = accelerator.unwrap_model(run.trained_model)
        accuracy[0] = _pairwise_accuracy(judge, held, config.instruction,
                                         accelerator.unwrap_model(run.head) if run.head is not None else None,
                                         pointwise=config.mode == "pointwise")
        judge.model = run.trained_model
    return broadcast_object_list(accuracy)[0]  # a no-op on one process


def _save(run: _JudgeRun, config: VLMTrainingConfig, metrics: dict, references: dict) -> None:
    """The judge's folder, written whole or not at all: weights, processor, head, settings, references, card."""
    judge = run.judge
    with atomic_dir(config.output) as tmp:
        judge.model.save_pretrained(tmp)
        judge.processor.save_pretrained(tmp)
        if run.head is not None:
            from safetensors.torch import save_file

            save_file(run.accelerator.unwrap_model(run.head).state_dict(), str(tmp / HEAD_FILE))
        write_text(tmp / SETTINGS_FILE, json.dumps({"template_version": TEMPLATE_VERSION, "instruction": config.instruction,
                                                    "trained_mode": config.mode, "cot": config.cot, "frames": config.frames},
                                                   indent=2))
        if references:
            _save_references(references, tmp / REFERENCES_FOLDER)
        save_config(config, tmp / "training_config.json")
        write_text(tmp / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        write_model_card(tmp, kind="rewarddance-judge", base=config.model,
                         data={"preference pairs (train + held out)": (config.pairs, metrics["n_train"] + metrics["n_heldout"])},
                         metrics={k: metrics[k] for k in ("heldout_pairwise_accuracy", "n_heldout", "method")},
                         usage=f"import visreward\njudge = visreward.load_reward_model('vlm:' + {Path(config.output).name!r})"
                               "  # or vlm:REPO_ID\nscores = judge.score(images, prompts)  # P(yes)")


def train_vlm_reward_model(config: VLMTrainingConfig) -> dict:
    from tqdm.auto import tqdm

    if not config.model:
        raise VisrewardError("no model given (--model PATH_OR_ID)")
    references = read_references(Path(config.references)) if config.references else {}  # read now, not after training
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    train, held = _split_pairs(config, rng)
    run = _set_up(config, train)
    main = run.accelerator.is_main_process
    history = [{"epoch": 0, "heldout_pairwise_accuracy": _heldout_accuracy(run, held, config)}]
    started = time.time()
    for epoch in range(1, config.epochs + 1):
        run.judge.model.train()
        rng.shuffle(run.examples)
        losses = [_step(run, run.examples[start : start + config.batch_size], config.instruction)
                  for start in tqdm(range(0, len(run.examples), config.batch_size), desc=f"epoch {epoch}",
                                    disable=not (config.progress and main))]
        run.judge.model.eval()
        history.append({"epoch": epoch, "train_loss": sum(losses) / len(losses),
                        "heldout_pairwise_accuracy": _heldout_accuracy(run, held, config)})
    run.judge.model = run.accelerator.unwrap_model(run.trained_model)
    metrics = {"n_train": len(train), "n_heldout": len(held), "history": history, "seconds": time.time() - started,
               "heldout_pairwise_accuracy": history[-1]["heldout_pairwise_accuracy"],
               "world_size": run.accelerator.num_processes,
               "method": "bradley-terry" if run.head is not None else "yes-probability"}
    run.accelerator.wait_for_everyone()
    if main:
        _save(run, config, metrics, references)
    return metrics
