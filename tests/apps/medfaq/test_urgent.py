"""Urgent rules: the shipped list fires on emergencies and not on FAQ questions; a broken file names its line."""

from __future__ import annotations

import pytest

from goldmine.apps.medfaq.urgent import DEFAULT_RULES, UrgentRules
from goldmine.errors import ConfigError


@pytest.fixture(scope="module")
def rules():
    return UrgentRules.load()


@pytest.mark.parametrize(("question", "rule"), [
    ("I have crushing chest pain since an hour", "chest_pain"),
    ("my chest feels tight and the pain goes down my left arm", "chest_pain"),
    ("I can’t breathe properly", "cannot_breathe"),
    ("my baby's lips are blue", "cannot_breathe"),
    ("my dad's face is drooping and his speech is slurred", "stroke_signs"),
    ("suddenly can't see out of one eye", "stroke_signs"),
    ("I have suicidal thoughts every night", "suicidal_thoughts"),
    ("i dont want to live anymore", "suicidal_thoughts"),
    ("I think I took too many pills", "overdose_poisoning"),
    ("my toddler swallowed a button battery", "overdose_poisoning"),
    ("the cut won't stop bleeding", "severe_bleeding"),
    ("my throat is closing after eating peanuts", "anaphylaxis"),
    ("my grandmother won't wake up", "unconscious_or_seizure"),
    ("the worst headache of my life started an hour ago", "worst_headache"),
    ("I have NO chest pain, just a cough", "chest_pain"),  # negation is not understood, on purpose
])
def test_shipped_rules_fire(rules, question, rule):
    fired = rules.check(question)
    assert fired is not None and fired.name == rule and fired.message


@pytest.mark.parametrize("question", [
    "What are the symptoms of a stroke?",
    "What is (are) High Blood Pressure ?",
    "Can asthma cause shortness of breath?",
    "How is type 2 diabetes treated?",
    "Is it safe to take ibuprofen with lisinopril?",
    "What are the treatments for strokes in the elderly ?",
])
def test_shipped_rules_leave_faq_questions_alone(rules, question):
    assert rules.check(question) is None


def test_phrases_match_whole_words_with_any_spacing(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: pain\n    message: see someone\n    phrases: [chest pain]\n")
    rules = UrgentRules.load(path)
    assert rules.check("CHEST\n   pain!").name == "pain"
    assert rules.check("chest painless") is None


def test_first_matching_rule_decides(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: one, message: first, phrases: [pain]}\n"
                    "  - {name: two, message: second, patterns: ['pa.n']}\n")
    assert UrgentRules.load(path).check("pain").name == "one"
    assert UrgentRules.load(path).check("pawn").name == "two"


@pytest.mark.parametrize(("content", "error"), [
    ("rules:\n  - name: ok\n    message: hi\n    phrases: [x]\n  - name: bad\n    message: hi\n"
     "    patterns:\n      - 'fine'\n      - '(unclosed'\n",
     r"rules\.yaml:9: rules\.1\.patterns\.1: '\(unclosed' is not a valid regular expression"),
    ("rules:\n  - name: silent\n    message: hi\n", r"rules\.yaml:2: rules\.0: rule 'silent' has neither phrases"),
    ("rules:\n  - name: a\n    phrases: [x]\n", r"rules\.yaml:2: rules\.0\.message: Field required"),
    ("rules:\n  - {name: a, message: m, phrases: [x]}\n  - {name: a, message: m, phrases: [y]}\n",
     r"rules\.yaml:2: rules: rule name 'a' is used twice"),
    ("rules:\n  - name: a\n    message: m\n    phrase: [x]\n", r"rules\.yaml:4: rules\.0\.phrase: Extra inputs"),
    ("rules:\n  - name: Chest Pain\n    message: m\n    phrases: [x]\n", r"rules\.yaml:2: rules\.0\.name: String"),
    ("rules:\n  - name: a\n    message: m\n    patterns: ['x*']\n",
     r"rules\.yaml:4: rules\.0\.patterns\.0: 'x\*' matches an empty text"),
    ("rules:\n  - name: a\n   message: m\n", r"rules\.yaml:3: not valid YAML"),
    ("rules:\n  - {name: a, message: m, phrases: ['  ']}\n", r"rules\.yaml:2: rules\.0\.phrases\.0: an empty phrase"),
    ("- just a list\n", r"rules\.yaml:1: urgent rules must be a YAML mapping"),
])
def test_bad_rule_files_name_file_and_line(tmp_path, content, error):
    path = tmp_path / "rules.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=error):
        UrgentRules.load(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="urgent rules file not found"):
        UrgentRules.load(tmp_path / "nope.yaml")


def test_shipped_list_loads_and_every_rule_has_a_message():
    rules = UrgentRules.load(DEFAULT_RULES)
    assert len(rules.rules) >= 9 and all(r.message.strip() for r in rules.rules)
