"""One loader for every reward kind; each has `score(images, prompts)` and `reward_fn`.

    rm/                  a GAN-RM folder (visreward train-rm)
    vlm:PATH_OR_ID       a vision-language judge (RewardDance); a train-vlm-rm folder also works as vlm:FOLDER (its
                         --bradley-terry baseline too, as a BradleyTerryRewardModel)
    vlm-api:URL#MODEL    the same judge served by an OpenAI-compatible engine (vLLM, SGLang)
    clipscore:PATH, pickscore:PATH, aesthetic:PATH   the field's standard rewards (standard.py)
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import VisrewardError


def is_generative(spec: str) -> bool:
    return spec.startswith("vlm:")


def reward_kind(spec: str) -> str:
    """'gan-rm', 'vlm', 'vlm-api', or the standard reward's name."""
    from .standard import standard_kind

    if spec.startswith("vlm-api:"):
        return "vlm-api"
    return "vlm" if is_generative(spec) else standard_kind(spec) or "gan-rm"


def load_reward_model(spec: str, device: str | None = None, backend: str = "torch", precision: str = "fp32",
                      cache_dir=None):
    from .standard import load_standard_reward, standard_kind

    if not spec:
        raise VisrewardError("no reward model given")
    if standard_kind(spec):
        return load_standard_reward(spec, device)
    if spec.startswith("vlm-api:"):
        from .generative.api_judge import APIJudge

        return APIJudge.from_spec(spec)
    if is_generative(spec):
        import torch

        from ..core.precision import resolve_encoder_precision
        from .generative import GenerativeRewardModel

        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
            resolve_encoder_precision(precision, device or "cpu")]
        from .generative.bradley_terry import HEAD_FILE, BradleyTerryRewardModel

        location = spec[len("vlm:"):]
        if (Path(location) / HEAD_FILE).exists():
            return BradleyTerryRewardModel.from_pretrained(location, device=device, dtype=dtype)
        return GenerativeRewardModel.from_pretrained(location, device=device, dtype=dtype)
    from .discriminative import DiscriminativeRewardModel

    return DiscriminativeRewardModel.from_pretrained(spec, device=device, backend=backend, precision=precision,
                                                     cache_dir=cache_dir)


def parse_reward_spec(text: str) -> tuple[str, str, float]:
    """'NAME=SPEC[:WEIGHT]' -> (name, spec, weight); SPEC as load_reward_model takes it (vlm:... may hold colons)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise VisrewardError(f"--reward {text!r}: expected NAME=SPEC[:WEIGHT], e.g. rm=runs/rm or judge=vlm:path:0.5")
    spec, colon, weight = rest.rpartition(":")
    if colon and spec:
        try:
            return name, spec, float(weight)
        except ValueError:
            pass
    return name, rest, 1.0


def load_rewards(specs: list[str], device: str | None = None, normalise: str = "none", backend: str = "torch",
                 precision: str = "fp32", cache_dir=None):
    """What a trainer's --reward options name: one SPEC (a folder, vlm:..., or an http(s):// `visreward serve`) is
    that reward; several NAME=SPEC[:WEIGHT] are their weighted sum after `normalise` (combination.combine)."""
    def load(spec: str):
        if spec.startswith(("http://", "https://")):
            from .remote import RemoteReward

            return RemoteReward(spec)
        return load_reward_model(spec, device=device, backend=backend, precision=precision, cache_dir=cache_dir)

    if not specs:
        raise VisrewardError("no reward given (--reward)")
    if len(specs) == 1 and "=" not in specs[0]:
        return load(specs[0])
    from .combination import combine

    parsed = [parse_reward_spec(text) for text in specs]
    return combine({name: load(spec) for name, spec, _ in parsed}, {name: weight for name, _, weight in parsed}, normalise)
