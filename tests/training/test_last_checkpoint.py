"""Resume skips a checkpoint a killed process left half-written (no readable trainer_state.json)."""

from __future__ import annotations

import pytest

from goldmine.errors import ConfigError
from goldmine.training.trainer import _last_checkpoint, last_checkpoint


def test_the_newest_complete_checkpoint_is_chosen(tmp_path):
    folder = tmp_path / "checkpoints"
    for step, state in ((10, '{"global_step": 10}'), (9, '{"global_step": 9}'), (20, None), (30, '{"global_')):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_checkpoint(tmp_path) == folder / "checkpoint-10"  # 20: never written, 30: cut short; 10 > 9


def test_no_complete_checkpoint(tmp_path):
    assert last_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    assert last_checkpoint(tmp_path) is None
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        _last_checkpoint(tmp_path)
