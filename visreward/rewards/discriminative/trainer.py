"""Training GAN-RM: target images (label 1) vs the generator's outputs (label 0).

    visreward train-rm --target TARGET_DIR --generated GENERATED_DIR --output rm/ \
        [--unlabeled POOL_DIR --bootstrap-rounds 2 --alpha 0.05 --m 64]

Only the head is trained, on cached frozen features. Rank-based bootstrapping (GAN-RM):
after each round, the unlabeled pool is ranked by the current model; the top-M join as
soft positives with label exp(-alpha * rank) (rank 0 = best) and the bottom-M as
negatives, and a fresh head is trained on the enlarged set.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...core.atomic import atomic_dir, write_text
from ...core.config import save_config
from ...core.errors import VisrewardError
from ...core.options import RewardTrainingConfig
from ...encoders import load_encoder
from ...encoders.features import FeatureCache, extract_features
from ...encoders.video import VideoEncoder
from ...evaluation import binary_metrics
from ...io.images import ImageRecord, SkipLog
from ...io.readers import Item, read_images
from ...io.videos import FrameSampling, is_clip, read_clip
from .model import DiscriminativeRewardModel

# A video head reads 6 x dim pooled features of a few hundred clips: one MLP's held-out AUC hung on which clips
# validated it (smooth vs jitter, one data seed: 0.78 to 0.99 over training seeds), five on five folds did not, and
# the slower rate gained on jitter and appearance (benchmarks/motion_contrasts.py). Images keep what they were tuned on.
HEAD_DEFAULTS = {"video": {"heads": 5, "lr": 3e-4}, "image": {"heads": 1, "lr": 1e-3}}


def with_media_defaults(config: RewardTrainingConfig, video: bool) -> RewardTrainingConfig:
    """`config` with the head options left unset given the defaults of what it reads."""
    defaults = HEAD_DEFAULTS["video" if video else "image"]
    return dataclasses.replace(config, **{name: value for name, value in defaults.items() if getattr(config, name) is None})


@dataclass
class LabeledFeatures:
    features: torch.Tensor          # [N, D]
    labels: torch.Tensor            # [N] in [0, 1] (soft for bootstrapped positives)
    positive_side: torch.Tensor     # [N] bool: counts towards the positive class's weight
    text: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def cat(parts: list["LabeledFeatures"]) -> "LabeledFeatures":
        text = [p.text for p in parts]
        return LabeledFeatures(
            torch.cat([p.features for p in parts]), torch.cat([p.labels for p in parts]),
            torch.cat([p.positive_side for p in parts]),
            torch.cat(text) if all(t is not None for t in text) else None,
        )

    def subset(self, index) -> "LabeledFeatures":
        index = torch.as_tensor(index, dtype=torch.long)
        return LabeledFeatures(self.features[index], self.labels[index], self.positive_side[index],
                               None if self.text is None else self.text[index])


def labeled(features: torch.Tensor, label: float, text: torch.Tensor | None = None) -> LabeledFeatures:
    n = len(features)
    return LabeledFeatures(features, torch.full((n,), float(label)), torch.full((n,), label > 0), text)


def split_holdout(n: int, fraction: float, rng: np.random.Generator, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices; an error when `n` cannot fill both."""
    n_held = math.ceil(n * fraction) if fraction > 0 else 0
    if fraction > 0 and (n_held < 1 or n - n_held < 1):
        raise VisrewardError(f"{what}: {n} usable image(s), too few for a {fraction:.0%} held-out split (need at least {math.ceil(1 / fraction) if fraction < 1 else 2})")
    order = rng.permutation(n)
    return order[n_held:], order[:n_held]


