"""Machine, versions and date for every benchmark result, so figures can be compared honestly."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
from importlib.metadata import PackageNotFoundError, version


def machine_info() -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    packages = {}
    for name in ("goldmine", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn", "seqeval"):
        with contextlib.suppress(PackageNotFoundError):
            packages[name] = version(name)
    import torch

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": packages,
    }
