"""Which precision runs fast on this machine: bf16 only where the hardware has it, fp32 elsewhere.

bf16 on a CPU without native bf16 kernels is emulated and slower than fp32: on a 2-core AVX2 EPYC a
1024x1024 matmul ran at 0.8 GFLOP/s in bf16 against 94.5 in fp32, and a small UNet's training step
took 2.1x longer under bf16 autocast. So "auto" means bf16 on a CUDA device that supports it and on
a CPU with AVX512_BF16 or AMX, and fp32 everywhere else.
"""

from __future__ import annotations

import torch


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether `device` computes bf16 in hardware (so bf16 is faster than fp32 there)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_mixed_precision(choice: str, device: str | torch.device = "cpu") -> str:
    """accelerate's mixed precision for `choice`: "auto" is "bf16" where native, else "no"."""
    if choice != "auto":
        return choice
    return "bf16" if native_bf16(device) else "no"


def resolve_encoder_precision(choice: str, device: str | torch.device = "cpu") -> str:
    """An encoder's inference precision for `choice`: "auto" is "bf16" where native, else "fp32"."""
    if choice != "auto":
        return choice
    return "bf16" if native_bf16(device) else "fp32"


def describe(resolved: str, choice: str, device: str | torch.device = "cpu") -> str:
    """One line for the log: what was picked, and why when "auto" picked it."""
    if choice != "auto":
        return f"precision {resolved}"
    reason = "native bf16" if native_bf16(device) else f"no native bf16 on {torch.device(device).type}"
    if torch.device(device).type == "cpu":
        reason += f", CPU capability {torch.backends.cpu.get_cpu_capability()}"
    return f"precision {resolved} (auto: {reason})"
