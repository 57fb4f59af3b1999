"""`goldmine.memory.peak_rss_mb`: the process's high-water mark, which grows with what it holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from goldmine.memory import peak_rss_mb

PROBE = """
import json
from goldmine.memory import peak_rss_mb
before = peak_rss_mb()
block = bytearray(300 * 2**20)
block[::4096] = b"x" * len(block[::4096])  # touched, so it is resident
during = peak_rss_mb()
del block
print(json.dumps([before, during, peak_rss_mb()]))
"""


def test_peak_rss_grows_with_memory_touched_and_never_goes_down():
    # a fresh interpreter: this test process's own high-water mark is whatever earlier tests left it at
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, during, after = json.loads(out.stdout)
    assert before < 200
    assert during >= before + 250
    assert after >= during - 1  # a high-water mark; the kernel's RSS counters are batched, so within ~1 MiB


def test_peak_rss_of_this_process_is_at_least_its_current_size():
    status = Path("/proc/self/status").read_text().splitlines()
    current = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))
    assert peak_rss_mb() >= round(current, 1) - 0.1
