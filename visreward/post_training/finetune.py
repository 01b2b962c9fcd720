"""The fine-tuning loop SFT and Diffusion-DPO share: accelerate, LoRA, checkpoints, resume, logs.

Runs unchanged on one process or many:

    visreward dpo --generator digits --pairs pairs/ --output gen-dpo/
    accelerate launch --num_processes 8 -m visreward.cli dpo --generator ... --device cuda
    torchrun --nproc_per_node 2 -m visreward.cli sft ...          # CPU: add ACCELERATE_USE_CPU=1

Each step's batch, noise and timesteps come from a generator seeded by (seed, step, rank),
so a resumed run continues exactly where a killed one stopped. The output folder holds
`generator/` (the fine-tuned generator, LoRA merged; `adapter/` too with --lora),
`checkpoints/`, tensorboard `logs/`, `training_config.json` and `metrics.json`.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..core.atomic import atomic_dir, write_text
from ..core.config import save_config
from ..core.errors import VisrewardError
from ..core.options import FineTuneConfig
from ..core.precision import describe, resolve_mixed_precision
from ..generators.denoisers import Denoiser
from ..io.images import decode_image, fit_image


@dataclass
class TrainingImages:
    """Decoded training images (uint8, generator resolution) with their prompts."""

    images: torch.Tensor
    prompts: list[str]
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)


def decode_for_training(blobs: list[bytes], names: list[str], size: tuple[int, int], frames: int | None = None) -> torch.Tensor:
    """Encoded images -> uint8 [N,3,H,W] at the generator's resolution (resize shortest edge, centre crop);
    with `frames` (a video generator), encoded clips -> uint8 [N,frames,3,H,W], frames spread over each clip."""
    if frames is None:
        return torch.stack([fit_image(decode_image(blob, name), size) for blob, name in zip(blobs, names)])
    from ..io.videos import FrameSampling, pil_frames, read_clip

    clips = [read_clip(blob, FrameSampling(frames), name) for blob, name in zip(blobs, names)]
    return torch.stack([torch.stack([fit_image(frame, size) for frame in pil_frames(clip)]) for clip in clips])


def _with_lora(module: nn.Module, config: FineTuneConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    names = [name for name, _ in module.named_modules()]
    # peft's own rule: a target is a module's full name or its last dotted part(s)
    targets = [t for t in config.lora_targets if any(n == t or n.endswith("." + t) for n in names)]
    if not targets:
        raise VisrewardError(f"--lora-targets {' '.join(config.lora_targets)}: no such modules in the denoiser")
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=targets, init_lora_weights="gaussian")
    return get_peft_model(module, lora)


LossFunction = Callable[[Denoiser, nn.Module, Callable, dict, torch.Generator], tuple[torch.Tensor, dict]]


@dataclass
class Training:
    """What every trainer sets up the same way: accelerate, the denoiser on the local device, the trained module
    (LoRA-wrapped or whole) and its optimizer through `accelerator.prepare`, and the frozen reference's prediction."""

    accelerator: object
    denoiser: Denoiser
    module: nn.Module
    optimizer: torch.optim.Optimizer
    reference: Callable
    precision: str


def prepare_training(config: FineTuneConfig, generator, needs_reference: bool) -> Training:
    from accelerate import Accelerator

    output = Path(config.output)
    precision = resolve_mixed_precision(config.mixed_precision, "cpu" if config.device == "cpu" else "cuda")
    try:
        accelerator = Accelerator(cpu=config.device == "cpu", mixed_precision=precision,
                                  gradient_accumulation_steps=config.gradient_accumulation,
                                  log_with="tensorboard", project_dir=str(output / "logs"))
    except ValueError as error:
        if "already been initialized" not in str(error):
            raise
        raise VisrewardError(f"--mixed-precision {precision}: this process already fine-tuned in another "
                             "precision, and accelerate keeps one per process (run it in a new process)") from None
    if config.progress:
        accelerator.print(f"fine-tuning in mixed {describe(precision, config.mixed_precision, accelerator.device)}")
    denoiser = generator.to(accelerator.device).denoiser()
    torch.manual_seed(config.seed)
    module = denoiser.module.to(accelerator.device)
    if config.gradient_checkpointing:
        module.enable_gradient_checkpointing()
    frozen_reference = None
    if config.lora:
        module = _with_lora(module, config)
    elif needs_reference:
        # The copy keeps requires_grad set, though it is never optimised and runs under no_grad: at::matmul folds a
        # non-contiguous 3-D input (attention's to_v) into one mm when the weight requires grad and runs bmm when it
        # does not, and without native bf16 the two kernels round differently, so a frozen copy would disagree
        # with the policy at step 0.
        frozen_reference = copy.deepcopy(module).eval()
    module.train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    module, optimizer = accelerator.prepare(module, optimizer)

    def reference(noisy, timesteps, condition):
        # under the policy's autocast: at step 0 both must compute the same thing in every precision
        with torch.no_grad(), accelerator.autocast():
            if frozen_reference is not None:
                return denoiser.predict(frozen_reference, noisy, timesteps, condition)
            with accelerator.unwrap_model(module).disable_adapter():
                return denoiser.predict(accelerator.unwrap_model(module), noisy, timesteps, condition)

    return Training(accelerator, denoiser, module, optimizer, reference, precision)


