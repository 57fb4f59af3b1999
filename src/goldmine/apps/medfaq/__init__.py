"""Medical FAQ with privacy (issue 15, part 4): a patient's question -> urgent rules -> personal data masked ->
the closest FAQ questions -> the answer with its source URL and a disclaimer, or a hand-off to a clinician.

    from goldmine.apps.medfaq import MedFaq, MedFaqConfig, build_index

    build_index("runs/mqp-retrieval", "faq.jsonl")                    # FAQ JSONL: id, question, answer, url, focus
    faq = MedFaq.load(MedFaqConfig(retriever="runs/mqp-retrieval", ner="runs/conll-ner"))
    reply = faq.answer("my son Leo (DOB 03/14/2016) has a fever of 103, when should I call?")
    reply.masked_question, reply.answer, reply.url, reply.handoff   # pydantic: reply.model_dump() for JSON

Modules: `masking` (PiiMasker), `urgent` (the editable urgent rule list), `faq` (MedFaq, build_index,
calibrate_threshold), `config` (MedFaqConfig), `encoder` (the bundled encoder as a retrieval run), `demo`.
"""

from goldmine.apps.medfaq.config import MedFaqConfig
from goldmine.apps.medfaq.faq import (
    Handoff,
    Match,
    MedFaq,
    MedFaqAnswer,
    ThresholdFit,
    build_index,
    calibrate_threshold,
    read_faq,
)
from goldmine.apps.medfaq.masking import MaskResult, PiiKind, PiiMasker
from goldmine.apps.medfaq.urgent import UrgentRule, UrgentRules

__all__ = [
    "Handoff", "MaskResult", "Match", "MedFaq", "MedFaqAnswer", "MedFaqConfig", "PiiKind", "PiiMasker",
    "ThresholdFit", "UrgentRule", "UrgentRules", "build_index", "calibrate_threshold", "read_faq",
]
