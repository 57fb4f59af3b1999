"""Medical FAQ benchmark (issue 15 part 4): the models it is built on, the PII masker, answers and hand-offs on
medquad, and the latency of one `answer` call.

    python bench/medfaq.py                    # trains what runs/bench-medfaq lacks (an hour or more on 2 busy cores)
    python bench/medfaq.py --only pii,faq     # reuse the trained runs
    python bench/medfaq.py --limit 60         # a smoke run on a few questions: printed, not written

Sections:

models   Three goldmine runs, trained once into --work and reused after: the cross-encoder (pair classification)
         and the bi-encoder (`task: retrieval`) on medical_question_pairs train with dev split off it (10%) and the
         dev file as test, as bench/fewshot.py trains them; and a small NER run on conll2003 (NER_STEPS steps,
         not the full 3 epochs, for time), or with --ner-run an existing goldmine NER run. `pair_accuracy` is the
         cross-encoder's accuracy on medical_question_pairs dev, `mrr10` the bi-encoder's MRR@10 there (each dev
         question's paraphrase among every dev second question), both from the runs' own test rows.
pii      A PII test set written here: PII_QUESTIONS real medquad questions (seeded sample), most of them wrapped in
         a patient's sentence carrying invented personal data (names, dates of birth and other dates, phone numbers,
         e-mails, street addresses and towns, record numbers, member/policy/SSN ids) at known character spans, the
         rest left clean. An item is recalled when every letter and digit of it is inside masked spans (of any
         kind; `typed_recall` also asks for its kind); a masked span is precise when it overlaps a planted item,
         so masking medical words counts against precision. Measured with patterns only, with the NER run, and
         with the NER run plus the FAQ's focus words (the product's setting). Nothing of the set is stored.
faq      Topics held out of the FAQ: the `focus` groups of medquad (focus lower-cased, "'s" and punctuation
         dropped) are shuffled (seed) and REMOVED_TOPICS of them removed from the index, half for calibration and
         half for the test. Questions are patient-style paraphrases of medquad questions written from their
         question type and focus ("how would i know if i have {focus}" for symptoms), so none is a copy of an
         indexed question; a paraphrase of a present topic is answered right when the answered entry has the same
         focus group and question type, and a paraphrase of a removed topic should be handed off. Questions are
         masked as `MedFaq` masks them (the NER run and the kept FAQ's focus words) before the search. The threshold
         is calibrated (`calibrate_threshold`) on the calibration questions (present and removed topics) and
         measured on the test questions; `auto` (the bi-encoder's match threshold from its medical_question_pairs
         dev pairs) is measured beside it. Encoders: the bundled one as it is, and the fine-tuned bi-encoder, with
         and without the cross-encoder re-ranking its top RERANK_CANDIDATES.
         The urgent rules' false alarms: the share of all medquad questions, and of the test paraphrases, they fire on.
latency  One `MedFaq.answer` call (NER masking, urgent rules, search of the medquad index with the fine-tuned
         encoder: the faq section's index when it is there, else all of medquad; no re-ranker): median and p90 over
         LATENCY_CALLS calls of different questions, after warm-up.

Result keys: bench/results/medfaq.json {"pair_accuracy", "mrr10", "pii_recall", "pii_precision" (patterns + NER +
focus words), "handoff_rate_removed_topics", "answer_rate_present_topics", "answer_accuracy_present_topics"
(fine-tuned encoder, calibrated threshold), "latency_ms": {"p50", "p90"}, "models", "pii", "faq", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info, provenance  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"
MEDQUAD = DATA / "medquad" / "qa.jsonl"
MQP_TRAIN, MQP_DEV = DATA / "medical_question_pairs" / "train.jsonl", DATA / "medical_question_pairs" / "dev.jsonl"
NER_STEPS = 400
PII_QUESTIONS = 600
CLEAN_SHARE = 0.2  # of the PII set's questions carry no personal data
REMOVED_TOPICS = 300  # focus groups taken out of the index (half calibration, half test)
PRESENT_QUESTIONS = 400  # paraphrases of present topics, per split (calibration, test)
REMOVED_QUESTIONS = 400  # paraphrases of removed topics, at most, per split
RERANK_CANDIDATES = 10
LATENCY_CALLS = 50
SEED = 13

RUNS = {  # name: goldmine.train settings (bench/fewshot.py's medical_question_pairs settings; NER shortened)
    "mqp-retrieval": {"task": "retrieval", "data.train": str(MQP_TRAIN), "data.test": str(MQP_DEV),
                      "data.split": [0.9, 0.1, 0.0], "training.num_threads": 1},
    "mqp-pairs": {"task": "classification", "data.train": str(MQP_TRAIN), "data.test": str(MQP_DEV),
                  "data.split": [0.9, 0.1, 0.0], "training.num_threads": 1},
    "conll-ner": {"task": "ner", "data.train": str(DATA / "conll2003" / "train.txt"),
                  "data.dev": str(DATA / "conll2003" / "dev.txt"), "data.test": str(DATA / "conll2003" / "dev.txt"),
                  "training.max_steps": NER_STEPS, "training.eval_strategy": "none", "training.num_threads": 1},
}


def log(message: str) -> None:
    print(f"[medfaq {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- models
def train_models(work: Path, names: list[str]) -> dict[str, Path]:
    """Each run of RUNS under `work`, trained unless it is there (its metrics.json written)."""
    import goldmine
    from goldmine.config import load_config

    for name in names:
        out = work / name
        if (out / "metrics.json").is_file():
            continue
        log(f"training {name} (into {out})")
        started = time.perf_counter()
        goldmine.train(load_config(None, {**RUNS[name], "output_dir": str(out)}))
        (out / "bench_wall.json").write_text(json.dumps({"wall_s": time.perf_counter() - started}))
    return {name: work / name for name in names}


def model_figures(runs: dict[str, Path]) -> dict:
    figures: dict = {}
    for name, out in runs.items():
        metrics = json.loads((out / "metrics.json").read_text())
        extra = json.loads((out / "goldmine.json").read_text())["extra"]
        wall = json.loads((out / "bench_wall.json").read_text())["wall_s"] if (out / "bench_wall.json").is_file() \
            else None
        trained_here = (out / "bench_wall.json").is_file()  # train_models writes it
        settings = RUNS[name] if trained_here else {"reused_run": str(out), **_run_settings(out)}
        figures[name] = {"settings": settings, "before_after": metrics["before_after"], "test": metrics["test"],
                         "train_seconds": extra.get("train_seconds"), "global_step": extra.get("global_step"),
                         "wall_s": wall}
        if name == "mqp-retrieval":
            figures[name]["match_threshold"] = extra["retrieval"]["match_threshold"]
    return figures


def _run_settings(out: Path) -> dict:
    """What a run reused from elsewhere was trained on: a few keys of its config.yaml."""
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    return {"task": config["task"], "data.train": config["data"]["train"], "data.test": config["data"]["test"],
            "training.epochs": config["training"]["epochs"], "training.max_steps": config["training"]["max_steps"],
            "data.case_features": config["data"].get("case_features")}


# ---------------------------------------------------------------- the PII test set
FIRST = ["Maria", "Wei", "Aisha", "Liam", "Priya", "Tomasz", "Fatima", "James", "Sofia", "Kwame", "Elena", "Hiroshi",
         "Grace", "Mateo", "Olga", "Daniel", "Amara", "Noah", "Leila", "Carlos", "Ingrid", "Ravi", "Chloe", "Dmitri",
         "Yuki", "Samuel", "Nadia", "Ethan", "Zainab", "Lucas"]
LAST = ["Gonzalez", "Chen", "Okafor", "O'Connor", "Natarajan", "Kowalski", "Haddad", "Miller", "Rossi", "Mensah",
        "Petrova", "Tanaka", "Whitfield", "Alvarez", "Ivanova", "Brennan", "Diallo", "Fischer", "Karimi", "Mendoza",
        "Lindqvist", "Sharma", "Dubois", "Volkov", "Nakamura", "Adeyemi", "Farouk", "Thompson", "Hussein", "Moreau"]
STREETS = ["Oak Street", "Maple Avenue", "Larkspur Lane", "N 5th Ave", "Cedar Road", "Willow Drive", "Elm Court",
           "Harbor Boulevard", "Pine Street", "Sunset Blvd", "Baker Road", "Mill Lane"]
CITIES = [("Springfield", "IL", "62704"), ("Portland", "OR", "97205"), ("Dayton", "OH", "45402"),
          ("Boise", "ID", "83702"), ("Fresno", "CA", "93721"), ("Tulsa", "OK", "74103"), ("Leeds", None, None),
          ("Toulouse", None, None), ("Manchester", None, None), ("Lyon", None, None)]
KINDS = {"name": "name", "first": "name", "last": "name", "name_lower": "name", "dob": "date", "date": "date",
         "phone": "phone", "email": "email", "street": "address", "street_full": "address", "city": "address",
         "mrn": "mrn", "member": "id", "ssn": "id", "policy": "id"}
TEMPLATES = [
    "Hi, my name is {name}. {q}",
    "{name} here. {q}",
    "{q} Thanks, {first}",
    "{q} - {name}",
    "My son {first} was born on {dob}. {q}",
    "My daughter {first} ({dob}) was just diagnosed. {q}",
    "I'm {name}, DOB {dob}. {q}",
    "Patient: {name}, MRN {mrn}. {q}",
    "{q} My medical record number is {mrn}.",
    "{q} You can reach me at {phone}.",
    "{q} Please email me at {email}.",
    "Call me on {phone} or write to {email}. {q}",
    "I live at {street}. {q}",
    "{q} My address is {street_full}.",
    "I'm writing from {city}. {q}",
    "We moved to {city} last year and my wife {first} got sick. {q}",
    "{q} My insurance member ID is {member}.",
    "{q} SSN {ssn}, DOB {dob}.",
    "Dr. {last} told me to ask: {q}",
    "{q} My appointment with Dr. {last} is on {date}.",
    "{q} I was diagnosed on {date}.",
    "{name} ({dob}) asks: {q}",
    "For my mother {name}, born {dob}: {q}",
    "{q} Records were sent to {street_full} on {date}.",
    "Hello, this is {name} from {city}. {q}",
    "{q} My phone: {phone}, my email: {email}, my chart number: {mrn}.",
    "{q} My husband {name} has it too.",
    "my name is {name_lower} and {q}",
    "{q} Policy number {policy}.",
    "{q} I'm {name} and my date of birth is {dob}.",
]


def _date(rng: random.Random, birth: bool) -> str:
    year = rng.randint(1935, 2015) if birth else rng.randint(2018, 2025)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    names = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"]
    return rng.choice([f"{month:02d}/{day:02d}/{year}", f"{day}.{month}.{year}", f"{year}-{month:02d}-{day:02d}",
                       f"{names[month - 1]} {day}, {year}", f"{day} {names[month - 1]} {year}",
                       f"{month}/{day}/{year % 100:02d}"])


def _values(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state, zipcode = rng.choice(CITIES)
    street = f"{rng.randint(2, 9800)} {rng.choice(STREETS)}"
    full = street + (f", {city}, {state} {zipcode}" if state else f", {city}")
    digits = "".join(str(rng.randint(0, 9)) for _ in range(10))
    return {
        "name": f"{first} {last}", "first": first, "last": last, "name_lower": f"{first} {last}".lower(),
        "dob": _date(rng, True), "date": _date(rng, False),
        "phone": rng.choice([f"({digits[:3]}) 555-{digits[3:7]}", f"{digits[:3]}-555-{digits[3:7]}",
                             f"+1 {digits[:3]} 555 {digits[3:7]}", f"{digits[:3]}.555.{digits[3:7]}",
                             f"+44 20 7946 {digits[:4]}"]),
        "email": rng.choice([f"{first}.{last}", f"{first[0]}{last}{digits[:2]}", f"{first}{digits[:4]}"]).lower()
        .replace("'", "") + "@" + rng.choice(["example.com", "mail.example.org", "example.net"]),
        "street": street, "street_full": full, "city": city,
        "mrn": rng.choice([digits[:8], f"A-{digits[:6]}", f"{digits[:4]}-{digits[4:7]}", digits[:7]]),
        "member": rng.choice([f"XGH{digits[:9]}", f"W{digits}", f"MBR-{digits[:8]}"]),
        "ssn": f"{digits[:3]}-{digits[3:5]}-{digits[5:9]}",
        "policy": rng.choice([f"ABC-{digits[:5]}-{digits[5:7]}", f"POL{digits[:7]}"]),
    }


def pii_set(questions: list[str], seed: int) -> list[dict]:
    """[{"text", "items": [(start, end, kind)]}]: each question in a template with invented values at known spans,
    or clean."""
    rng = random.Random(seed)
    rows = []
    for question in questions:
        if rng.random() < CLEAN_SHARE:
            rows.append({"text": question, "items": []})
            continue
        template, values = rng.choice(TEMPLATES), _values(rng)
        text, items, last = "", [], 0
        for match in re.finditer(r"\{(\w+)\}", template):
            text += template[last:match.start()]
            slot = match.group(1)
            value = question if slot == "q" else values[slot]
            if slot != "q":
                items.append((len(text), len(text) + len(value), KINDS[slot]))
            text += value
            last = match.end()
        rows.append({"text": text + template[last:], "items": items})
    return rows


def score_masking(rows: list[dict], spans_per_row: list[list[tuple[int, int, object]]]) -> dict:
    """Recall of planted items (every letter and digit covered; typed: by a span of its kind) and precision of
    masked spans (overlapping a planted item), overall and per kind; clean questions with any span masked."""
    found = caught = typed = correct = 0
    planted: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # kind: [items, caught, typed]
    false_on_clean = 0
    for row, spans in zip(rows, spans_per_row, strict=True):
        text = row["text"]
        covered = {}
        for start, end, kind in spans:
            for i in range(start, end):
                covered[i] = str(kind)
        for start, end, kind in row["items"]:
            chars = [i for i in range(start, end) if text[i].isalnum()]
            hit = all(i in covered for i in chars)
            planted[kind][0] += 1
            planted[kind][1] += hit
            planted[kind][2] += hit and all(covered[i] == kind for i in chars)
        found += len(spans)
        for start, end, _ in spans:
            correct += any(start < e and s < end for s, e, _ in row["items"])
        false_on_clean += bool(spans) and not row["items"]
    items = sum(v[0] for v in planted.values())
    caught, typed = sum(v[1] for v in planted.values()), sum(v[2] for v in planted.values())
    clean = sum(1 for row in rows if not row["items"])
    return {"recall": caught / items, "typed_recall": typed / items, "precision": correct / found if found else 0.0,
            "items": items, "masked_spans": found, "false_spans": found - correct,
            "clean_questions": clean, "clean_questions_masked": false_on_clean,
            "recall_by_kind": {k: v[1] / v[0] for k, v in sorted(planted.items())},
            "items_by_kind": {k: v[0] for k, v in sorted(planted.items())}}


def pii_section(medquad: list[dict], ner_dir: Path | None, limit: int | None) -> dict:
    from goldmine.apps.medfaq.faq import focus_words
    from goldmine.apps.medfaq.masking import PiiMasker
    from goldmine.inference.model import Model

    rng = random.Random(SEED)
    questions = [r["question"] for r in rng.sample(medquad, limit or PII_QUESTIONS)]
    rows = pii_set(questions, SEED)
    focus = focus_words(SimpleNamespace(entries=[SimpleNamespace(payload=r) for r in medquad]))
    maskers = {"patterns": PiiMasker()}
    if ner_dir is not None:
        ner = Model.load(ner_dir)
        maskers["patterns + ner"] = PiiMasker(ner)
        maskers["patterns + ner + focus words"] = PiiMasker(ner, keep_words=focus)
    section: dict = {"questions": len(rows), "templates": len(TEMPLATES), "ner_run": str(ner_dir) if ner_dir else None,
                     "names_in_focus_words": sorted(n for n in {*FIRST, *LAST} if n.lower() in focus)}
    for name, masker in maskers.items():
        started = time.perf_counter()
        spans = masker.spans_many([r["text"] for r in rows])
        per_text_ms = 1000 * (time.perf_counter() - started) / len(rows)
        section[name] = score_masking(rows, spans) | {"ms_per_text": per_text_ms}
        log(f"pii {name}: recall {section[name]['recall']:.3f} precision {section[name]['precision']:.3f}")
    return section


# ---------------------------------------------------------------- answers and hand-offs on medquad
PARAPHRASES = {
    "information": ["can you explain what {f} is", "i was just told i have {f}, what is that?", "what does {f} mean"],
    "symptoms": ["how would i know if i have {f}", "what signs of {f} should i look out for",
                 "my doctor mentioned {f} - what symptoms does it cause?"],
    "treatment": ["how is {f} treated", "what can be done for {f}?", "is there a cure or therapy for {f}"],
    "inheritance": ["can {f} be passed from parents to children?", "if my mother has {f} will i get it too",
                    "does {f} run in families"],
    "frequency": ["how common is {f}", "how rare is {f}?", "is {f} a common condition"],
    "genetic changes": ["which genes are involved in {f}", "what mutation causes {f}?",
                        "what is the genetic cause of {f}"],
    "causes": ["why do people get {f}", "what is the cause of {f}?", "what leads to {f}"],
    "exams and tests": ["what tests are used to find {f}", "how do doctors check for {f}?", "how is {f} diagnosed"],
    "research": ["are there any clinical trials for {f}", "what new research is there on {f}?"],
    "outlook": ["what is the prognosis for {f}", "what can i expect long term with {f}?",
                "can people recover from {f}"],
    "susceptibility": ["who is likely to get {f}", "am i at risk of {f}?", "what are the risk factors for {f}"],
    "considerations": ["what should i do if i have {f}", "any advice for living with {f}?"],
    "prevention": ["how can i avoid getting {f}", "can {f} be prevented?", "what lowers the chance of {f}"],
    "stages": ["what stages does {f} have", "how is {f} staged?"],
    "complications": ["what problems can {f} lead to", "can {f} cause other problems?"],
    "support groups": ["where can i get support for {f}"],
}


def topic(focus: str) -> str:
    """A focus group: lower case, possessive and punctuation dropped ("Parkinson's Disease" = "parkinson disease")."""
    return " ".join(re.findall(r"[a-z0-9]+", re.sub(r"['’]s\b", "", focus.lower())))


def paraphrase(row: dict, rng: random.Random) -> str:
    return rng.choice(PARAPHRASES[row["qtype"]]).format(f=row["focus"].lower())


def faq_questions(medquad: list[dict], limit: int | None) -> tuple[list[dict], dict[str, list[dict]]]:
    """(the entries kept in the index, {split: [{"question", "topic", "qtype", "present"}]}) for calibration and
    test; present-topic questions come from entries kept in the index, removed-topic ones from the removed."""
    rng = random.Random(SEED)
    topics = sorted({topic(r["focus"]) for r in medquad})
    rng.shuffle(topics)
    removed = {"calibration": set(topics[:REMOVED_TOPICS // 2]), "test": set(topics[REMOVED_TOPICS // 2:
                                                                                    REMOVED_TOPICS])}
    gone = removed["calibration"] | removed["test"]
    kept = [r for r in medquad if topic(r["focus"]) not in gone]
    pool = list(kept)
    rng.shuffle(pool)
    present = limit or PRESENT_QUESTIONS
    splits: dict[str, list[dict]] = {}
    for i, split in enumerate(("calibration", "test")):
        chosen = pool[i * present:(i + 1) * present]
        asked = [{"question": paraphrase(r, rng), "topic": topic(r["focus"]), "qtype": r["qtype"], "present": True}
                 for r in chosen]
        out = [r for r in medquad if topic(r["focus"]) in removed[split]]
        rng.shuffle(out)
        asked += [{"question": paraphrase(r, rng), "topic": topic(r["focus"]), "qtype": r["qtype"], "present": False}
                  for r in out[:limit or REMOVED_QUESTIONS]]
        splits[split] = asked
    return kept, splits


def decisions(faq, questions: list[dict]) -> list[dict]:
    """Each question's best score and whether its best match is a right entry (right focus group and type) or the
    right topic. The questions come masked by the product's masker (`masked`)."""
    best = faq.best_scores([q["masked"] for q in questions])
    return [{"score": score, "right": q["present"] and topic(hit.payload.get("focus", "")) == q["topic"] and
             hit.payload.get("qtype") == q["qtype"], "right_topic": q["present"] and
             topic(hit.payload.get("focus", "")) == q["topic"], "present": q["present"]}
            for (score, hit), q in zip(best, questions, strict=True)]


