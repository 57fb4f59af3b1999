"""The demo end to end with the bundled encoder: the invented FAQ, a threshold calibrated apart from the questions
asked, masking, an urgent hand-off, answers and a low-confidence hand-off."""

from __future__ import annotations

import json

from goldmine.apps.medfaq import PiiKind
from goldmine.apps.medfaq.demo import CALIBRATION, DEMO_FAQ, QUESTIONS, run_demo, write_demo_data


def test_demo_data_is_consistent(tmp_path):
    files = write_demo_data(tmp_path)
    ids = {json.loads(line)["id"] for line in files.faq.read_text().splitlines()}
    assert len(ids) == len(DEMO_FAQ) >= 30
    assert {entry for _, entry in CALIBRATION if entry} <= ids
    assert not {q for q, _ in CALIBRATION} & set(QUESTIONS)  # calibrated apart from what is asked


def test_demo_answers_hands_off_and_masks(tmp_path):
    replies = [reply for _, reply in run_demo(tmp_path)]
    fever, chest, ankle, melanoma, records = replies
    assert fever.entry_id == "child-fever" and fever.handoff is None and fever.url.endswith("child-fever")
    assert fever.masked_kinds == [PiiKind.DATE, PiiKind.MRN, PiiKind.NAME]
    assert "Whitfield" not in fever.masked_question and "00482913" not in fever.masked_question
    assert chest.handoff.reason == "urgent" and chest.handoff.rule == "chest_pain" and chest.matches == []
    assert ankle.entry_id == "sprain" and ankle.masked_kinds == [PiiKind.EMAIL, PiiKind.PHONE]
    assert melanoma.handoff.reason == "low_confidence" and melanoma.answer is None
    assert records.entry_id == "records" and records.masked_kinds == [PiiKind.ADDRESS]
    assert all(r.disclaimer for r in replies)
