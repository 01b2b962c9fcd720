"""Reward-hacking monitors: per-batch signals that a policy is exploiting its reward, not learning the look.

RewardDance watches the spread of rewards across a batch (it collapses when every sample finds
the same exploit). That alone misses a generator drifting to noise with a steady spread, so
GAN-RM rewards add two signals from their calibration (measured at training time):
- `above_target`: the fraction of samples scoring above the highest held-out target image;
- `off_manifold`: the fraction whose features lie further from the training data than 99% of it;
and, where the generator has one (`independent_check_for`), an independent check that shares nothing with the
reward: the bundled digits' classifier of held-out real digits, or a prompt classifier of a train-generator
folder's own training images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.errors import VisrewardError


@dataclass
class MonitorLimits:
    collapse_ratio: float = 0.2   # spread below this fraction of its start
    above_target: float = 0.5     # more than this fraction above every held-out target score
    off_manifold: float = 0.5     # more than this fraction beyond the training data's 99th percentile
    independent_drop: float = 0.1  # independent agreement this far below its start


def limits_of(options) -> MonitorLimits:
    """The limits a trainer's options (options.HackingOptions) set."""
    return MonitorLimits(options.collapse_ratio, options.above_target, options.off_manifold, options.independent_drop)


def smoothed(running: dict, logs: dict, smoothing: float) -> dict:
    """Exponential running averages of a batch's signals (`smoothing`: the newest batch's weight); a signal seen for
    the first time starts at its value."""
    return {k: v if k not in running else (1 - smoothing) * running[k] + smoothing * v for k, v in logs.items()}