def measure(rows: list[dict], threshold: float) -> dict:
    present = [r for r in rows if r["present"]]
    removed = [r for r in rows if not r["present"]]
    answered = [r for r in present if r["score"] >= threshold]
    return {"threshold": threshold,
            "handoff_rate_removed_topics": sum(r["score"] < threshold for r in removed) / len(removed),
            "answer_rate_present_topics": len(answered) / len(present),
            "answer_accuracy_present_topics": sum(r["right"] for r in answered) / len(answered) if answered else None,
            "answer_topic_accuracy_present_topics": sum(r["right_topic"] for r in answered) / len(answered)
            if answered else None,
            "top1_accuracy_present_topics": sum(r["right"] for r in present) / len(present),
            "decided_right": sum((r["score"] >= threshold) == r["right"] for r in rows) / len(rows),
            "present_questions": len(present), "removed_questions": len(removed)}


def faq_section(medquad: list[dict], runs: dict[str, Path], work: Path, limit: int | None) -> dict:
    from goldmine.apps.medfaq import MedFaq, MedFaqSettings, calibrate_threshold
    from goldmine.apps.medfaq.encoder import save_pretrained_encoder
    from goldmine.apps.medfaq.faq import focus_words
    from goldmine.apps.medfaq.masking import PiiMasker
    from goldmine.apps.medfaq.urgent import UrgentRules
    from goldmine.inference.model import Model
    from goldmine.retrieval.index import Entry

    kept, splits = faq_questions(medquad, limit)
    entries = [Entry(r["id"], r["question"], {k: r[k] for k in ("answer", "url", "focus", "qtype")}) for r in kept]
    rules = UrgentRules.load()
    # Masked once, as `MedFaq` masks them: with the NER run and the kept FAQ's focus words when there is a run.
    masker = PiiMasker(Model.load(runs["conll-ner"]) if "conll-ner" in runs else None,
                       keep_words=focus_words(SimpleNamespace(entries=entries)))
    for questions in splits.values():
        for question, masked in zip(questions, masker.mask_many([q["question"] for q in questions]), strict=True):
            question["masked"] = masked.text
    changed = sum(q["masked"] != q["question"] for qs in splits.values() for q in qs)
    section: dict = {"index_entries": len(entries), "removed_topics": REMOVED_TOPICS,
                     "masked_by": "patterns + ner + focus words" if "conll-ner" in runs else "patterns",
                     "paraphrases_changed_by_masking": changed,
                     "topics": len({topic(r["focus"]) for r in medquad}),
                     "questions": {s: {"present": sum(q["present"] for q in qs),
                                       "removed": sum(not q["present"] for q in qs)} for s, qs in splits.items()},
                     "urgent_false_alarms": {
                         "medquad_questions": sum(rules.check(r["question"]) is not None for r in medquad)
                         / len(medquad),
                         "test_paraphrases": sum(rules.check(q["question"]) is not None for q in splits["test"])
                         / len(splits["test"])}}
    bundled = work / "bundled-encoder"
    if not (bundled / "goldmine.json").is_file():
        save_pretrained_encoder(bundled)
    encoders = {"bundled": bundled, **({"fine-tuned": runs["mqp-retrieval"]} if "mqp-retrieval" in runs else {})}
    reranker = Model.load(runs["mqp-pairs"]) if "mqp-pairs" in runs else None
    for name, directory in encoders.items():
        model = Model.load(directory)
        started = time.perf_counter()
        index = cached_index(directory, entries, f"medquad-bench{'-smoke' if limit else ''}", model)
        build_s = time.perf_counter() - started
        variants = [("cosine", None)] + ([("re-ranked", reranker)] if reranker is not None and name == "fine-tuned"
                                         else [])
        for variant, rerank in variants:
            config = MedFaqSettings(threshold=0.0, rerank_candidates=RERANK_CANDIDATES, top_k=1)
            faq = MedFaq(config, model, index, reranker=rerank, rules=rules)  # cached_index checked the index
            started = time.perf_counter()
            rows = {split: decisions(faq, questions) for split, questions in splits.items()}
            seconds = time.perf_counter() - started
            fit = calibrate_threshold([r["score"] for r in rows["calibration"]],
                                      [r["right"] for r in rows["calibration"]])
            entry = {"calibrated": measure(rows["test"], fit.threshold) | {"calibration_accuracy": fit.accuracy},
                     "ms_per_question": 1000 * seconds / sum(len(q) for q in splits.values()),
                     "index_build_s": build_s}
            auto = model.meta.extra.get("retrieval", {}).get("match_threshold")
            if rerank is None and auto is not None:
                entry["auto"] = measure(rows["test"], float(auto))
            if rerank is not None:
                entry["rerank_threshold_0.5"] = measure(rows["test"], 0.5)
            section[f"{name} {variant}"] = entry
            c = entry["calibrated"]
            log(f"faq {name} {variant}: threshold {c['threshold']:.3f} hand-off(removed) "
                f"{c['handoff_rate_removed_topics']:.3f} answer rate {c['answer_rate_present_topics']:.3f} "
                f"accuracy {c['answer_accuracy_present_topics']}")
    return section


