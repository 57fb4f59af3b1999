"""The customer-service assistant (issue 15, part 1): a customer's message -> intent (with out-of-scope
detection) -> an answer from the company's response base, or a hand-off to a person with the reason; entities
(order numbers, amounts, dates, e-mails, names) where the intent needs them; conversations stored with personal
data masked, and agents' corrections stored as labeled data for the feedback loop.

    config.py     the app config (models, threshold, complaint and hand-off phrases, intent -> entity types)
    entities.py   entity patterns, NER merge, masking for storage
    assistant.py  the decision (`respond`), the Python API (`Assistant`), corrections
    store.py      conversations, turns, corrections (migration 0006)
    router.py     /v1/apps/support/...    cli.py  goldmine app support ...    demo.py  offline demo
"""

from __future__ import annotations

from goldmine.apps import APPS
from goldmine.apps.base import AppSpec
from goldmine.apps.support.config import SupportConfig

SPEC = APPS.register("support")(AppSpec(
    name="support",
    summary="Customer-service assistant: message -> intent, answer from the response base or hand-off to a person.",
    config=SupportConfig,
    cli="goldmine.apps.support.cli:app",
    router="goldmine.apps.support.router:router",
))
