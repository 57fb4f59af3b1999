"""The shipped Prometheus alert rules load in Prometheus's own checker and fire on the series they are for
(deploy/prometheus/goldmine-rules.test.yml), and every metric they read is one the server exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from goldmine.serving.metrics import Metrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("GOLDMINE_REQUIRE_SERVICES") == "1":
            pytest.fail("promtool is required (GOLDMINE_REQUIRE_SERVICES=1) but not installed")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def test_rules_pass_promtool_check_and_unit_tests():
    promtool = _promtool()
    check = subprocess.run([promtool, "check", "rules", "goldmine-rules.yml"], cwd=RULES, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout
    tested = subprocess.run([promtool, "test", "rules", "goldmine-rules.test.yml"], cwd=RULES, capture_output=True,
                            text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_rules_read_only_exported_metrics():
    exported = {m.name for m in Metrics().registry.collect()}
    read = set(re.findall(r"\b(goldmine_[a-z_]+)", (RULES / "goldmine-rules.yml").read_text()))
    names = {re.sub(r"_(bucket|total|count|sum)$", "", name) for name in read}
    assert names <= exported | {n.removesuffix("_total") for n in exported}, names - exported
