"""Reward probes: the cheapest inputs a policy could exploit, placed among held-out target scores.

A head on frozen features extrapolates arbitrarily off the data, so a reward that was never
shown noise may score noise above every real image, and reward-gradient training or RL then
drives the generator there. A probe's `percentile` is the share of held-out target images that
score below the probe's highest-scoring image: a safe reward keeps every probe under 5.
"""

from __future__ import annotations

import numpy as np
import torch

PRIMARIES = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0], [1.0, 0, 1.0], [0, 1.0, 1.0]])
PROBES = ("uniform noise", "gaussian noise", "blank black", "blank white", "saturated", "checkerboard", "gradient ascent")


def probe_images(like: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fixed probes shaped like `like` ([B,3,H,W] generated images in [0,1]); gradient ascent is separate."""
    rng = torch.Generator().manual_seed(seed)
    shape = like.shape
    height, width = shape[-2:]
    squares = ((torch.arange(height)[:, None] + torch.arange(width)[None]) % 2).float()
    return {
        "uniform noise": torch.rand(shape, generator=rng),
        "gaussian noise": (0.5 + 0.25 * torch.randn(shape, generator=rng)).clamp(0, 1),
        "blank black": torch.zeros(shape),
        "blank white": torch.ones(shape),
        "saturated": PRIMARIES[torch.randint(0, len(PRIMARIES), (shape[0],), generator=rng)][:, :, None, None].expand(shape).clone(),
        "checkerboard": squares.expand(shape).clone(),
    }


def wreck(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One off-manifold training negative from a [1,3,H,W] generated image: noise, a blank or saturated
    field, the image drowned in noise, its pixels shuffled, or inverted (checkerboards and gradient
    ascent stay out of training, so the probes test something the reward never saw)."""
    kind = int(torch.randint(0, 6, (1,), generator=rng))
    if kind == 0:
        return torch.rand(image.shape, generator=rng)
    if kind == 1:
        return (0.5 + 0.25 * torch.randn(image.shape, generator=rng)).clamp(0, 1)
    if kind == 2:
        return torch.rand(1, 3, 1, 1, generator=rng).round().expand(image.shape).clone()
    if kind == 3:
        return (image + 0.5 * torch.randn(image.shape, generator=rng)).clamp(0, 1)
    if kind == 4:
        flat = image.flatten(2)
        return flat[..., torch.randperm(flat.shape[-1], generator=rng)].view(image.shape)
    return 1 - image


def wreck_motion(clip: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One off-manifold training negative from a [T,3,H,W] clip's sampled frames with each frame's look kept and its
    motion wrecked: frozen (the first frame held), the frames shuffled, or flickering (each frame's brightness scaled
    by a factor in [0.3, 1])."""
    kind = int(torch.randint(0, 3, (1,), generator=rng))
    if kind == 0:
        return clip[:1].expand_as(clip).clone()
    if kind == 1:
        return clip[torch.randperm(len(clip), generator=rng)]
    return clip * (0.3 + 0.7 * torch.rand(len(clip), 1, 1, 1, generator=rng))


def gradient_ascent(model, start: torch.Tensor, steps: int = 10, step_size: float = 0.05) -> torch.Tensor:
    """The worst input a few signed-gradient steps on the reward find from `start` (pixels kept in [0,1])."""
    x = start.clone().float()
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            gradient, = torch.autograd.grad(model(x).sum(), x)
        x = (x.detach() + step_size * gradient.sign()).clamp(0, 1)
    return x


def probe_report(model, heldout_target_scores: torch.Tensor, generated: torch.Tensor, seed: int = 0) -> dict[str, dict]:
    """{probe: {"max_score", "percentile"}} for a reward model, against its held-out target images' scores.

    generated: a few [B,3,H,W] generator outputs in [0,1]: the probes take their shape, and gradient
    ascent starts from them."""
    reference = heldout_target_scores.float().cpu().numpy()
    probes = probe_images(generated, seed)
    probes["gradient ascent"] = gradient_ascent(model, generated)
    report = {}
    for name, images in probes.items():
        top = float(model.score(images).max())
        report[name] = {"max_score": top, "percentile": float(100 * np.mean(reference < top))}
    return report