def start_run(training: Training, config: FineTuneConfig, monitor=None) -> tuple[int, list[dict]]:
    """Resume from the last complete checkpoint (the monitor's baselines too); write the run's config and open the
    trackers. Returns the step to start from and the history so far."""
    accelerator, output = training.accelerator, Path(config.output)
    start_step, history, monitor_state = _resume(accelerator, output / "checkpoints")
    if monitor is not None and monitor_state:
        monitor.load_state_dict(monitor_state)
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        save_config(config, output / "training_config.json")
        accelerator.init_trackers("visreward")
    return start_step, history


def finish_run(training: Training, generator, config: FineTuneConfig, metrics: dict) -> dict:
    """Save the trained generator (LoRA merged; the adapter too) and metrics.json, and drop the checkpoints."""
    accelerator, output = training.accelerator, Path(config.output)
    accelerator.wait_for_everyone()
    metrics = {**metrics, "world_size": accelerator.num_processes, "mixed_precision": training.precision}
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(training.module)
        if config.lora:
            with atomic_dir(output / "adapter") as tmp:
                final.save_pretrained(str(tmp))
            final = final.merge_and_unload()
        generator.with_module(final.eval()).save_pretrained(output / "generator")
        write_text(output / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
    accelerator.end_training()
    return metrics


class MonitorStates:
    """The monitors a run checkpoints, by name: their baselines survive a resume."""

    def __init__(self, **monitors):
        self.monitors = {name: monitor for name, monitor in monitors.items() if monitor is not None}

    def state_dict(self) -> dict:
        return {name: monitor.state_dict() for name, monitor in self.monitors.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, monitor in self.monitors.items():
            if name in state:
                monitor.load_state_dict(state[name])


def finetune(config: FineTuneConfig, generator, data: TrainingImages, loss_fn: LossFunction, needs_reference: bool,
             draw: Callable[[TrainingImages, int, torch.Generator], dict], probe=None) -> dict:
    """Run the loop on `generator` (loaded from config.generator); returns the metrics in `output/metrics.json`.
    `probe` (probe_set.ProbeSet) samples a fixed set every few steps for the trainers that do not sample."""
    from tqdm.auto import tqdm

    training = prepare_training(config, generator, needs_reference)
    accelerator, denoiser, module = training.accelerator, training.denoiser, training.module
    checkpoints = Path(config.output) / "checkpoints"
    monitors = MonitorStates(loss=getattr(loss_fn, "monitor", None), probe=probe)
    start_step, history = start_run(training, config, monitors)
    stops = getattr(loss_fn, "stops", False)
    # weights at the last two log intervals: the monitors smooth over batches, so the older one predates an alarm
    snapshots = deque([(start_step, trainable_weights(accelerator.unwrap_model(module)))] if stops else [], maxlen=2)
    stopped, healthy = None, None
    if probe is not None:
        if start_step == 0:
            probe.check(accelerator, denoiser, module)  # the baseline
        # a resumed run's weights passed every probe before its checkpoint
        healthy = [(start_step, trainable_weights(accelerator.unwrap_model(module)))]
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc=Path(config.output).name,
               disable=not (config.progress and accelerator.is_main_process))
    started = time.time()
    running: dict[str, list[float]] = {}
    for step in bar:
        train_step(training, config, loss_fn, lambda rng: draw(data, config.batch_size, rng), step, running)
        reason, kept = (first_reason(accelerator, loss_fn.stop_reason) if stops else None), snapshots
        if not reason and probe is not None and probe.due(step + 1):
            reason = probe_step(accelerator, probe, training, config, running)
            if reason:
                kept = healthy  # the weights at the last probe that raised no alarm
            else:
                healthy = [(step + 1, trainable_weights(accelerator.unwrap_model(module)))]
        if reason:
            stopped = fall_back(accelerator, module, kept, step, reason)
            break
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            history.append(log_interval(accelerator, bar, running, step + 1, (time.time() - started) / (step + 1 - start_step)))
            running = {}
            if stops:
                snapshots.append((step + 1, trainable_weights(accelerator.unwrap_model(module))))
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save_checkpoint(accelerator, checkpoints, step + 1, history, monitors.state_dict())
    metrics = {"steps": config.steps, "history": history, "stopped": stopped,
               "seconds_per_step": (time.time() - started) / max(1, config.steps - start_step)}
    if probe is not None:
        metrics["probe_start"] = {f"probe_{k}": v for k, v in probe.monitor.start.items()}
    return finish_run(training, generator, config, metrics)


def train_step(training: Training, config: FineTuneConfig, loss_fn: LossFunction,
               draw: Callable[[torch.Generator], dict], step: int, running: dict) -> None:
    """One optimizer step over `config.gradient_accumulation` micro-batches; their logs join the running ones.
    A non-finite loss on any rank stops every rank with a one-line error."""
    accelerator, module, optimizer = training.accelerator, training.module, training.optimizer
    for micro in range(config.gradient_accumulation):
        shared_seed = step_seed(config, step) * 64 + micro
        rng = torch.Generator().manual_seed(shared_seed * 1024 + accelerator.process_index)
        # each rank its own batch and noise; choices that shape the graph (ReFL's gradient step) alike on all
        batch = {**draw(rng), "shared_seed": shared_seed, "step": step, "micro": micro}
        with accelerator.accumulate(module):
            loss, logs = loss_fn(training.denoiser, module, training.reference, batch, rng)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(module.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for key, value in {"loss": float(loss.detach()), **logs}.items():
            running.setdefault(key, []).append(value)
    finite = all(math.isfinite(v) for v in running["loss"][-config.gradient_accumulation:])
    if not on_every_rank(accelerator, finite):
        raise VisrewardError(f"loss became {running['loss'][-1] if not finite else 'non-finite on another rank'} at "
                             f"step {step}: lower --lr (or --beta for DPO)")


def log_interval(accelerator, bar, running: dict, step: int, seconds_per_step: float) -> dict:
    """The running logs' means as one history row, sent to the trackers and shown on the progress bar."""
    row = {"step": step, **{k: float(np.mean(v)) for k, v in running.items()}, "seconds_per_step": seconds_per_step}
    accelerator.log({k: v for k, v in row.items() if k != "step"}, step=step)
    bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k in ("loss", "implicit_accuracy")})
    return row