def member_splits(n: int, config: RewardTrainingConfig, rng: np.random.Generator,
                  what: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """([(train, validation)] per head member, test) indices: validation stops a member's training early, test is
    only ever reported. One member validates on --holdout; an ensemble of k splits the rest into k folds, member i
    validating on fold i, so every non-test input is validated on once."""
    rest, test = split_holdout(n, config.test, rng, what)
    if config.heads == 1:
        train, validation = split_holdout(len(rest), config.holdout / (1 - config.test), rng, what)
        return [(rest[train], rest[validation])], test
    if len(rest) < config.heads:
        raise VisrewardError(f"{what}: {len(rest)} usable input(s) outside the test split, too few for --heads "
                             f"{config.heads} (one validation fold each)")
    folds = np.array_split(rng.permutation(rest), config.heads)
    return [(np.concatenate(folds[:i] + folds[i + 1:]), fold) for i, fold in enumerate(folds)], test


def off_manifold_negatives(items: list[tuple[ImageRecord, object]], model: DiscriminativeRewardModel,
                           config: RewardTrainingConfig, text: torch.Tensor | None) -> LabeledFeatures:
    """Label-0 features of inputs no generator should be rewarded for, built from the generated images (each item's
    source as the reader gave it: a file, or the bytes of a tar member or parquet row, which have no file)."""
    from ...encoders.features import encode_tensors
    from ...io.images import decode_image, read_bytes
    from ..probes import wreck, wreck_motion

    rng = torch.Generator().manual_seed(config.seed)
    count = max(1, round(config.off_manifold * len(items)))
    chosen = torch.randint(0, len(items), (count,), generator=rng).tolist()
    sampling = getattr(model.encoder, "sampling", None)
    features, owners = [], []
    for index in chosen:
        record, source = items[index]
        if sampling is not None:  # a clip's sampled frames: their look wrecked alike, and apart from it their motion
            clip = read_clip(source, sampling, record.path).float() / 255
            features.append(encode_tensors(model.encoder, torch.stack([wreck(clip, rng), wreck_motion(clip, rng)])))
            owners += [index, index]
            continue
        pixels = np.array(decode_image(read_bytes(source), record.path))
        image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
        features.append(encode_tensors(model.encoder, wreck(image, rng)))
        owners.append(index)
    negatives = labeled(torch.cat(features), 0.0)
    if text is not None:
        negatives.text = text[torch.tensor(owners)]
    return negatives


def class_balanced_weights(positive_side: torch.Tensor) -> torch.Tensor:
    """Per-example weights, mean 1, with both sides contributing equally to the loss."""
    n_pos = positive_side.sum().clamp_min(1)
    n_neg = (~positive_side).sum().clamp_min(1)
    weights = torch.where(positive_side, 0.5 / n_pos, 0.5 / n_neg)
    return weights * len(positive_side)


def _evaluate(head, data: LabeledFeatures, member: int | None = None) -> dict:
    """Loss and ranking metrics of the whole head (or of one member) on `data`."""
    return _metrics(_logits(head, data, member), data)


def _evaluate_out_of_fold(head, folds: list[tuple[LabeledFeatures, LabeledFeatures]]) -> dict:
    """Each member on the fold it was validated on, pooled: the ensemble's cross-validated metrics."""
    validations = [held for _, held in folds]
    logits = torch.cat([_logits(head, held, member) for member, held in enumerate(validations)])
    return _metrics(logits, LabeledFeatures.cat(validations))


def _logits(head, data: LabeledFeatures, member: int | None) -> torch.Tensor:
    head.eval()
    device = head.feature_mean.device
    with torch.no_grad():
        return head(data.features.to(device), None if data.text is None else data.text.to(device), member)


def _metrics(logits: torch.Tensor, data: LabeledFeatures) -> dict:
    labels, positive_side = data.labels.to(logits.device), data.positive_side.to(logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, labels, weight=class_balanced_weights(positive_side))
    hard = labels > 0.5
    return {"loss": float(loss), **binary_metrics(logits[hard], logits[~hard])}


def fit_head(model: DiscriminativeRewardModel, train: LabeledFeatures, held: LabeledFeatures | None,
             config: RewardTrainingConfig, generator: torch.Generator, member: int = 0) -> list[dict]:
    """Train `member` of `model.head` in place; returns per-epoch metrics; restores the best held-out epoch."""
    head = model.head
    mlp = head.members[member]
    device = next(head.parameters()).device
    train = dataclasses.replace(train, features=train.features.to(device), labels=train.labels.to(device),
                                positive_side=train.positive_side.to(device),
                                text=None if train.text is None else train.text.to(device))
    if held is not None:
        held = dataclasses.replace(held, features=held.features.to(device), labels=held.labels.to(device),
                                   positive_side=held.positive_side.to(device),
                                   text=None if held.text is None else held.text.to(device))
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    weights = class_balanced_weights(train.positive_side)
    history, best_key, best_state, since_best = [], None, None, 0
    for epoch in range(config.epochs):
        head.train()
        order = torch.randperm(len(train), generator=generator).to(device)
        total = 0.0
        for batch in order.split(config.batch_size):
            logits = head(train.features[batch], None if train.text is None else train.text[batch], member)
            loss = F.binary_cross_entropy_with_logits(logits, train.labels[batch], weight=weights[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        row = {"epoch": epoch, "train_loss": total / len(train)}
        if held is not None:
            metrics = _evaluate(head, held, member)
            row.update({f"heldout_{k}": v for k, v in metrics.items() if not k.startswith("n_")})
            key = (metrics["auc"], -metrics["loss"])
            if best_key is None or key > best_key:
                best_key, best_state, since_best = key, copy.deepcopy(mlp.state_dict()), 0
            else:
                since_best += 1
        history.append(row)
        if held is not None and since_best >= config.patience:
            break
    if best_state is not None:
        mlp.load_state_dict(best_state)
    head.eval()
    return history


def _gather(paths: list[str], what: str, skipped: SkipLog, clips: bool) -> list[Item]:
    if not paths:
        raise VisrewardError(f"no {what} images given (--{what})")
    return read_images(paths, skipped, clips)


def _training_encoder(config: RewardTrainingConfig, items: list[Item]):
    """The image encoder, wrapped to pool sampled frames when the inputs are videos."""
    encoder = load_encoder(config.encoder, config.device, config.backend, config.precision, config.cache_dir)
    # a tar member or parquet row comes as bytes: its record's path ("shard.tar/key.mp4") has the extension
    if config.media == "video" or (config.media == "auto" and any(
            is_clip(source if isinstance(source, str) else record.path or record.id) for record, source in items)):
        encoder = VideoEncoder(encoder, FrameSampling(config.frames, config.fps), config.pooling)
    return encoder


@dataclass
class _Encoded:
    """One side's readable inputs: their records, features and (with text conditioning) prompt features."""
    records: list[ImageRecord]
    features: torch.Tensor
    text: torch.Tensor | None


@dataclass
class _TrainingSets:
    natural: LabeledFeatures  # the target and generated inputs the head trains on, without the wrecked negatives
    folds: list[tuple[LabeledFeatures, LabeledFeatures | None]]  # per head member: its training set (with the wrecked
    # negatives) and its validation set, which chooses its epoch and calibrates
    test: LabeledFeatures | None  # makes no choice: what metrics.json reports as held out
    splits: dict  # the ids of each side's validation and test inputs

    @property
    def validated(self) -> bool:
        return self.folds[0][1] is not None


def _encode(what: str, items: list[Item], encoder, model: DiscriminativeRewardModel, cache, skipped: SkipLog,
            config: RewardTrainingConfig) -> _Encoded:
    records, features = extract_features(items, encoder, cache=cache, skipped=skipped,
                                         batch_size=config.encode_batch_size, num_workers=config.num_workers,
                                         progress=config.progress)
    if not records:
        raise VisrewardError(f"--{what}: none of the images could be read ({skipped.summary()})")
    if model.head.uses_text:
        missing = next((r for r in records if r.prompt is None), None)
        if missing is not None:
            raise VisrewardError(f"{missing.path}: no prompt (text conditioning needs one per image, from metadata.jsonl)")
    text = model.text_features([r.prompt for r in records])
    return _Encoded(records, features, None if text is None else text.cpu())


def _training_sets(target: _Encoded, generated: _Encoded, generated_items: list[Item], model: DiscriminativeRewardModel,
                   config: RewardTrainingConfig, rng: np.random.Generator) -> _TrainingSets:
    """Each side split into a test set and, per head member, training and validation sets; the off-manifold
    negatives made from generated training inputs join every member's training set."""
    target_members, target_test = member_splits(len(target.records), config, rng, "--target")
    generated_members, generated_test = member_splits(len(generated.records), config, rng, "--generated")
    positives, negatives = labeled(target.features, 1.0, target.text), labeled(generated.features, 0.0, generated.text)
    wrecked = []
    if config.off_manifold > 0:  # made once, from the first member's inputs: encoding the wrecks is what costs
        first = generated_members[0][0]
        sources = {record.id: source for record, source in generated_items}
        wrecked.append(off_manifold_negatives(
            [(generated.records[i], sources[generated.records[i].id]) for i in first], model, config,
            None if generated.text is None else generated.text[first]))
    validated = config.heads > 1 or config.holdout > 0
    folds = [(LabeledFeatures.cat([positives.subset(target_train), negatives.subset(generated_train)] + wrecked),
              LabeledFeatures.cat([positives.subset(target_val), negatives.subset(generated_val)]) if validated else None)
             for (target_train, target_val), (generated_train, generated_val) in zip(target_members, generated_members)]
    trained = [np.unique(np.concatenate([train for train, _ in members])) for members in (target_members, generated_members)]
    natural = LabeledFeatures.cat([positives.subset(trained[0]), negatives.subset(trained[1])])
    test = LabeledFeatures.cat([positives.subset(target_test), negatives.subset(generated_test)]) if config.test > 0 else None
    splits = {side: {"validation": [records[i].id for _, validation in members for i in validation],
                     "test": [records[i].id for i in testing]}
              for side, records, members, testing in (("target", target.records, target_members, target_test),
                                                      ("generated", generated.records, generated_members, generated_test))}
    return _TrainingSets(natural, folds, test, splits)


def _train_rounds(model: DiscriminativeRewardModel, sets: _TrainingSets, pool: _Encoded | None,
                  config: RewardTrainingConfig, generator: torch.Generator) -> list[dict]:
    """A fresh head per round: the first on the training sets, each later one on them enlarged by bootstrapping
    from the unlabeled pool. Returns each round's history and its validation and test metrics."""
    rounds = 1 + (config.bootstrap_rounds if pool is not None else 0)
    initial_state = copy.deepcopy(model.head.state_dict())
    # a video encoder's weight per pooled feature (--map-weight); images have none
    weights = model.encoder.feature_weights(config.map_weight) if hasattr(model.encoder, "feature_weights") else None
    pooled = labeled(pool.features, 0.0, pool.text) if pool is not None else None
    additions, results = [], []
    for round_index in range(rounds):
        round_info: dict = {"round": round_index}
        if round_index > 0:
            found, round_info["bootstrap"] = bootstrap_set(model, pooled, pool.records, config)
            additions = additions + [found] if config.accumulate else [found]
        model.head.load_state_dict(initial_state)
        # the statistics of real inputs, not of the wrecked ones
        model.head.fit_normalisation(sets.natural.features, weights)
        head_started = time.time()
        history = []
        for member, (train, held) in enumerate(sets.folds):
            train = LabeledFeatures.cat([train] + additions)
            history += [{"member": member, **row} for row in fit_head(model, train, held, config, generator, member)]
        round_info.update(n_train=len(train), head_seconds=time.time() - head_started, history=history)
        if sets.validated:
            round_info["validation"] = _evaluate_out_of_fold(model.head, sets.folds)
        if sets.test is not None:
            round_info["test"] = _evaluate(model.head, sets.test)
        results.append(round_info)
    return results


def train_reward_model(config: RewardTrainingConfig) -> tuple[DiscriminativeRewardModel, dict]:
    """Encode (with cache), split, train with bootstrapping, save to `config.output`."""
    if config.map_weight <= 0:
        raise VisrewardError(f"--map-weight {config.map_weight}: expected a weight above 0")
    if config.heads is not None and config.heads < 1:
        raise VisrewardError(f"--heads {config.heads}: expected at least 1")
    started = time.time()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    skipped = SkipLog(strict=config.strict)
    sources = {"target": config.target, "generated": config.generated, **({"unlabeled": config.unlabeled} if config.unlabeled else {})}
    inputs = {what: _gather(paths, what, skipped, config.media == "video") for what, paths in sources.items()}
    encoder = _training_encoder(config, [item for items in inputs.values() for item in items])
    config = with_media_defaults(config, video=hasattr(encoder, "sampling"))
    model = DiscriminativeRewardModel.create(encoder, config.hidden_dim, config.dropout, config.text_conditioning,
                                             config.heads)
    cache = None if config.no_cache else FeatureCache(config.cache_dir)
    target, generated = (_encode(what, inputs[what], encoder, model, cache, skipped, config) for what in ("target", "generated"))
    sets = _training_sets(target, generated, inputs["generated"], model, config, rng)
    pool = _encode("unlabeled", inputs["unlabeled"], encoder, model, cache, skipped, config) if config.unlabeled else None
    metrics: dict = {"rounds": _train_rounds(model, sets, pool, config, generator)}
    if sets.test is not None or sets.validated:
        calibrate(model, sets, config.off_data_penalty)
    metrics["splits"] = sets.splits
    metrics.update(
        n_target=len(target.records), n_generated=len(generated.records), n_unlabeled=len(pool.records) if pool else 0,
        n_skipped=len(skipped), validation=metrics["rounds"][-1].get("validation"),
        heldout=metrics["rounds"][-1].get("test"), seconds=time.time() - started,
    )
    save_training_run(model, config, metrics, skipped)
    return model, metrics


def calibrate(model: DiscriminativeRewardModel, sets: _TrainingSets, off_data_penalty: float) -> None:
    """Record where held-out target images score and how far the natural training features spread. Held out:
    each validation target scored by the member it validated (validation already makes choices, the test split
    makes none, but a member never trained on its own fold); without validation, the test split's targets."""
    if sets.validated:
        parts = [(held, member) for member, (_, held) in enumerate(sets.folds)]
    else:
        parts = [(sets.test, None)]
    targets = [(held.subset(torch.nonzero(held.labels > 0.5).flatten()), member) for held, member in parts]
    features = LabeledFeatures.cat([target for target, _ in targets])
    members = None if not sets.validated else torch.cat([torch.full((len(t),), m) for t, m in targets])
    model.calibrate(features.features, features.text, sets.natural.features, off_data_penalty, members)


def bootstrap_set(model: DiscriminativeRewardModel, pool: LabeledFeatures, pool_records: list[ImageRecord],
                  config: RewardTrainingConfig) -> tuple[LabeledFeatures, dict]:
    """What joins D_r: the pool's top-M (soft labels exp(-alpha*rank)) and bottom-M (label 0) under `model`."""
    m = min(config.m, len(pool) // 2)
    if m < 1:
        raise VisrewardError(f"--unlabeled: {len(pool)} image(s) cannot give top and bottom sets (need at least 2)")
    scores = model.score_features(pool.features, [r.prompt for r in pool_records] if model.head.uses_text else None)
    order = torch.argsort(scores, descending=True)
    top, bottom = order[:m], order[-m:]
    positives = pool.subset(top)
    positives.labels = torch.exp(-config.alpha * torch.arange(m, dtype=torch.float32))
    positives.positive_side = torch.ones(m, dtype=torch.bool)
    negatives = pool.subset(bottom)
    info = {
        "m": m,
        "top": [{"id": pool_records[i].id, "score": float(scores[i]), "label": float(label)} for i, label in zip(top.tolist(), positives.labels)],
        "bottom": [{"id": pool_records[i].id, "score": float(scores[i])} for i in bottom.tolist()],
    }
    return LabeledFeatures.cat([positives, negatives]), info


def save_training_run(model: DiscriminativeRewardModel, config: RewardTrainingConfig, metrics: dict, skipped: SkipLog) -> None:
    """Model, resolved config, metrics (and the skipped-file log) appear together or not at all."""
    from ...core.model_card import write_model_card

    output = Path(config.output)
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        save_config(config, tmp / "training_config.json")
        write_text(tmp / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        write_model_card(tmp, kind="gan-rm", base=model.config["encoder"],
                         data={"target (label 1)": (config.target, metrics["n_target"]),
                               "generated (label 0)": (config.generated, metrics["n_generated"]),
                               "unlabeled (bootstrapping)": (config.unlabeled, metrics["n_unlabeled"])},
                         metrics={"heldout": metrics["heldout"], "validation": metrics["validation"],
                                  "calibration": model.calibration},
                         usage=f"import visreward\nrm = visreward.load_reward_model({output.name!r})  # or the Hub repo id\n"
                               "scores = rm.score(images, prompts)  # logits; prob=True for P(target)")
        if len(skipped):
            skipped.write(tmp / "skipped.txt")
