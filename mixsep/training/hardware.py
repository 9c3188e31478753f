"""The machine a run trains on: its CPU or GPUs, and which precision it computes fast."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

import torch
from omegaconf import DictConfig

log = logging.getLogger("mixsep")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """``auto``: bf16 mixed precision where the hardware computes bf16 natively, else 32-bit; says which."""
    precision = str(trainer_cfg.get("precision"))
    if precision != "auto":
        return precision
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        fast, where = torch.cuda.is_bf16_supported(), f"GPU {torch.cuda.get_device_name(0)}"
    else:
        fast = cpu_has_bf16()
        where = f"CPU {'with' if fast else 'without'} AVX512-BF16/AMX"
    choice = "bf16-mixed" if fast else "32-true"
    log.info(f"precision: {choice} (trainer.precision=auto on this {where}; set trainer.precision= to choose)")
    return choice


def on_gpu(trainer_cfg: DictConfig) -> bool:
    """Does this trainer config train on GPUs here?"""
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def describe_machine() -> str:
    """The GPU(s), or the CPU's model name and cores: metrics.json's ``hardware``."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")]
    cpu = names[0] if names else platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores"
