"""What machine a number was measured on: recorded in checkpoints, reports and benchmark results."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU, cores, torch threads and version, Python, and the GPU if there is one."""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def describe(info: dict) -> str:
    """One line for tables: 'AMD EPYC 7B13, 2 cores, torch 2.13.0+cpu' (and the GPU if any)."""
    device = f", {info['cuda']}" if info.get("cuda") else ""
    return f"{info['cpu']}, {info['cores']} cores{device}, torch {info['torch']}"