def cached_index(directory: Path, entries: list, name: str, model):
    """The index `build_index` would write, loaded when one of exactly these entries by this model is there (an
    index build of medquad takes minutes on a busy machine)."""
    from goldmine.apps.medfaq import build_index
    from goldmine.retrieval.index import Index, IndexUnusable

    path = directory / "indexes" / name
    if (path / "index.json").is_file():
        try:
            index = Index.load(path)
            index.check_model(directory)
            if [(e.id, e.text) for e in index.entries] == [(e.id, e.text) for e in entries]:
                log(f"reusing the index {path}")
                return index
        except IndexUnusable:
            pass
    return build_index(directory, entries, name=name, model=model)


# ---------------------------------------------------------------- latency of one answer
def latency_section(medquad: list[dict], runs: dict[str, Path], work: Path) -> dict:
    from goldmine.apps.medfaq import MedFaq, MedFaqSettings, build_index
    from goldmine.inference.model import Model

    directory = runs.get("mqp-retrieval", work / "bundled-encoder")
    index_dir = directory / "indexes" / "medquad-bench"  # the faq section's index (held-out topics removed)
    if not (index_dir / "index.json").is_file():
        index_dir = directory / "indexes" / "medquad-full"
    if not (index_dir / "index.json").is_file():
        model = Model.load(directory)
        build_index(directory, [_entry(r) for r in medquad], name="medquad-full", model=model)
    threshold = "auto" if "mqp-retrieval" in runs else 0.5  # the bundled encoder has no fitted threshold
    faq = MedFaq.from_runs(MedFaqSettings(threshold=threshold), directory, index_dir, ner=runs.get("conll-ner"))
    rng = random.Random(SEED + 1)
    rows = rng.sample(medquad, LATENCY_CALLS + 5)
    questions = [f"Hi, I'm {rng.choice(FIRST)} {rng.choice(LAST)}. {paraphrase(r, rng)}" for r in rows]
    for question in questions[:5]:  # warm-up
        faq.answer(question)
    times = []
    for question in questions[5:]:
        started = time.perf_counter()
        faq.answer(question)
        times.append(1000 * (time.perf_counter() - started))
    times.sort()
    import torch

    return {"p50": statistics.median(times), "p90": times[int(0.9 * len(times)) - 1], "calls": len(times),
            "index_entries": len(faq.index.entries), "ner": "conll-ner" in runs, "reranker": False,
            "torch_threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0]}


def _entry(row: dict):
    from goldmine.retrieval.index import Entry

    return Entry(row["id"], row["question"], {k: row[k] for k in ("answer", "url", "focus", "qtype")})


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sections = ("models", "pii", "faq", "latency")
    parser.add_argument("--only", default=",".join(sections), help="comma-separated: " + ", ".join(sections))
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-medfaq", help="trained runs (kept)")
    parser.add_argument("--no-ner", action="store_true", help="patterns only: do not train or use the NER run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--ner-run", type=Path, help="an existing goldmine NER run to mask with, instead of training "
                        "conll-ner here (recorded with its own config)")
    parser.add_argument("--no-train", action="store_true", help="use the runs --work holds, train none (sections "
                        "leave out what needs a missing run)")
    parser.add_argument("--limit", type=int, help="a smoke run on this many questions per set: printed, not written")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    only = args.only.split(",")
    if unknown := sorted(set(only) - set(sections)):
        parser.error(f"unknown sections {unknown}")
    origin = provenance()
    names = ["mqp-retrieval", "mqp-pairs"] + ([] if args.no_ner or args.ner_run else ["conll-ner"])
    if args.no_train:
        runs = {name: args.work / name for name in names if (args.work / name / "goldmine.json").is_file()}
    else:
        runs = train_models(args.work, names)
    if args.ner_run and not args.no_ner:
        runs["conll-ner"] = args.ner_run
    origin["model_dirs"] = {name: str(path) for name, path in runs.items()}
    medquad = read_jsonl(MEDQUAD)
    path = RESULTS / "medfaq.json"
    results = json.loads(path.read_text()) if path.is_file() and not args.limit else {}
    measured: dict = {}
    if "models" in only:
        measured["models"] = model_figures(runs)
        measured["pair_accuracy"] = measured["models"]["mqp-pairs"]["test"]["accuracy"]
        measured["mrr10"] = measured["models"]["mqp-retrieval"]["test"]["mrr10"]
    if "pii" in only:
        measured["pii"] = pii_section(medquad, runs.get("conll-ner"), args.limit)
        headline = measured["pii"].get("patterns + ner + focus words", measured["pii"]["patterns"])
        measured["pii_recall"], measured["pii_precision"] = headline["recall"], headline["precision"]
        measured["pii_measured_with"] = "patterns + ner + focus words" if "conll-ner" in runs else "patterns"
    if "faq" in only:
        measured["faq"] = faq_section(medquad, runs, args.work, args.limit)
        chosen = measured["faq"].get("fine-tuned cosine", measured["faq"]["bundled cosine"])["calibrated"]
        for key in ("handoff_rate_removed_topics", "answer_rate_present_topics", "answer_accuracy_present_topics"):
            measured[key] = chosen[key]
    if "latency" in only:
        measured["latency_ms"] = latency_section(medquad, runs, args.work)
    stamp = {"git_commit": origin["git_commit"], "date": machine_info()["date"]}
    for key in ("models", "pii", "faq", "latency_ms"):
        if key in measured:
            measured[key] = measured[key] | stamp
    if args.limit:
        print(json.dumps(measured, indent=2, default=str))
        return
    results = {**origin, "machine": machine_info(), **{k: v for k, v in results.items()
                                                       if k not in origin and k != "machine"}, **measured}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "medfaq.md").write_text(markdown(results))
    print((RESULTS / "medfaq.md").read_text())


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = ["# Medical FAQ benchmark (issue 15 part 4)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores (shared with other jobs), {m['torch_threads']} torch threads; "
             f"torch {m['versions'].get('torch')}, transformers {m['versions'].get('transformers')}. Written by "
             f"`{r['command']}` at commit {r['git_commit']}"
             f"{' (with uncommitted changes)' if r.get('git_dirty') else ''}"
             f", {m['date']}. Each section carries its own commit and date in the JSON.", "",
             "| key | value |", "|---|---:|"]
    for key in ("pair_accuracy", "mrr10", "pii_recall", "pii_precision", "handoff_rate_removed_topics",
                "answer_rate_present_topics", "answer_accuracy_present_topics"):
        if key in r:
            lines.append(f"| {key} | {_f(r[key])} |")
    if "latency_ms" in r:
        lat = r["latency_ms"]
        lines.append(f"| latency of one answer, p50 / p90 ms (NER on, load average {lat['load_average_1min']:.1f} on "
                     f"{m['cores']} cores) | {_f(lat['p50'], 1)} / {_f(lat['p90'], 1)} |")
    lines.append("")
    if "models" in r:
        lines += ["## Models (medical_question_pairs dev; conll2003 dev)", "",
                  "| run | before | after | steps | train s |", "|---|---|---|---:|---:|"]
        for name, f in r["models"].items():
            if not isinstance(f, dict) or "before_after" not in f:
                continue
            rows = f["before_after"]
            first, last = list(rows)[0], list(rows)[-1]
            metric = {"mqp-retrieval": "mrr10", "mqp-pairs": "accuracy", "conll-ner": "f1"}[name]
            before = rows[first].get(metric) if first != last else None
            lines.append(f"| {name} ({metric}) | {first}: {_f(before)} | {last}: {_f(rows[last].get(metric))} | "
                         f"{f['global_step']} | {_f(f['train_seconds'], 0)} |")
        lines.append("")
    if "pii" in r:
        p = r["pii"]
        lines += [f"## PII masking ({p['questions']} medquad questions, {p['templates']} templates, "
                  f"{p['patterns']['items']} planted items, {p['patterns']['clean_questions']} clean questions)", "",
                  "| masker | recall | typed recall | precision | false spans | clean questions masked | "
                  "ms per text | recall by kind |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for name in ("patterns", "patterns + ner", "patterns + ner + focus words"):
            if name in p:
                s = p[name]
                kinds = ", ".join(f"{k} {v:.2f}" for k, v in s["recall_by_kind"].items())
                lines.append(f"| {name} | {_f(s['recall'])} | {_f(s['typed_recall'])} | {_f(s['precision'])} | "
                             f"{s['false_spans']} | {s['clean_questions_masked']} | {_f(s['ms_per_text'], 1)} | "
                             f"{kinds} |")
        lines += ["", f"Invented names that are also FAQ focus words (spared when the NER finds them alone): "
                      f"{', '.join(p['names_in_focus_words']) or 'none'}.", ""]
    if "faq" in r:
        f = r["faq"]
        lines += [f"## Answers and hand-offs ({f['index_entries']} entries indexed, {f['removed_topics']} of "
                  f"{f['topics']} topics removed; test: {f['questions']['test']['present']} paraphrases of present "
                  f"topics, {f['questions']['test']['removed']} of removed ones)", "",
                  "| encoder | threshold | hand-off rate, removed topics | answer rate, present | answer accuracy "
                  "(focus + type) | topic accuracy | top-1 accuracy | decided right | ms/question |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, entry in f.items():
            if not isinstance(entry, dict) or "calibrated" not in entry:
                continue
            for how in ("calibrated", "auto", "rerank_threshold_0.5"):
                if how in entry:
                    c = entry[how]
                    lines.append(f"| {name} | {how} {c['threshold']:.3f} | {_f(c['handoff_rate_removed_topics'])} | "
                                 f"{_f(c['answer_rate_present_topics'])} | {_f(c['answer_accuracy_present_topics'])} "
                                 f"| {_f(c['answer_topic_accuracy_present_topics'])} | "
                                 f"{_f(c['top1_accuracy_present_topics'])} | {_f(c['decided_right'])} | "
                                 f"{_f(entry['ms_per_question'], 1)} |")
        lines += ["", f"Questions masked by {f['masked_by']} before the search "
                      f"({f['paraphrases_changed_by_masking']} paraphrases changed by it)."]
        u = f["urgent_false_alarms"]
        lines += ["", f"Urgent rules fire on {100 * u['medquad_questions']:.2f}% of all medquad questions and "
                      f"{100 * u['test_paraphrases']:.2f}% of the test paraphrases (hand-offs on the safe side).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