def rewards_and_features(reward_model, images: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(rewards, the reward's encoder features of `images` where it has them): a GAN-RM's one encoder pass serves
    both the reward and the monitors; other rewards give no features and the monitor encodes what it needs."""
    if hasattr(reward_model, "reward_and_features"):
        return reward_model.reward_and_features(images, prompts)
    return reward_model(images, prompts), None


@dataclass
class HackingMonitor:
    reward_model: object
    limits: MonitorLimits = field(default_factory=MonitorLimits)
    warmup: int = 5
    smoothing: float = 0.2        # weight of the newest batch in the running (exponential) averages
    agreement: object = None      # the generator's independent check (independent_check_for), if it has one
    start: dict = field(default_factory=dict)
    seen: list = field(default_factory=list)
    running: dict = field(default_factory=dict)

    def update(self, rewards: torch.Tensor | None, images: torch.Tensor, prompts: list[str],
               features: torch.Tensor | None = None) -> dict:
        """Signals for one batch (rewards [B], the images they scored [B,3,H,W] in [0,1], and the reward's
        encoder features of them when the caller already has them; otherwise they are encoded here). Without
        rewards (no reward model given), only the independent check is read."""
        logs = {}
        if rewards is not None:
            rewards = rewards.detach().float().cpu()
            logs = {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0}
        calibration = getattr(self.reward_model, "calibration", None) or {}
        if calibration and rewards is not None:
            logs["above_target"] = float((rewards > calibration["target_score_max"]).float().mean())
            with torch.no_grad():
                features = self.reward_model.encoder(images.detach()) if features is None else features.detach()
                distance = self.reward_model.feature_distance(features)
            logs["off_manifold"] = float((distance > calibration["feature_distance_p99"]).float().mean())
        agreement = self.agreement(images.detach(), prompts) if self.agreement is not None else None
        if agreement is not None:
            logs["independent_agreement"] = agreement
        if len(self.seen) < self.warmup:
            self.seen.append(logs)
            self.start = {k: sum(row[k] for row in self.seen) / len(self.seen) for k in logs}
        spread = self.start.get("reward_std", 0.0)
        if "reward_std" in logs:
            logs["reward_std_ratio"] = logs["reward_std"] / spread if spread > 0 else 1.0
        self.running = smoothed(self.running, logs, self.smoothing)
        return logs

    def alarms(self) -> list[str]:
        """What the running averages say about hacking, one phrase each (batches are too noisy alone)."""
        return list(self.alarms_by_signal().values())

    def alarms_by_signal(self) -> dict[str, str]:
        """The alarms keyed by the signal that raised them."""
        logs, found = self.running, {}
        warm = len(self.seen) >= self.warmup
        if warm and logs.get("reward_std_ratio", 1.0) < self.limits.collapse_ratio:
            found["reward_std_ratio"] = f"reward spread collapsed to {logs['reward_std_ratio']:.2f} of its start"
        if logs.get("above_target", 0.0) > self.limits.above_target:
            found["above_target"] = f"{logs['above_target']:.0%} of samples score above every held-out target image"
        if logs.get("off_manifold", 0.0) > self.limits.off_manifold:
            found["off_manifold"] = f"{logs['off_manifold']:.0%} of samples lie off the reward's training data"
        if "independent_agreement" in logs and warm and \
                logs["independent_agreement"] < self.start["independent_agreement"] - self.limits.independent_drop:
            found["independent_agreement"] = (f"independent check fell to {logs['independent_agreement']:.2f} "
                                              f"from {self.start['independent_agreement']:.2f}")
        return found

    def state_dict(self) -> dict:
        return {"start": self.start, "seen": self.seen, "running": self.running}

    def load_state_dict(self, state: dict) -> None:
        self.start, self.seen, self.running = dict(state["start"]), list(state["seen"]), dict(state["running"])


@dataclass
class PreferenceLimits:
    chosen_error_ratio: float = 1.5  # the policy's denoising error on chosen images, over the reference's on the same noise
    saturated_loss: float = 0.02     # the running DPO loss below this: every pair is separated, so further steps only push


@dataclass
class PreferenceMonitor:
    """Diffusion-DPO watching its own loss terms. The loss only asks the policy to denoise chosen images better than
    rejected ones *relative to the reference*, so it can be minimised by denoising both worse: the policy then stops
    denoising the data at all. Its error on the chosen images, against the frozen reference's on the same noise and
    timesteps, shows it (one user's run: 0.36 against 0.087 while the loss read 0.000 and the content was gone)."""

    limits: PreferenceLimits = field(default_factory=PreferenceLimits)
    warmup: int = 5
    smoothing: float = 0.2
    seen: int = 0
    running: dict = field(default_factory=dict)

    def update(self, logs: dict) -> dict:
        """logs: a DPO batch's terms (dpo_loss_terms); returns them with the chosen-error ratio added."""
        logs = {**logs, "chosen_error_ratio": logs["model_loss_chosen"] / max(logs["reference_loss_chosen"], 1e-12)}
        self.seen += 1
        self.running = smoothed(self.running, logs, self.smoothing)
        return logs

    def alarms(self) -> list[str]:
        logs, found = self.running, []
        if self.seen < self.warmup:
            return found
        if logs["chosen_error_ratio"] > self.limits.chosen_error_ratio:
            found.append(f"the policy's error on chosen images rose to {logs['chosen_error_ratio']:.2f}x the reference's "
                         "(it no longer denoises the data it is told to prefer)")
        if logs["loss"] < self.limits.saturated_loss:
            found.append(f"the DPO loss saturated at {logs['loss']:.3f} with implicit accuracy "
                         f"{logs['implicit_accuracy']:.2f} (every pair separated: further steps only over-optimise)")
        return found

    def state_dict(self) -> dict:
        return {"seen": self.seen, "running": self.running}

    def load_state_dict(self, state: dict) -> None:
        self.seen, self.running = int(state["seen"]), dict(state["running"])


@dataclass
class PromptAgreement:
    """An independent check for any user's generator: a linear classifier over a frozen encoder's features of the
    generator's own training images, one class per prompt. The fraction of samples it reads as their own prompt says
    whether they still show what the prompt asks. It is a monitor, not a judge: it shares the encoder family with
    GAN-RM rewards, so the demo's tables keep their pixel-space judges."""

    encoder: object
    prompts: list[str]
    classifier: torch.nn.Linear
    mean: torch.Tensor
    std: torch.Tensor
    heldout_accuracy: float  # on a fifth of the training images the classifier did not fit

    @classmethod
    def fit(cls, images: torch.Tensor, prompts: list[str], encoder, seed: int = 0, steps: int = 300) -> "PromptAgreement":
        """images [N,3,H,W] in [0,1] with their prompts; the classifier is fitted on four fifths of them."""
        from ..encoders.features import encode_tensors

        classes = sorted(set(prompts))
        if len(classes) < 2:
            raise VisrewardError("prompt agreement needs images of two or more prompts")
        features = encode_tensors(encoder, images).float()
        labels = torch.tensor([classes.index(p) for p in prompts])
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        held, fitted = order[: len(order) // 5], order[len(order) // 5 :]
        mean, std = features[fitted].mean(0), features[fitted].std(0) + 1e-6
        classifier = torch.nn.Linear(features.shape[1], len(classes))
        optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2, weight_decay=1e-3)
        inputs = (features - mean) / std
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(classifier(inputs[fitted]), labels[fitted])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = float((classifier(inputs[held]).argmax(1) == labels[held]).float().mean())
        return cls(encoder, classes, classifier.requires_grad_(False), mean, std, accuracy)

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> float | None:
        """The fraction of `images` read as their own prompt; None where a prompt is not one of the classes."""
        from ..encoders.features import encode_tensors

        if any(p not in self.prompts for p in prompts):
            return None
        features = (encode_tensors(self.encoder, images.detach().float().cpu()).float() - self.mean) / self.std
        with torch.no_grad():
            predicted = self.classifier(features).argmax(1)
        return float((predicted == torch.tensor([self.prompts.index(p) for p in prompts])).float().mean())


@dataclass
class TextAgreement:
    """An independent check for free-text generators (diffusers pipelines): a CLIP-family encoder the user names,
    not the reward's, reads whether each sample lies closer to its own prompt than to the batch's other prompts.
    A retrieval accuracy among the batch's distinct prompts: chance is one over their number."""

    encoder: object

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> float | None:
        """The fraction of `images` nearest their own prompt; None for a batch of one prompt."""
        from ..encoders.features import encode_tensors

        distinct = sorted(set(prompts))
        if len(distinct) < 2:
            return None
        if images.ndim == 5:  # clips: their middle frames
            images = images[:, images.shape[1] // 2]
        pictures = torch.nn.functional.normalize(encode_tensors(self.encoder, images.detach().float().cpu()).float(), dim=-1)
        texts = torch.nn.functional.normalize(self.encoder.encode_text(distinct).float(), dim=-1)
        nearest = (pictures @ texts.T).argmax(1)
        return float((nearest == torch.tensor([distinct.index(p) for p in prompts])).float().mean())


def independent_check_for(generator, spec: str, text_encoder: str | None = None):
    """The independent check of `generator`'s samples, `check(images, prompts) -> fraction or None`, or None where
    it has none: the bundled digits' classifier where it makes 8x8 digits, the prompt agreement of the
    train-generator folder `spec`, or else, where `text_encoder` (clip:... or siglip:...) is given, its image-text
    agreement."""
    from ..generators.bundled import digit_check, makes_digits

    if makes_digits(generator):
        return digit_check
    check = prompt_agreement_for(spec)
    if check is None and text_encoder:
        from ..encoders import load_encoder

        check = TextAgreement(load_encoder(text_encoder))
    return check


def prompt_agreement_for(generator: str, encoder: str | None = None) -> PromptAgreement | None:
    """The prompt-agreement check of a `train-generator` image folder, fitted on the training images its
    generator.json names; None for other generators."""
    import json
    from pathlib import Path

    from ..core.options import GeneratorTrainingConfig
    from ..encoders import DEFAULT_ENCODER, load_encoder
    from ..generators.conditional import load_training_images

    meta_file = Path(generator) / "generator.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    training = meta.get("training") or {}
    if not training.get("data") or meta.get("frames"):
        return None
    config = GeneratorTrainingConfig(data=training["data"], resolution=training.get("resolution"),
                                     colour=training.get("colour", "auto"))
    images, prompts, _ = load_training_images(config)
    rgb = images.float() / 255
    rgb = rgb.expand(-1, 3, -1, -1) if rgb.shape[1] == 1 else rgb
    return PromptAgreement.fit(rgb, prompts, load_encoder(encoder or DEFAULT_ENCODER, backend="auto"))
