"""Urgent questions go to a person before anything else runs: a rule list the customer edits, checked first.

A FAQ answer to "my father's face is drooping and he can't lift his arm" is a harm however good the match, so
`MedFaq.answer` checks these rules before masking, retrieval or any model, and a match returns the rule's message
(call emergency services, a crisis line) instead of an answer. The rules are deliberately plain, phrases and
regular expressions, so that a clinician can read and edit them and a test can show which text fires which rule:
a learned classifier would need data nobody has and would fail silently.

Matching is case-insensitive on the question with curly quotes straightened and white space collapsed; a phrase
matches whole words ("stroke" does not fire on "strokes"); a pattern is a Python regular expression. Negation is
not understood on purpose: "no chest pain, just ..." still hands off, an error on the safe side.

The shipped list (`urgent_rules.yaml` beside this module) covers chest pain, breathing, stroke signs, suicidal
thoughts and self-harm, overdose and poisoning, severe bleeding, anaphylaxis, unconsciousness and seizures, and
the sudden worst headache; a customer replaces it with `urgent_rules:` in the app config.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from goldmine.apps.medfaq.yaml_files import load_yaml_model

DEFAULT_RULES = Path(__file__).with_name("urgent_rules.yaml")


def _phrase(phrase: str) -> str:
    if not phrase.strip():
        raise ValueError("an empty phrase would fire on every question")
    return phrase


def _pattern(pattern: str) -> str:
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {err}") from None
    if compiled.search(""):
        raise ValueError(f"{pattern!r} matches an empty text, so it would fire on every question")
    return pattern


Phrase = Annotated[str, AfterValidator(_phrase)]
Regex = Annotated[str, AfterValidator(_pattern)]


class UrgentRule(BaseModel):
    """One rule: any of its phrases or patterns in the question hands it off with `message`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64,
                      description="Stable snake_case id of the rule, returned with the hand-off and logged.")
    message: str = Field(min_length=1, max_length=2000, description="What the asker is told to do instead.")
    phrases: list[Phrase] = Field(default_factory=list, description="Words or phrases matched as whole words, "
                               "case-insensitively, with any white space between their words.")
    patterns: list[Regex] = Field(default_factory=list, description="Python regular expressions, matched "
                                "case-insensitively anywhere in the question.")

    @model_validator(mode="after")
    def _something_to_match(self) -> UrgentRule:
        if not self.phrases and not self.patterns:
            raise ValueError(f"rule {self.name!r} has neither phrases nor patterns: it could never fire")
        return self

    @cached_property
    def regex(self) -> re.Pattern:
        """One expression for the whole rule: its phrases as whole words, then its patterns."""
        words = [r"\s+".join(re.escape(_normal(w)) for w in phrase.split()) for phrase in self.phrases]
        parts = [rf"(?<!\w){w}(?!\w)" for w in words] + [f"(?:{p})" for p in self.patterns]
        return re.compile("|".join(parts), re.IGNORECASE)


class UrgentRules(BaseModel):
    """The rule list, in the order it is checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[UrgentRule] = Field(description="Checked in order; the first rule that matches decides.")

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[UrgentRule]) -> list[UrgentRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice: names identify rules in hand-offs and logs")
            seen.add(rule.name)
        return rules

    @classmethod
    def load(cls, path: str | Path | None = None) -> UrgentRules:
        """The rules of a YAML file (`rules:` a list of name, message, phrases, patterns); None: the shipped list.
        Errors name the file and line: `rules.yaml:41: rules.6.patterns: pattern 0 '(' is not valid ...`."""
        return load_yaml_model(path or DEFAULT_RULES, cls, "urgent rules")

    def check(self, question: str) -> UrgentRule | None:
        """The first rule that fires on `question`, or None."""
        text = _normal(question)
        return next((rule for rule in self.rules if rule.regex.search(text)), None)


def _normal(text: str) -> str:
    """Lower case, straight quotes, single spaces: what phrases and patterns are matched against."""
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    return re.sub(r"\s+", " ", text).strip().lower()
