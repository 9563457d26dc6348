"""Small helpers shared by the benchmark scripts: timing, hardware description, result tables.

Every benchmark measures its baseline in the same process, on the same machine, right before or after
the method it compares: ratios are comparable across machines, absolute times are not.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """Run ``function`` once; return its result and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_description() -> dict[str, str]:
    """What the numbers were measured on: CPU, cores, threads, library versions, GPU if any."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    description = {
        "cpu": cpu_model(),
        "cores": f"{usable} usable of {cores}",
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        description["gpu"] = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    else:
        description["gpu"] = "none"
    with contextlib.suppress(OSError):  # other work on the machine skews every timing
        description["load average (1 min)"] = f"{os.getloadavg()[0]:.2f}"
    return description


def print_hardware() -> None:
    for name, value in hardware_description().items():
        print(f"{name}: {value}")


@dataclass(frozen=True)
class Measurement:
    name: str
    seconds: float
    note: str = ""


def markdown_table(measurements: list[Measurement], *, baseline: str) -> str:
    """A markdown table of the measurements with each one's speed-up over the ``baseline`` row."""
    reference = next(m.seconds for m in measurements if m.name == baseline)
    lines = ["| method | time (s) | speed-up vs baseline | note |", "|---|---:|---:|---|"]
    for measurement in measurements:
        ratio = reference / measurement.seconds if measurement.seconds > 0 else float("inf")
        lines.append(
            f"| {measurement.name} | {measurement.seconds:,.1f} | {ratio:,.1f}x | {measurement.note} |"
        )
    return "\n".join(lines)
