"""Personal data out of a patient's question before anything else reads it: typed placeholders, never the values.

A medical question carries the asker's identity more often than a support message does ("my son Jake, born
03/14/2016, MRN 00482913, ..."), and a FAQ answer needs none of it. `PiiMasker.mask(text)` replaces each
personal item with its kind's placeholder (`<NAME>`, `<DATE>`, `<PHONE>`, `<EMAIL>`, `<ADDRESS>`, `<MRN>`,
`<ID>`, `<URL>`) and returns the masked text with the kinds and counts it replaced: the clear values leave
this module in no return value, no log line and no exception message.

Two detectors, their spans merged (the longer span wins an overlap, then the more specific detector):

- Patterns, always on. E-mail addresses, card, IBAN and SSN-style numbers reuse the request-log masker's tested
  expressions (`goldmine.serving.masking`); the rest are written for patient text: numeric and written dates
  (a numeric date must read as a day and a month, so "0.5-10 mg" is not one), dates after "DOB"/"born on",
  phone numbers, street addresses (a house number, up to four name words and a street type, with the unit,
  city, state and ZIP that follow), P.O. boxes and ZIP codes, medical record numbers and other ids after the word
  that names them ("MRN", "member ID", "policy number", ...), letter+digit ids, bare runs of 6+ digits, URLs,
  and names that a cue announces: a title ("Dr. Patel", "Mrs Jones"), "my name is ...", "I'm" + two capitalised
  words ("I'm Dana Whitfield"), a relative ("my son Jake") or a sign-off ("Thanks, Maria"). A number followed by a
  unit ("5 mg", "150000 cells") is never an id.
- A goldmine NER run (optional): its PER entities are names and its LOC entities addresses (`ner_kinds`). An
  entity whose every word is a medical word (`keep_words`, e.g. the FAQ's `focus` terms: "Parkinson", "Lyme",
  "Crohn") is left alone: eponymous diseases read as people and places to a news-trained tagger.

Without an NER model a name with no cue ("John Smith has asthma") and a place named without a street address
("I live in Springfield") stay in clear: `PiiMasker.limitations` says so, and `MedFaq` logs it at load time.
Masking errs on the side of hiding: an order number or a 7-digit lab count is hidden too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from goldmine.errors import InputError
from goldmine.serving.masking import pattern as _log_pattern  # the log masker's tested expressions, reused

log = logging.getLogger(__name__)


class PiiKind(StrEnum):
    NAME = "name"
    DATE = "date"
    PHONE = "phone"
    EMAIL = "email"
    ADDRESS = "address"
    MRN = "mrn"
    ID = "id"
    URL = "url"

    @property
    def placeholder(self) -> str:
        return f"<{self.value.upper()}>"


PLACEHOLDER = re.compile(r"<(?:" + "|".join(k.value.upper() for k in PiiKind) + r")>")

# Words that end a name or a street name, and units that make a number a quantity (never an id, date or phone).
UNITS = (r"mg|mcg|µg|ug|g|kg|lbs?|pounds?|ml|cc|l|iu|units?|mmol|mmhg|mg/dl|mmol/l|percent|%|tablets?|tabs?|pills?|"
         r"capsules?|caps?|puffs?|drops?|doses?|times|x|days?|weeks?|months?|years?|yrs?|hours?|hrs?|minutes?|mins?|"
         r"seconds?|cm|mm|inch(?:es)?|in|ft|feet|cells|copies|steps|miles|km|calories|kcal|bpm|beats|people|persons|"
         r"individuals|births|newborns|babies|children|adults|women|men|cases|patients|deaths|americans")
NOT_A_QUANTITY = rf"(?!\s*(?:{UNITS})\b)"
STOPWORDS = frozenset(re.findall(r"\S+", """
a an the and or but if of to in on at by for from with without about into over under after before since until
i i'm im me my mine we our you your he him his she her they them their it its this that these those who whom which
what when where why how is am are was were be been being has have had do does did can could should would will
shall may might must not no yes so too very also just only still again then than as age aged years year old
has have keeps got gets feel feels felt thanks thank please hi hello dear regards doctor dr
"""))
RELATIONS = (r"son|daughter|wife|husband|partner|mother|mom|mum|father|dad|brother|sister|friend|boyfriend|girlfriend|"
             r"grandson|granddaughter|grandmother|grandma|grandfather|grandpa|baby|child|kid|aunt|uncle|cousin|niece|"
             r"nephew|fiance|fiancee|roommate|neighbor|neighbour|doctor|nurse|therapist|pediatrician|gp|physician|"
             r"surgeon|dentist|pharmacist|caregiver|carer")
_STOP_ALT = "|".join(sorted((re.escape(w) for w in STOPWORDS), key=len, reverse=True))
CAP_NAME = rf"(?!(?i:{_STOP_ALT})\b)(?:[A-Z]['’]|Mc|Mac)?[A-Z][a-z]+(?:-[A-Z][a-z]+)?"  # not a stopword
ANY_NAME = rf"(?!(?i:{_STOP_ALT})\b)(?:[A-Za-z]['’])?[A-Za-z][a-z]+(?:-[A-Za-z][a-z]+)?"
# The labels of personal data, never personal data themselves (an NER entity made only of them is dropped).
FIELD_WORDS = frozenset(["dob", "d.o.b", "mrn", "ssn", "id", "zip", "dr", "mr", "mrs", "ms", "mx", "phone", "tel",
                         "cell", "fax", "email", "e-mail", "patient", "name"])
MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
ORDINAL = r"(?:st|nd|rd|th)?"
STREET = (r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|ter|circle|cir|"
          r"parkway|pkwy|highway|hwy|square|sq|trail|trl|crescent|cres|close|row|alley|plaza")
STREET_WORD = rf"(?:\d+(?:st|nd|rd|th)|[NSEW]\.?|(?!(?i:{_STOP_ALT}|{UNITS})\b)[A-Za-z][a-z'’]+|[A-Z][A-Za-z'’]+)"
ID_VALUE = r"(?P<v>(?=(?:[A-Za-z-]*\d){3})[A-Za-z0-9][A-Za-z0-9-]{2,}[A-Za-z0-9])"  # 3+ digits in it
ID_WORD = r"(?:\s+(?:number|no\.?|num|#|id))?"


@dataclass(frozen=True)
class Pattern:
    """One detector: spans of `regex` (its group `v` when it has one) are `kind`, kept when `keep(value)` holds."""

    kind: PiiKind
    regex: re.Pattern
    keep: Callable[[str], bool] | None = None

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        group = "v" if "v" in self.regex.groupindex else 0
        for match in self.regex.finditer(text):
            start, end = match.span(group)
            if start < end and (self.keep is None or self.keep(match.group(group))):
                yield start, end


def _digits(n: int) -> Callable[[str], bool]:
    return lambda value: sum(c.isdigit() for c in value) >= n


def _day_month(value: str) -> bool:
    """A numeric date reads as day and month (either order): both 1..31, one of them at most 12."""
    parts = re.split(r"[/.-]", value)
    if len(parts[0]) == 4:  # ISO: year first
        parts = parts[1:]
    a, b = int(parts[0]), int(parts[1])
    return 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12


_I = re.IGNORECASE
# Order is priority when two detectors find the very same span: the more specific first.
PATTERNS: tuple[Pattern, ...] = (
    Pattern(PiiKind.EMAIL, _log_pattern("<email>")),
    Pattern(PiiKind.URL, re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+[^\s<>\".,;:!?)]", _I)),
    Pattern(PiiKind.MRN, re.compile(
        r"\b(?:MRN|medical\s+record(?:\s+(?:number|no\.?|num|#))?|(?:hospital\s+)?record\s+(?:number|no\.?|#)|"
        r"chart\s+(?:number|no\.?|#)|patient\s+(?:id|number|no\.?|#)|hospital\s+(?:id|number|no\.?|#))"
        rf"\s*(?:is|:|#|=|-)?\s*#?\s*{ID_VALUE}", _I), _digits(3)),
    Pattern(PiiKind.ID, re.compile(
        rf"\b(?:ssn|social\s+security{ID_WORD}|insurance(?:\s+(?:id|number|no\.?|#|policy))|member{ID_WORD}|"
        rf"policy{ID_WORD}|medicare{ID_WORD}|medicaid{ID_WORD}|passport{ID_WORD}|"
        rf"driver'?s?\s+licen[cs]e{ID_WORD}|licen[cs]e\s+(?:number|no\.?|#)|account{ID_WORD}|claim{ID_WORD}|"
        rf"case\s+(?:number|no\.?|#)|nhs{ID_WORD}|(?:my|the|his|her|patient)\s+id|id\s+(?:number|no\.?|#))"
        rf"\s*(?:is|:|#|=|-)?\s*#?\s*{ID_VALUE}", _I), _digits(3)),
    Pattern(PiiKind.ID, _log_pattern("<iban>")),
    Pattern(PiiKind.ID, _log_pattern("<card>")),
    Pattern(PiiKind.ID, _log_pattern("<id>")),  # SSN-style 123-45-6789
    Pattern(PiiKind.DATE, re.compile(
        r"\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|birthday|born(?:\s+on)?)\s*(?:is|:|-)?\s*"
        r"(?P<v>\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{1,2}[/.-]\d{2,4}|(?:19|20)\d{2})\b", _I)),
    Pattern(PiiKind.DATE, re.compile(rf"\b(?:19|20)\d{{2}}[/.-]\d{{1,2}}[/.-]\d{{1,2}}\b{NOT_A_QUANTITY}"),
            _day_month),
    Pattern(PiiKind.DATE, re.compile(rf"\b\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})\b{NOT_A_QUANTITY}"),
            _day_month),
    Pattern(PiiKind.DATE, re.compile(rf"\b\d{{1,2}}{ORDINAL}\s+(?:of\s+)?{MONTH}\.?,?\s+(?:19|20)\d{{2}}\b", _I)),
    Pattern(PiiKind.DATE, re.compile(rf"\b{MONTH}\.?\s+\d{{1,2}}{ORDINAL}(?:,?\s+(?:19|20)\d{{2}})?\b"
                                     rf"{NOT_A_QUANTITY}", _I)),
    Pattern(PiiKind.DATE, re.compile(rf"\b\d{{1,2}}{ORDINAL}\s+(?:of\s+)?{MONTH}\b", _I)),
    Pattern(PiiKind.DATE, re.compile(rf"\b{MONTH}\.?,?\s+(?:19|20)\d{{2}}\b", _I)),
    Pattern(PiiKind.DATE, re.compile(rf"\b(?:on|since|from|until|till|dated)\s+(?P<v>\d{{1,2}}/\d{{1,2}})\b(?![/\d])"
                                     rf"{NOT_A_QUANTITY}", _I), _day_month),
    Pattern(PiiKind.PHONE, re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?![\d/])"
        + NOT_A_QUANTITY)),
    Pattern(PiiKind.PHONE, _log_pattern("<phone>"), _digits(7)),
    Pattern(PiiKind.ADDRESS, re.compile(
        rf"\b\d{{1,6}}[A-Za-z]?(?:-\d+)?\s+(?:{STREET_WORD}\s+){{1,4}}(?i:{STREET})\b\.?"
        r"(?:,?\s+(?i:apt|apartment|suite|ste|unit|flat|room|#)\.?\s*#?\s*[A-Za-z0-9-]+)?"
        r"(?:,\s*[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2})?(?:,?\s+[A-Z]{2})?(?:\s+\d{5}(?:-\d{4})?)?")),
    Pattern(PiiKind.ADDRESS, re.compile(r"\bP\.?\s?O\.?\s+Box\s+\d+", _I)),
    Pattern(PiiKind.ADDRESS, re.compile(r"\bzip(?:\s*code)?\s*(?:is|:|#)?\s*(?P<v>\d{5}(?:-\d{4})?)\b", _I)),
    Pattern(PiiKind.ADDRESS, re.compile(r"\b(?:AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|"
                                        r"MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|"
                                        r"WA|WV|WI|WY|DC)\s+\d{5}(?:-\d{4})?\b")),
    Pattern(PiiKind.NAME, re.compile(rf"\b(?i:dr|mr|mrs|ms|mx|miss|prof|doctor|nurse)\.?\s+"
                                     rf"(?P<v>{CAP_NAME}(?:\s+{CAP_NAME}){{0,2}})")),
    Pattern(PiiKind.NAME, re.compile(rf"\b(?i:(?:my|his|her|the\s+patient'?s?|patient'?s?)\s+name\s+is|my\s+name'?s|"
                                     rf"name\s*:|i\s+am\s+called|i'?m\s+called|call\s+me)\s+"
                                     rf"(?P<v>{ANY_NAME}(?:\s+{ANY_NAME}){{0,2}})")),
    Pattern(PiiKind.NAME, re.compile(rf"\b(?i:i'?m|i\s+am|this\s+is)\s+(?P<v>{CAP_NAME}\s+{CAP_NAME})\b")),
    Pattern(PiiKind.NAME, re.compile(rf"\b(?i:(?:my|our|his|her|their)\s+(?:{RELATIONS}))\s*,?\s+"
                                     rf"(?P<v>{CAP_NAME}(?:\s+{CAP_NAME})?)")),
    Pattern(PiiKind.NAME, re.compile(rf"\b(?i:thanks|thank\s+you|regards|best|cheers|sincerely|best\s+wishes|"
                                     rf"kind\s+regards|love)\s*[,!.-]*\s+(?P<v>{CAP_NAME}(?:\s+{CAP_NAME})?)"
                                     r"\s*[.!]*\s*$")),
    Pattern(PiiKind.ID, re.compile(rf"\b[A-Za-z]{{1,3}}-?\d{{5,}}[A-Za-z]?\b{NOT_A_QUANTITY}")),
    Pattern(PiiKind.ID, re.compile(rf"(?<![\d.,])\d{{6,}}(?![\d.,]\d){NOT_A_QUANTITY}")),
)


class MaskResult(BaseModel):
    """A masked text and what was masked: kinds and counts, never the values."""

    text: str = Field(description="The input with each personal item replaced by its kind's placeholder.")
    kinds: list[PiiKind] = Field(description="The kinds masked, sorted, each once.")
    counts: dict[PiiKind, int] = Field(description="How many items of each kind were masked.")


class PiiMasker:
    """Mask personal data with patterns, and with a goldmine NER model's entities when one is given.

    Args:
        ner: a loaded goldmine NER `Model` (or None: patterns only).
        ner_kinds: entity type -> kind; types left out are not masked (default: PER -> name, LOC -> address).
        keep_words: lower-case words that are never a name or a place on their own (medical eponyms).
        ner_min_score: entities below this mean word probability are ignored.
    """

    def __init__(self, ner=None, ner_kinds: dict[str, PiiKind] | None = None,
                 keep_words: Iterable[str] = (), ner_min_score: float = 0.5):
        if ner is not None and getattr(ner.meta, "task", None) != "ner":
            raise InputError(f"the masker's NER model must be a goldmine NER run; this one is a "
                             f"{ner.meta.task} model")
        self.ner = ner
        self.ner_kinds = {k: PiiKind(v) for k, v in (ner_kinds or {"PER": "name", "LOC": "address"}).items()}
        if ner is not None and (unknown := sorted(set(self.ner_kinds) - {_entity_type(label)
                                                                        for label in ner.labels})):
            raise InputError(f"ner_kinds names entity types {unknown} that the NER model does not tag "
                             f"(it tags {sorted({_entity_type(label) for label in ner.labels} - {''})})")
        self.keep_words = frozenset(w.lower() for w in keep_words)
        self.ner_min_score = ner_min_score

    @property
    def limitations(self) -> str | None:
        """What this masker cannot catch, or None when an NER model backs the patterns."""
        if self.ner is not None:
            return None
        return ("patterns only (no NER model configured): names are masked only after a cue (a title such as Dr. or "
                "Mrs., 'my name is', a relative such as 'my son', a sign-off), and places only as street addresses, "
                "P.O. boxes and ZIP codes; a bare name ('John Smith has asthma') or town ('I live in Springfield') "
                "stays in clear")

    def mask(self, text: str) -> MaskResult:
        return self.mask_many([text])[0]

    def mask_many(self, texts: list[str]) -> list[MaskResult]:
        """`mask` of several texts, with one NER call for all of them."""
        return [_replace(text, spans) for text, spans in zip(texts, self.spans_many(texts), strict=True)]

    def spans_many(self, texts: list[str]) -> list[list[tuple[int, int, PiiKind]]]:
        """The spans `mask` replaces in each text, as (start, end, kind), merged: for evaluation (never log
        them: they locate the clear values)."""
        entities = self._entities(texts) if self.ner is not None else [[] for _ in texts]
        merged = []
        for text, found in zip(texts, entities, strict=True):
            spans = [(s, e, p.kind, rank) for rank, p in enumerate(PATTERNS) for s, e in p.spans(text)]
            spans += [(s, e, kind, len(PATTERNS)) for s, e, kind in found]
            merged.append(_merge(text, spans))
        return merged

    def _entities(self, texts: list[str]) -> list[list[tuple[int, int, PiiKind]]]:
        found = []
        for prediction in self.ner.predict(texts):
            spans = []
            for entity in prediction["entities"]:
                kind = self.ner_kinds.get(entity["type"])
                if kind is None or entity["score"] < self.ner_min_score:
                    continue
                words = [w for w in (_bare(w) for w in re.split(r"[\s-]+", entity["text"])) if w]
                if all(w in FIELD_WORDS for w in words):
                    continue  # "DOB", "MRN": the tagger takes a form's labels for names; they are not personal
                if self.keep_words and all(w in self.keep_words for w in words):
                    continue  # an eponym the FAQ knows as medical ("Parkinson", "Lyme")
                spans.append((entity["start"], entity["end"], kind))
            found.append(spans)
        return found


def _entity_type(label: str) -> str:
    return label.split("-", 1)[1] if "-" in label else ("" if label == "O" else label)


def _bare(word: str) -> str:
    """A word without its possessive and punctuation, lower case: how keep_words are compared."""
    return re.sub(r"(?:['’]s)$", "", word.lower()).strip(".,;:!?()[]\"'’")


def _merge(text: str, spans: list[tuple[int, int, PiiKind, int]]) -> list[tuple[int, int, PiiKind]]:
    """Non-overlapping spans: longer spans first, then the detector earlier in PATTERNS; a possessive "'s" is
    left outside a name."""
    chosen: list[tuple[int, int, PiiKind]] = []
    for start, end, kind, _ in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[3], s[0])):
        if kind is PiiKind.NAME and text[max(start, end - 2):end] in ("'s", "’s"):
            end -= 2
        if end > start and all(end <= s or start >= e for s, e, _ in chosen):
            chosen.append((start, end, kind))
    return sorted(chosen)


def _replace(text: str, spans: list[tuple[int, int, PiiKind]]) -> MaskResult:
    counts: dict[PiiKind, int] = {}
    pieces, last = [], 0
    for start, end, kind in spans:
        pieces += [text[last:start], kind.placeholder]
        counts[kind] = counts.get(kind, 0) + 1
        last = end
    pieces.append(text[last:])
    return MaskResult(text="".join(pieces), kinds=sorted(counts), counts=dict(sorted(counts.items())))


def without_placeholders(text: str) -> str:
    """A masked text with its placeholders dropped: what a search model reads (a placeholder carries no meaning
    for it, and "<NAME>" would pull a query toward questions about names)."""
    return re.sub(r"\s{2,}", " ", PLACEHOLDER.sub(" ", text)).strip()


def describe(result: MaskResult) -> dict[str, Any]:
    """Log fields of a masking: the kinds and counts only."""
    return {"masked": {k.value: n for k, n in result.counts.items()}}
