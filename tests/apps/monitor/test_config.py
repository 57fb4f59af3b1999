"""The monitor's config: rules, sinks, durations, label polarity, and errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from goldmine.apps.monitor.config import MonitorConfig, duration_seconds
from goldmine.errors import ConfigError

BASE = {"app": "monitor", "tenant": "acme", "models": {"sentiment": {"name": "fin-sentiment"}}}


def make(**fields) -> MonitorConfig:
    return MonitorConfig.model_validate({**BASE, **fields})


def test_defaults_and_windows():
    config = make(windows=["1h"], rules=[{"name": "r", "kind": "negative_share", "window": "7d", "threshold": 0.5}])
    assert config.all_windows() == ["1h", "7d"] and [s.name for s in config.sinks] == ["log"]
    assert [duration_seconds(d) for d in ("30s", "15m", "1h", "7d")] == [30, 900, 3600, 604_800]
    with pytest.raises(ValueError):
        duration_seconds("1w")


@pytest.mark.parametrize(("fields", "message"), [
    ({"rules": [{"name": "r", "kind": "zscore", "baseline": 3, "min_baseline": 5}]}, "cannot exceed baseline"),
    ({"rules": [{"name": "r", "kind": "negative_share", "threshold": 1.5}]}, "less than or equal to 1"),
    ({"rules": [{"name": "r", "kind": "spike"}]}, "does not match any of the expected tags"),
    ({"rules": [{"name": "r", "kind": "negative_share", "threshold": 0.5, "window": "1 day"}]}, "should match"),
    ({"sinks": [{"type": "webhook", "url": "https://x.example"}]}, "exactly one of secret_env and secret"),
    ({"sinks": [{"type": "log"}, {"type": "log"}]}, "repeated: ['log']"),
    ({"sinks": [{"type": "webhook", "url": "ftp://x", "secret": "s" * 16}]}, "should match pattern"),
    ({"app": "support"}, "this is the monitor's config"),
])
def test_invalid_values_fail_at_load(fields, message):
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make(**fields)


def test_label_polarity_and_label_map():
    assert make().polarity_of(["Negative", "neutral", "bullish"]) == {
        "Negative": "negative", "neutral": "neutral", "bullish": "positive"}
    assert make(label_map={"0": "negative", "1": "positive", "2": "neutral"}).polarity_of(["0", "1", "2"])["1"] \
        == "positive"
    with pytest.raises(ConfigError, match=r"labels \['0', '1'\] have no polarity: map them in label_map"):
        make().polarity_of(["0", "1", "neutral"])


def test_webhook_secret_from_the_environment(monkeypatch):
    sink = make(sinks=[{"type": "webhook", "url": "https://x.example", "secret_env": "HOOK_SECRET"}]).sinks[0]
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="HOOK_SECRET .* is not set"):
        sink.secret_value()
    monkeypatch.setenv("HOOK_SECRET", "abc")
    assert sink.secret_value() == b"abc"


def test_the_shipped_config_and_its_alias_file():
    from pathlib import Path

    from goldmine.apps.base import load_app_config
    from goldmine.apps.monitor.companies import CompanyMatcher

    config = load_app_config(Path(__file__).resolve().parents[3] / "configs" / "apps" / "monitor.yaml", "monitor")
    matcher = CompanyMatcher.from_config(config)  # aliases_file, relative to the config
    assert matcher.companies("Agilent beats; $AAPL flat", ("ABX",)) == [
        "Barrick Gold", "Apple", "Agilent Technologies"]
    assert config.polarity_of(["0", "1", "2"]) == {"0": "negative", "1": "positive", "2": "neutral"}
