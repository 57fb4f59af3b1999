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


def provenance(model_dirs: dict[str, str | None] | None = None) -> dict:
    """Where a result came from: the git commit it was measured at (with a dirty flag: uncommitted changes in the
    tracked files, other than result files under bench/results/, which change nothing that is measured and which
    a series of benchmarks run one after another writes in turn), the exact command line, and the model
    directories it measured.

    Every result file carries this at its top level (`git_commit`, `git_dirty`, `command`, `model_dirs`), so a
    figure can be traced to the code and the model that produced it. A result file is written by its script alone;
    this is what makes that checkable.
    """
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return {
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "model_dirs": model_dirs or {},
    }
