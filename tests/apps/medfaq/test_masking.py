"""PII masking: each kind by pattern, no false positives on ordinary medical text, NER entities and eponyms."""

from __future__ import annotations

import pytest

from goldmine.apps.medfaq.masking import PiiKind, PiiMasker, without_placeholders
from goldmine.errors import InputError


@pytest.mark.parametrize(("text", "expected"), [
    # names: after a cue
    ("my name is john smith and i have asthma", "my name is <NAME> and i have asthma"),
    ("Hi, I'm Dana Whitfield, 44, with a cough", "Hi, I'm <NAME>, 44, with a cough"),
    ("Dr. Patel said my ferritin is low", "Dr. <NAME> said my ferritin is low"),
    ("Mrs O'Brien's daughter has a rash", "Mrs <NAME>'s daughter has a rash"),
    ("My wife Anne-Marie McDonald has lupus", "My wife <NAME> has lupus"),
    ("does it spread? Thanks, Maria", "does it spread? Thanks, <NAME>"),
    # dates
    ("born on 03/14/2016, is that too young?", "born on <DATE>, is that too young?"),
    ("my DOB is 1985-07-02", "my DOB is <DATE>"),
    ("date of birth: 14.03.1980", "date of birth: <DATE>"),
    ("diagnosed on March 3rd, 2021 and again 12 May 2022", "diagnosed on <DATE> and again <DATE>"),
    ("the rash started on 5/12", "the rash started on <DATE>"),
    # phones, e-mails, urls
    ("call me at (617) 555-0134", "call me at <PHONE>"),
    ("my cell is +1 415 555 2671", "my cell is <PHONE>"),
    ("555-123-4567 is my number", "<PHONE> is my number"),
    ("write to jane.doe+clinic@mail.example.com", "write to <EMAIL>"),
    ("my chart is at https://portal.example.org/chart?id=55.", "my chart is at <URL>."),
    # addresses
    ("I live at 42 Oak Street, Apt 5B, Springfield, IL 62704 now", "I live at <ADDRESS> now"),
    ("send it to 1200 N 5th Ave please", "send it to <ADDRESS> please"),
    ("P.O. Box 1234 is my mail", "<ADDRESS> is my mail"),
    ("my zip code is 02139", "my zip code is <ADDRESS>"),
    # record numbers and other ids
    ("my MRN is 00482913", "my MRN is <MRN>"),
    ("medical record number: A-99812", "medical record number: <MRN>"),
    ("patient ID 7781234 at the clinic", "patient ID <MRN> at the clinic"),
    ("member ID XGH123456789 for billing", "member ID <ID> for billing"),
    ("my SSN is 078-05-1120", "my SSN is <ID>"),
    ("insurance policy number is ABC-99812-77.", "insurance policy number is <ID>."),
    ("reference AB1234567 on the form", "reference <ID> on the form"),
    ("card 4111 1111 1111 1111 was charged", "card <ID> was charged"),
])
def test_each_kind_is_masked(text, expected):
    assert PiiMasker().mask(text).text == expected


@pytest.mark.parametrize("text", [
    "What are the symptoms of type 2 diabetes?",
    "I take 5 mg of amlodipine and 500 mg metformin twice a day",
    "Take 1-2 tablets every 4-6 hours, doses of 0.5-10 mg",
    "BP was 130/85, LDL 160 mg/dL, heart rate 72 bpm, HbA1c 6.5%",
    "Is COVID-19 worse than H1N1? What about BRCA1 and vitamin B12?",
    "About 1 in 100000 people have it; platelets 150000 cells per microliter",
    "Is Parkinson's disease inherited? What causes Lyme disease?",
    "What is (are) Smith-Lemli-Opitz syndrome ?",
    "I walked 5 miles down the road and my knee hurts. I was born in 1985.",
    "ICD-10 code E11.9 and stage 3 melanoma at age 45",
    "My doctor said it is fine. My daughter Is sick.",
    "Do you have information about Down syndrome and Graves disease?",
    "What is the outlook for Creutzfeldt-Jakob Disease ?",
    "How many people are affected by Charcot-Marie-Tooth disease ?",
])
def test_no_false_positives_on_medical_text(text):
    masked = PiiMasker().mask(text)
    assert masked.text == text and masked.kinds == [] and masked.counts == {}


