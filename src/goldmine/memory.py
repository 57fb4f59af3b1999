"""Peak resident memory of this process, for the figures training, evaluation and serving report.

Linux's VmHWM is the high-water mark of resident memory since the process started (unlike `ru_maxrss`, it starts
afresh at exec, so a child process does not inherit its parent's peak). Elsewhere, `ru_maxrss` is the fallback.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    if STATUS.is_file():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)
