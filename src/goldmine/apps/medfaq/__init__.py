"""Medical FAQ with privacy (issue 15, part 4): a patient's question -> urgent rules -> personal data masked ->
the closest FAQ questions -> the answer with its source URL and a disclaimer, or a hand-off to a clinician.

    from goldmine.apps.base import load_app_config
    from goldmine.apps.medfaq import MedFaq, build_registered_index

    config = load_app_config("configs/apps/medfaq/medfaq.yaml", "medfaq")   # models by registry name + version
    build_registered_index(config, db, "faq.jsonl")                       # FAQ JSONL: id, question, answer, url
    reply = MedFaq.from_config(config, db).answer("my son Leo (DOB 03/14/2016) has a fever of 103, when to call?")
    reply.masked_question, reply.answer, reply.url, reply.handoff   # pydantic: reply.model_dump() for JSON

    config.py     MedFaqSettings (what it does) and MedFaqConfig (the app config: settings + models)
    masking.py    PiiMasker: patterns (some shared with the request-log masker) + an optional NER model
    urgent.py     the editable urgent rule list (urgent_rules.yaml), checked before anything else
    faq.py        MedFaq, build_index / build_registered_index, calibrate_threshold
    router.py     /v1/apps/medfaq/ask        cli.py  goldmine app medfaq ...        demo.py  offline demo
    encoder.py    the bundled encoder saved as a retrieval run; yaml_files.py  YAML errors as file:line
"""

from goldmine.apps import APPS
from goldmine.apps.base import AppSpec
from goldmine.apps.medfaq.config import MedFaqConfig, MedFaqSettings
from goldmine.apps.medfaq.faq import (
    Handoff,
    Match,
    MedFaq,
    MedFaqAnswer,
    ThresholdFit,
    build_index,
    build_registered_index,
    calibrate_threshold,
    load_faq_index,
    read_faq,
)
from goldmine.apps.medfaq.masking import MaskResult, PiiKind, PiiMasker
from goldmine.apps.medfaq.urgent import UrgentRule, UrgentRules

SPEC = APPS.register("medfaq")(AppSpec(
    name="medfaq",
    summary="Medical FAQ with privacy: question -> personal data masked -> FAQ answer with its source and a "
            "disclaimer, or a hand-off (urgent or not confident).",
    config=MedFaqConfig,
    cli="goldmine.apps.medfaq.cli:app",
    router="goldmine.apps.medfaq.router:router",
))

__all__ = [
    "Handoff", "MaskResult", "Match", "MedFaq", "MedFaqAnswer", "MedFaqConfig", "MedFaqSettings", "PiiKind",
    "PiiMasker", "SPEC", "ThresholdFit", "UrgentRule", "UrgentRules", "build_index", "build_registered_index",
    "calibrate_threshold", "load_faq_index", "read_faq",
]
