"""`goldmine app support demo`: the whole assistant offline, on data this code writes.

The intent messages are goldmine's own generated support data (`goldmine.demo.datasets`: ten invented intents,
templated messages, never shipped data); the answers below are invented here, two per intent. The demo fine-tunes
the encoder for a few steps, builds the response index from the training messages (each entry: a message, its
intent and one of the intent's answers), registers the run in a serving database under `<out>/serving`, writes
the app config and sends a short conversation through `Assistant`, the same object `goldmine app support ask`
uses. Nothing is downloaded: the bundled encoder, or any local model directory, is the base model.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ANSWERS: dict[str, tuple[str, ...]] = {
    "track_order": ("You can follow your parcel with the tracking link in your shipping e-mail.",
                    "Your order's status is under Orders > Track in your account."),
    "delivery_delay_complaint": ("I am sorry your delivery is late; we are checking with the courier.",
                                 "Late deliveries are refunded their shipping cost automatically."),
    "cancel_order": ("Orders can be cancelled under Orders > Cancel until they ship.",
                     "Once an order has shipped, refuse the parcel and it is cancelled on return."),
    "refund_request": ("Refunds reach your account 5 to 7 days after we receive the item.",
                       "Start a refund under Orders > Return; the label is free."),
    "change_address": ("You can change the delivery address under Orders > Edit until the order ships.",
                       "Your default address is under Account > Addresses."),
    "reset_password": ("Use 'Forgot password' on the sign-in page; the link is valid for one hour.",
                       "If the reset e-mail does not arrive, check your spam folder."),
    "update_email": ("Change your e-mail address under Account > Login details.",
                     "We send a confirmation link to the new address before it takes effect."),
    "payment_failed": ("A declined payment is never charged; please try another card or PayPal.",
                       "Check that your card's billing address matches the one in your account."),
    "card_lost": ("Block a lost card at once under Wallet > Cards > Block.",
                  "A replacement card arrives within 5 working days after you block the old one."),
    "talk_to_human": ("Our team is available 8:00-20:00 on weekdays.",),
}
SAMPLE_CONVERSATION = [
    "Where is my order #55120? It was due on March 3.",
    "Also, I want a refund of $45.99 for order GM-31337, please write to jane.doe@example.com",
    "This is unacceptable, I want to talk to a real person",
    "What is the weather like on Mars?",
]
APP_CONFIG = "support.yaml"
TENANT = "demo"
MODEL = "support-intents"


def response_entries(intents_csv: Path, per_intent: int = 8) -> list:
    """Response-base entries from the labeled messages: up to `per_intent` messages of each intent, each with one of
    the intent's answers (cycling)."""
    from goldmine.data.readers import read_file
    from goldmine.retrieval.index import Entry

    entries, seen = [], {}
    for example in read_file(intents_csv).examples:
        intent = example.labels[0]
        if intent not in ANSWERS or seen.get(intent, 0) >= per_intent:
            continue
        n = seen[intent] = seen.get(intent, 0) + 1
        answers = ANSWERS[intent]
        entries.append(Entry(f"{intent}-{n}", example.text, {"intent": intent, "answer": answers[n % len(answers)]}))
    return entries


def build(out: Path, base_model: str = "bundled", steps: int = 30) -> Path:
    """Write the data, fine-tune, index, register and configure: the app config's path."""
    import goldmine
    from goldmine.demo.datasets import write_demo_data
    from goldmine.retrieval.index import Index
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    out.mkdir(parents=True, exist_ok=True)
    files = write_demo_data(out / "data")
    run = out / "intents"
    if not (run / "metrics.json").is_file():
        goldmine.train(None, **{"task": "classification", "data.train": str(files.intents), "model.name": base_model,
                                "output_dir": str(run), "training.max_steps": steps, "training.batch_size": 16,
                                "training.learning_rate": 1e-4, "training.eval_strategy": "none",
                                "training.linear_probe": False})
    Index.build(run, response_entries(files.intents), name="responses")
    settings = load_settings(data_dir=out / "serving", preload=False)
    db = open_database(settings)
    try:
        register(db, settings.registry_dir, MODEL, run, TENANT)
    finally:
        db.dispose()
    config = {"app": "support", "tenant": TENANT,
              "models": {"intent": {"name": MODEL, "version": "production"},
                         "responses": {"name": MODEL, "version": "production", "index": "responses"}},
              "threshold": 0.3, "answers": {intent: answers[0] for intent, answers in ANSWERS.items()}}
    path = out / APP_CONFIG
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_demo(out: Path, base_model: str = "bundled", steps: int = 30,
             messages: list[str] | None = None) -> list[dict]:
    """`build`, then one conversation through the assistant: the replies, in order."""
    from goldmine.apps.base import load_app_config
    from goldmine.apps.support.assistant import Assistant
    from goldmine.serving.db import open_database
    from goldmine.serving.settings import load_settings

    path = build(out, base_model, steps)
    db = open_database(load_settings(data_dir=out / "serving", preload=False))
    try:
        helper = Assistant.from_config(load_app_config(path, "support"), db)
        replies, conversation = [], None
        for text in messages or SAMPLE_CONVERSATION:
            reply = helper.handle(conversation, text)
            conversation = reply["conversation_id"]
            replies.append({"message": text, **reply})
        return replies
    finally:
        db.dispose()