def test_kinds_and_counts_but_never_values():
    masked = PiiMasker().mask("Dr. Patel and Dr. Jones, call 555-123-4567, MRN 00482913")
    assert masked.text == "Dr. <NAME> and Dr. <NAME>, call <PHONE>, MRN <MRN>"
    assert masked.kinds == [PiiKind.MRN, PiiKind.NAME, PiiKind.PHONE]
    assert masked.counts == {PiiKind.MRN: 1, PiiKind.NAME: 2, PiiKind.PHONE: 1}
    dumped = masked.model_dump_json()
    assert "Patel" not in dumped and "4567" not in dumped and "00482913" not in dumped


def test_patterns_only_says_what_it_cannot_catch():
    masker = PiiMasker()
    assert "bare name" in masker.limitations
    assert masker.mask("John Smith has asthma").text == "John Smith has asthma"  # the documented gap


def test_ner_entities_are_masked_with_the_patterns(stub_ner):
    ner = stub_ner([("PER", "John Smith"), ("LOC", "Springfield"), ("ORG", "Mayo Clinic")])
    masker = PiiMasker(ner)
    assert masker.limitations is None
    masked = masker.mask("John Smith from Springfield (DOB 04/12/1979) saw the Mayo Clinic")
    assert masked.text == "<NAME> from <ADDRESS> (DOB <DATE>) saw the Mayo Clinic"  # ORG is not mapped
    assert masked.kinds == [PiiKind.ADDRESS, PiiKind.DATE, PiiKind.NAME]


def test_overlapping_spans_keep_the_longer_one(stub_ner):
    ner = stub_ner([("PER", "Patel"), ("LOC", "Oak Street")])  # inside a title cue and an address
    masked = PiiMasker(ner).mask("Dr. Patel at 42 Oak Street, Springfield")
    assert masked.text == "Dr. <NAME> at <ADDRESS>"
    assert masked.counts == {PiiKind.ADDRESS: 1, PiiKind.NAME: 1}


def test_eponyms_of_the_faq_are_not_names(stub_ner):
    ner = stub_ner([("PER", "Parkinson"), ("LOC", "Lyme"), ("PER", "Anna Lyme")])
    masker = PiiMasker(ner, keep_words={"parkinson", "lyme", "disease"})
    assert masker.mask("Is Parkinson's disease inherited?").text == "Is Parkinson's disease inherited?"
    assert masker.mask("Lyme disease from a tick").text == "Lyme disease from a tick"
    # a name with a word the FAQ does not know is still a name
    assert masker.mask("Anna Lyme has a rash").text == "<NAME> has a rash"


def test_ner_kinds_are_configurable_and_checked(stub_ner):
    masker = PiiMasker(stub_ner([("ORG", "Mayo Clinic")]), ner_kinds={"ORG": "address"})
    assert masker.mask("seen at Mayo Clinic").text == "seen at <ADDRESS>"
    with pytest.raises(InputError, match=r"\['MISC'\].*does not tag"):
        PiiMasker(stub_ner([]), ner_kinds={"MISC": "name"})


def test_one_ner_call_for_many_texts(stub_ner):
    ner = stub_ner([("PER", "Ana")])
    masked = PiiMasker(ner).mask_many(["Ana is ill", "no names here", "call 555-123-4567"])
    assert [m.text for m in masked] == ["<NAME> is ill", "no names here", "call <PHONE>"]
    assert ner.calls == 1


def test_a_real_goldmine_ner_run_plugs_in(tiny_run):
    from goldmine.inference.model import Model

    masker = PiiMasker(Model.load(tiny_run("ner")))
    text = "Maria Lopez from Madrid, call 555-123-4567"
    masked = masker.mask(text)  # a 2-step random tagger: whatever it finds, the phone is masked by pattern
    assert "555-123-4567" not in masked.text and PiiKind.PHONE in masked.kinds
    with pytest.raises(InputError, match="NER run"):
        PiiMasker(Model.load(tiny_run("classification")))


def test_placeholders_are_dropped_for_search():
    assert without_placeholders("my son <NAME> has a fever, call <PHONE>") == "my son has a fever, call"
    assert without_placeholders("<NAME>") == ""


def test_form_labels_are_not_names(stub_ner):
    masker = PiiMasker(stub_ner([("PER", "DOB"), ("LOC", "MRN"), ("PER", "Ana")]))
    assert masker.mask("Ana, DOB 04/12/1979, MRN 00482913").text == "<NAME>, DOB <DATE>, MRN <MRN>"


def test_the_request_log_maskers_expressions_are_reused_not_copied():
    from goldmine.apps.medfaq.masking import PATTERNS
    from goldmine.serving.masking import pattern

    shared = {p.regex for p in PATTERNS}
    assert all(pattern(token) in shared for token in ("<email>", "<iban>", "<card>", "<id>", "<phone>"))