def probe_step(accelerator, probe, training: Training, config, running: dict) -> str | None:
    """Sample and read the probe set; its logs join the running ones. Returns the reason to stop, on every rank."""
    logs, reason = probe.check(accelerator, training.denoiser, training.module)
    for key, value in logs.items():
        running.setdefault(key, []).append(value)
    if reason and not config.stop_on_hacking and not probe.warned:
        probe.warned = True
        warnings.warn(f"{reason}; inspect samples, lower --lr or stop earlier")
    return first_reason(accelerator, reason) if config.stop_on_hacking else None


def fall_back(accelerator, module: nn.Module, snapshots: deque, step: int, reason: str) -> dict:
    """A monitor fired at `step`: load the oldest kept weights (from before the alarm) and say so."""
    kept_step, weights = snapshots[0]
    accelerator.unwrap_model(module).load_state_dict(weights, strict=False)
    accelerator.print(f"stopped at step {step + 1}: {reason}; keeping the weights of step {kept_step}")
    return {"step": step + 1, "reason": reason, "kept_weights_of_step": kept_step}


def step_seed(config: FineTuneConfig, step: int) -> int:
    """The seed every draw of a step derives from, alike on every rank: a resumed run draws what a straight one does."""
    return config.seed * 1_000_003 + step


def on_every_rank(accelerator, flag: bool) -> bool:
    """Whether `flag` holds on every rank: one rank raising or stopping alone would leave the others waiting."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([0.0 if flag else 1.0], device=accelerator.device)
    return float(accelerator.reduce(value, reduction="sum")) == 0


def first_reason(accelerator, reason: str | None) -> str | None:
    """The first rank's stop reason, on every rank (any rank's monitor stops all of them)."""
    if accelerator.num_processes == 1:
        return reason
    from accelerate.utils import gather_object

    return next((r for r in gather_object([reason]) if r), None)


def trainable_weights(module: nn.Module) -> dict:
    """A CPU copy of the trainable weights: what a stopped run falls back to."""
    return {k: p.detach().to("cpu", copy=True) for k, p in module.named_parameters() if p.requires_grad}


def save_checkpoint(accelerator, checkpoints: Path, step: int, history: list[dict], monitor: dict | None) -> None:
    target = checkpoints / f"step-{step:08d}"
    accelerator.save_state(str(target))
    if accelerator.is_main_process:
        # written last: a checkpoint without it is incomplete and ignored on resume
        write_text(target / "visreward_step.json", json.dumps({"step": step, "history": history, "monitor": monitor}))
        for old in sorted(checkpoints.glob("step-*"))[:-1]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _resume(accelerator, checkpoints: Path) -> tuple[int, list[dict], dict | None]:
    complete = sorted(p for p in checkpoints.glob("step-*") if (p / "visreward_step.json").exists())
    if not complete:
        return 0, [], None
    accelerator.load_state(str(complete[-1]))
    state = json.loads((complete[-1] / "visreward_step.json").read_text())
    accelerator.print(f"resuming from {complete[-1]} (step {state['step']})")
    return state["step"], state["history"], state.get("monitor")
