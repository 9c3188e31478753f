"""The machine a run trains on: its CPU or GPUs, and whether its CPU computes bf16 fast."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    return any(flag in _cpuinfo() for flag in ("avx512_bf16", "amx_bf16"))


def describe_machine() -> str:
    """The GPU(s), or the CPU's model name and cores: metrics.json's ``hardware``."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")]
    cpu = names[0] if names else platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores"
