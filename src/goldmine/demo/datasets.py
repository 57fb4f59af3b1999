"""Synthetic demo data for `goldmine demo`: an intent CSV and a CoNLL NER file, generated, never shipped.

We cannot ship or copy an external dataset, so the demo writes its own. The text is templated but varied
(slot fillers, politeness, typos, confusable intents) so a fine-tuned model has something real to learn and
the scores are not trivially 100%. Everything draws from one `random.Random(seed)`, so a seed always gives
byte-identical files.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass
from pathlib import Path

INTENTS_FILE = "support_intents.csv"
NER_FILE = "support_entities.conll"
INTENT_COUNT_RANGE = (75, 105)  # per intent: roughly balanced, deliberately not perfectly
NER_SENTENCES = 500
ENTITY_TYPES = ("PER", "ORG", "LOC", "PRODUCT")


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo data was written."""

    intents: Path
    ner: Path


def _words(text: str) -> tuple[str, ...]:
    """Split a `|`-separated inline list; keeps the word lists compact and diff-friendly."""
    return tuple(item.strip() for item in text.split("|"))


FIRST = _words(
    "Anna|Ben|Carla|David|Elif|Farid|Grace|Hiro|Ines|Jonas|Kemal|Lena|Mateo|Nadia|Omar|Priya|Ravi|Sofia|"
    "Jordan|Paris|Georgia|Sydney|Austin|Victoria|Florence|Chelsea"  # also places: the context decides
)
LAST = _words("Schmidt|Okafor|Rossi|Nguyen|Kowalski|Silva|Tanaka|Dubois|Fischer|Haddad|Larsen|Moreau|Patel|Costa")
CITIES = _words(
    "Berlin|Hamburg|New York|Los Angeles|San Francisco|Lyon|Madrid|Toronto|Vienna|Mexico City|Rio de Janeiro|"
    "Cape Town|Tokyo|Manchester|Rotterdam|Buenos Aires|Munich|Chicago|Paris|Sydney|Austin|Victoria|Florence|Chelsea"
)
COUNTRIES = _words(
    "Germany|France|Spain|Canada|Japan|Brazil|United Kingdom|South Africa|the Netherlands|Italy|Jordan|Georgia"
)
PRODUCTS = _words(
    "Galaxy Buds Pro|iPhone 15|PlayStation 5|Kindle Paperwhite|AirPods Max|ThinkPad X1 Carbon|Pixel 8|Dyson V15|"
    "Echo Dot|Surface Pro 9|Nintendo Switch|MacBook Air|Apple Watch|GoPro Hero 12|Fitbit Charge 6|Bose QuietComfort|"
    "Switch|Echo|Kindle|Fire TV Stick|Galaxy S24|Nest Hub|Surface Laptop"
)
COURIERS = _words("DHL|UPS|FedEx|Royal Mail|Deutsche Post|Hermes|PostNL|Canada Post")
BRANDS = _words("Samsung|Apple|Sony|Lenovo|Google|Dyson|Nintendo|Microsoft|Bose|Northwind Traders|Acme Electronics")
SHOPS = _words("Amazon|Target|Best Buy|Currys|Argos|Next|Walmart|Zalando|MediaMarkt|Otto")
PAYERS = _words("PayPal|Visa|Mastercard|Klarna|Contoso Bank|American Express|Revolut")
ITEMS = _words("headset|laptop|phone case|coffee machine|smartwatch|desk lamp|backpack|monitor|blender|jacket")
DATES = _words("on Monday|last Friday|yesterday|on March 3|on the 14th|two weeks ago|on June 21|last week|on the 2nd")
WEEKDAYS = _words("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday")
STREETS = _words("Baker Street|Main St|Elm Road|Lindenstrasse|Harbour Lane|Oak Avenue|Rue Victor Hugo|King St")
DOMAINS = _words("example.com|mail.example.org|example.net")

# --- intents -------------------------------------------------------------------------------------------------------

# The intents overlap in vocabulary on purpose, the way real support traffic does: "change my address" vs "change
# my email address", "cancel my card" vs "cancel my order", "where is my refund" vs "where is my parcel", "my card
# was declined" vs "block my card". Some templates name another intent's topic only to rule it out ("not a refund,
# just ..."), a cue an averaged sentence embedding blurs and a fine-tuned encoder can learn.
INTENT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "track_order": _words(
        "Where is my order {order}?|Can you tell me where my package is right now?|I'd like to track order {order}|"
        "What's the status of my order for the {item}?|Has my {item} shipped yet?|"
        "Is there a tracking number for order {order}?|When will my {item} arrive in {city}?|"
        "Could you check the shipping status of {order}|I ordered a {item} {date}, how do I follow the delivery?|"
        "Which courier has my parcel and where is it now?|Has order {order} left the warehouse yet?|"
        "I don't want to cancel anything, I just want to know where order {order} is|"
        "No refund needed, I only want to see where my {item} is|Can I get a delivery estimate for the {item}?|"
        "Where do I find the tracking link for my {item}?|Is my parcel out for delivery today?|"
        "Not complaining, just curious when the {item} gets here"
    ),
    "delivery_delay_complaint": _words(
        "My order {order} is late|The {item} was supposed to arrive {date} and it's still not here|"
        "It's been two weeks and my package still hasn't arrived|Why is my delivery taking so long?|"
        "This is unacceptable, order {order} is a week late|You promised delivery {date}, where is it?|"
        "The courier keeps postponing my delivery to {city}|Still no sign of my {item}, this delay is ridiculous|"
        "My parcel has been stuck in {city} for days|Really disappointed, my order is late again|"
        "I don't need the tracking link, I need to know why order {order} is so late|"
        "Third time my delivery has been pushed back, this is terrible service|"
        "The {item} was a birthday present for {date} and it never came on time|"
        "I paid for express shipping and the {item} is still days late|"
        "Your delivery estimate for {order} was wrong by a week|The tracking hasn't moved since {date}, so slow"
    ),
    "cancel_order": _words(
        "I want to cancel my order {order}|Please cancel the {item} I ordered {date}|"
        "Can I still cancel order {order} before it ships?|I changed my mind about the {item}, stop the order please|"
        "How do I cancel an order I placed {date}?|Cancel order {order} and don't charge me|"
        "I ordered the wrong {item}, please cancel it before it's sent|I placed an order by mistake, please cancel it|"
        "Please stop order {order}, I no longer need it|Don't ship order {order}, I want to cancel it|"
        "My card is fine, it's the order for the {item} I want cancelled|"
        "Can you cancel just the {item} from order {order}?|I'd like to call off my purchase of the {item}|"
        "Nothing has shipped yet, so please cancel {order}|Cancel the {item}, I found it cheaper elsewhere"
    ),
    "refund_request": _words(
        "I want my money back for order {order}|How do I get a refund for the {item}?|"
        "The {item} arrived broken, I'd like a refund|Please refund the {amount} you charged for {order}|"
        "Can I return the {item} and get my money back?|I returned the {item} {date} but haven't been refunded|"
        "When will I get the refund for order {order}?|Still waiting on my refund of {amount}|"
        "I sent the item back, where is my refund?|I was overcharged {amount} on order {order}, refund it please|"
        "Don't send a replacement {item}, just refund me|"
        "I'm not asking where my parcel is, I'm asking where my refund is|"
        "The {item} isn't what I ordered, I want a refund|Has the refund for {order} been processed yet?|"
        "Your email said the refund of {amount} was issued but nothing has arrived"
    ),
    "change_address": _words(
        "I need to change the delivery address for order {order}|I moved to {city}, please update my shipping address|"
        "Can you send order {order} to a different address?|"
        "Wrong address on my order, it should go to {street}, {city}|"
        "Please update my address to {street} before the {item} ships|How do I edit the postal address on my account?|"
        "Can the {item} be delivered to my office in {city} instead?|"
        "I typed the wrong street number for order {order}|My home address has changed, where can I update it?|"
        "Ship {order} to {street} instead please|Not my email address, my home address needs changing|"
        "Please change my address, I live at {street} now|The postcode on order {order} is wrong, can you fix it?|"
        "Redirect the {item} to my neighbour at {street}|I moved to {city} {date}, update where you deliver"
    ),
    "reset_password": _words(
        "I forgot my password|How do I reset my password?|I can't log in to my account|"
        "The password reset link you sent me doesn't work|I'm locked out after too many login attempts|"
        "Please help me change my password|I never received the reset password email|"
        "My login keeps saying wrong password even though it's right|Can you send a new password link to {email}?|"
        "I need to set a new password, the old one was hacked|"
        "My email is right, it's the password I can't remember|"
        "The app says my password is incorrect, how do I reset it?|"
        "I can't get into my account to check order {order}, the password doesn't work|"
        "Reset my password please, the verification code never arrives|How do I get back into my account?"
    ),
    "update_email": _words(
        "I want to change the email on my account|Please update my email address to {email}|"
        "How can I change my email?|I no longer use my old email, can you switch it to {email}?|"
        "My email address is wrong in my profile|Can you send receipts to {email} instead?|"
        "I can't access my old email anymore, how do I update it?|Replace my contact email with {email} please|"
        "Where in the settings do I change my e-mail address?|"
        "My password is fine, I just need the account email changed to {email}|"
        "Not my postal address, I mean my email address, it should be {email}|"
        "Please change my address for order updates to {email}|"
        "I got a new email address, please use {email} from now on|"
        "The email you have for me has a typo, fix it to {email}"
    ),
    "payment_failed": _words(
        "My payment for order {order} was declined|Checkout keeps failing when I pay with my card|"
        "Why was my card rejected when paying {amount}?|Payment failed but the {amount} still left my account|"
        "I tried to buy a {item} but the payment didn't go through|"
        "Error at checkout: transaction could not be completed|"
        "I get a payment error every time I try to pay for the {item}|PayPal payment won't go through for {order}|"
        "The bank app says the payment was blocked, what do I do?|Can't complete my purchase, the card payment fails|"
        "My card isn't lost, it just keeps getting declined at checkout|Payment for the {item} failed three times|"
        "Why does my {amount} payment keep bouncing?|Apple Pay doesn't work on your checkout page"
    ),
    "card_lost": _words(
        "I lost my card|My card was stolen in {city}, please block it|Please freeze my card immediately|"
        "I can't find my debit card anywhere|Someone stole my wallet with my credit card|"
        "I think I left my card at a shop {date}, can you block it?|How do I order a replacement card? Mine is gone|"
        "My card is missing and I see a payment of {amount} I didn't make|Block my card ending in {last4}, I lost it|"
        "Need a new card, the old one got stolen|The payment didn't fail, my card is actually gone, block it|"
        "I dropped my card somewhere in {city}, freeze it please|Report my card ending in {last4} as lost|"
        "My wallet was stolen {date}, please cancel my card|Not an order problem, my bank card has been stolen"
    ),
    "talk_to_human": _words(
        "Can I speak to a real person?|I want to talk to a human|Please connect me with an agent|"
        "Is there a phone number I can call?|This bot isn't helping, get me a person|"
        "Transfer me to customer service please|I'd like to speak with someone about order {order}|"
        "Can a manager call me back?|Let me chat with a live agent|Stop the automatic replies, I need a human|"
        "I don't want a refund from a bot, I want to talk to a person|"
        "Your chatbot can't cancel my order, let me speak to a human|"
        "Put me through to someone who can help with the {item}|Is there an actual person reading these messages?"
    ),
}
INTENT_LABELS = tuple(INTENT_TEMPLATES)
# Background a customer gives before the request, drawn independently of the intent: it shares words with several
# intents (order, card, email, address) and carries no label signal, as in real tickets.
CONTEXTS = _words(
    "I ordered a {item} {date}.|I've been a customer for years.|I'm writing from {city}.|My order number is {order}.|"
    "I paid {amount} with my card.|This is my second message about this.|I already read the help page.|"
    "I use this account for the whole family.|My email is {email}.|I live at {street}, {city}.|"
    "Sorry for the long message.|I bought the {item} as a gift.|I'm on the app, not the website.|"
    "Your website was very slow today.|I called {date} but nobody picked up."
)
PREFIXES = ("", "", "", "Hi, ", "Hello, ", "Hey, ", "Good morning, ", "Hi there! ", "Excuse me, ", "Quick question: ")
SUFFIXES = ("", "", "", " Thanks!", " Thank you.", " Please help.", " Cheers", " asap", " Thanks in advance.", " pls")
CHAT_SPEAK = (("you", "u"), ("your", "ur"), ("please", "pls"), ("thanks", "thx"), ("because", "cuz"))


def _fillers(rng: random.Random) -> dict[str, str]:
    """Draw every slot value; always the same number of draws, so output depends only on the seed."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    number = rng.randint(10000, 99999)
    return {
        "order": rng.choice((f"#{number}", f"GM-{number}", str(number))),
        "item": rng.choice(ITEMS),
        "city": rng.choice(CITIES),
        "date": rng.choice(DATES),
        "amount": rng.choice(("$", "€", "£")) + f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d}",
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}",
        "street": f"{rng.randint(1, 120)} {rng.choice(STREETS)}",
        "last4": f"{rng.randint(0, 9999):04d}",
    }


def _typo(rng: random.Random, text: str) -> str:
    """Swap two adjacent letters in one longer word, the most common real typing slip."""
    words = text.split(" ")
    candidates = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    j = rng.randint(1, len(words[i]) - 2)
    word = words[i]
    words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def _chat_speak(text: str) -> str:
    """Texting shorthand for a few frequent words ("pls", "u"), as customers type in a chat window."""
    return re.sub(r"\b(" + "|".join(word for word, _ in CHAT_SPEAK) + r")\b", lambda m: dict(CHAT_SPEAK)[m[1]], text)


def _message(rng: random.Random, template: str) -> str:
    """One customer message: maybe some background first, then the request, politeness, casing and typos."""
    text = template.format(**_fillers(rng))
    if rng.random() < 0.45:
        text = rng.choice(CONTEXTS).format(**_fillers(rng)) + " " + text
    prefix, suffix = rng.choice(PREFIXES), rng.choice(SUFFIXES)
    first_word = text.split(" ", 1)[0]
    if prefix and first_word[1:].islower() and first_word.split("'")[0] != "I":  # keep "I'm", "PayPal"
        text = text[0].lower() + text[1:]
    if suffix[1:2].isupper() and text[-1] not in "?!.":
        text += "."
    text = prefix + text + suffix
    if rng.random() < 0.2:
        text = _typo(rng, text)
    if rng.random() < 0.25:
        text = text.lower()
        if rng.random() < 0.5:
            text = _chat_speak(text)
    if rng.random() < 0.25:
        text = text.rstrip("?!.")
    return text


def _normal(text: str) -> str:
    """Lower case without punctuation or symbols: two messages equal here would be near duplicates to a reader."""
    return " ".join(re.sub(r"[^\w\s]|_", " ", text.lower()).split())


def _intent_rows(rng: random.Random) -> list[tuple[str, str]]:
    """Unique (text, label) rows; no two texts are even near-identical, so none can carry two labels."""
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, templates in INTENT_TEMPLATES.items():
        target, made = rng.randint(*INTENT_COUNT_RANGE), 0
        for _ in range(target * 50):  # bounded: a template set too small for `target` just yields fewer rows
            if made == target:
                break
            text = _message(rng, rng.choice(templates))
            if _normal(text) not in seen:
                seen.add(_normal(text))
                rows.append((text, label))
                made += 1
    rng.shuffle(rows)
    return rows


# --- NER -----------------------------------------------------------------------------------------------------------

# Pre-tokenised templates (punctuation already split off). Slots map to an entity type and a value list.
# Several values exist under two types (Jordan, Paris, Georgia, Sydney ... are people and places; Amazon is a shop,
# Apple a brand and "Apple Watch" a product), and product or shop names double as plain words in other sentences
# ("a dead pixel", "switch it off", "next week", "the target date"): the type comes from the context, not the word.
SLOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "PER": ("PER", ()),  # filled by _person
    "LOC": ("LOC", CITIES + COUNTRIES),
    "PRODUCT": ("PRODUCT", PRODUCTS),
    "COURIER": ("ORG", COURIERS),
    "BRAND": ("ORG", BRANDS),
    "PAYER": ("ORG", PAYERS),
    "SHOP": ("ORG", SHOPS),
}
OPENERS = _words(
    "Hi , my name is {PER} .|Hello , this is {PER} from {LOC} .|Dear support team ,|Good morning ,|"
    "Ticket opened by {PER} via chat .|Hello {PER} , thanks for contacting us .|hey its {PER} here|"
    "Hi {PER} , I am writing on behalf of {PER2} ."
)
CLOSERS = _words(
    "Kind regards , {PER}|Thanks , {PER}|Best wishes from {LOC} , {PER}|Cheers|Thank you for the quick reply !|"
    "{PER} ( {SHOP} customer since 2019 )"
)
BODY = _words(
    "I ordered a {PRODUCT} last week and it still has not arrived .|"
    "{PER} from {LOC} reported that the {PRODUCT} stopped charging .|"
    "The parcel was handed to {COURIER} in {LOC} on {DAY} .|"
    "Agent {PER} escalated the ticket to the {BRAND} warranty team .|"
    "Can you ship the {PRODUCT} to my sister in {LOC} ?|"
    "I bought the {PRODUCT} from {BRAND} but it came without a charger .|"
    "This is {PER} , I am writing about the {PRODUCT} I returned .|"
    "{COURIER} says the package is stuck at their depot in {LOC} .|"
    "Thanks {PER} , the replacement {PRODUCT} works fine now .|"
    "My {PRODUCT} was delivered to {LOC} instead of {LOC2} .|Please forward this to {PER} in the {LOC} office .|"
    "{PER} confirmed that {BRAND} will refund the shipping fee .|Is the {PRODUCT} covered by the {BRAND} warranty ?|"
    "We moved from {LOC} to {LOC2} last month , so please update the address .|"
    "I paid with {PAYER} but the order for the {PRODUCT} shows as unpaid .|"
    "Hello {PER} , your {PRODUCT} will be picked up by {COURIER} tomorrow .|"
    "According to {COURIER} , the courier tried to deliver in {LOC} twice .|"
    "{PER} and {PER2} both received the wrong item .|"
    "I would like to compare the {PRODUCT} with the {PRODUCT2} before I decide .|"
    "Our store in {LOC} still has the {PRODUCT} in stock .|{PAYER} charged me twice for one {PRODUCT} .|"
    "My colleague {PER} said {BRAND} offers free returns .|"
    "The tracking from {COURIER} ends in {LOC} with no update since {DAY} .|"
    "Ticket closed by {PER} after the customer confirmed the fix .|Can I pay for the {PRODUCT} with {PAYER} ?|"
    "{PAYER} blocked the payment because it came from {LOC} .|"
    "I was told by {PER} that the {PRODUCT} is back in stock .|"
    "The {PRODUCT} box was opened when {COURIER} delivered it .|"
    "I bought the {PRODUCT} at {SHOP} in {LOC} .|{SHOP} says the {PRODUCT} is out of stock until {DAY} .|"
    "The {SHOP} store in {LOC} refused to take the {PRODUCT} back .|"
    "{PER} is flying to {LOC} on {DAY} , please deliver before that .|"
    "I am {PER} and I live in {LOC} .|{PER} , please call me back about the {PRODUCT} .|"
    "My {PRODUCT} came from {SHOP} , not from {BRAND} directly .|"
    "Please ship it to {LOC} , not to {LOC2} .|{PER} ordered it for {PER2} in {LOC} .|"
    "Is the {PRODUCT} sold in {LOC} the same as the one from {SHOP} ?|"
    "The box was damaged when it arrived .|I still have not received a confirmation email .|"
    "Could you please check order number {NUM} ?|The screen flickers after about {N} minutes .|"
    "I have been waiting for {N} days now .|Please let me know what the next steps are .|"
    "The invoice shows the wrong amount .|My order number is {NUM} .|The item was returned on {DAY} .|"
    "Nobody answered when I called yesterday .|Is there any update on this ?|The refund was approved on {DAY} .|"
    "There is a dead pixel in the corner of the screen .|I tried to switch it off and on again , no luck .|"
    "Callers hear an echo on every call since the update .|Next week I am away , so please deliver on {DAY} .|"
    "The target date for the delivery was {DAY} .|The surface of the lid is scratched .|"
    "The galaxy pattern on the case is peeling off .|The fire alarm went off when it overheated ."
)
PLAIN_SLOTS = {  # non-entity variety: order numbers, durations, weekdays
    "NUM": lambda rng: str(rng.randint(10000, 99999)),
    "N": lambda rng: str(rng.randint(2, 14)),
    "DAY": lambda rng: rng.choice(WEEKDAYS),
}
_SLOT = re.compile(r"\{([A-Z]+?)(\d?)\}")
LOWERCASE_SHARE = 0.15  # chat tickets typed all in lower case: "i bought a pixel 8 at target in austin"


def _person(rng: random.Random) -> str:
    """A customer or agent name; first names alone give single-token PER entities too."""
    first = rng.choice(FIRST)
    return f"{first} {rng.choice(LAST)}" if rng.random() < 0.6 else first


def _sentence(rng: random.Random, template: str) -> list[tuple[str, str]]:
    """Fill a pre-tokenised template into (token, IOB2 tag) pairs; repeated slots get distinct values."""
    pairs: list[tuple[str, str]] = []
    used: set[str] = set()
    for token in template.split():
        match = _SLOT.fullmatch(token)
        if not match:
            pairs.append((token, "O"))
            continue
        name = match.group(1)
        if name in PLAIN_SLOTS:
            pairs.append((PLAIN_SLOTS[name](rng), "O"))
            continue
        kind, values = SLOTS[name]
        value = _person(rng) if name == "PER" else rng.choice(values)
        while value in used:
            value = _person(rng) if name == "PER" else rng.choice(values)
        used.add(value)
        words = value.split()
        if kind == "LOC" and words[0] == "the":  # "the Netherlands": the article is not part of the entity
            pairs.append((words.pop(0), "O"))
        pairs.extend((word, ("B-" if i == 0 else "I-") + kind) for i, word in enumerate(words))
    return pairs


def _fresh_sentence(rng: random.Random, templates: tuple[str, ...], seen: set[str]) -> list[tuple[str, str]]:
    """A filled template whose text (ignoring case and punctuation) the file does not hold yet, so the test split
    cannot be scored on copies of training sentences; bounded, after which a repeat is accepted."""
    for _ in range(50):
        sentence = _sentence(rng, rng.choice(templates))
        key = _normal(" ".join(token for token, _ in sentence))
        if key not in seen:
            break
    seen.add(key)
    if rng.random() < LOWERCASE_SHARE:
        sentence = [(token.lower(), tag) for token, tag in sentence]
    return sentence


def _ner_documents(rng: random.Random) -> list[list[list[tuple[str, str]]]]:
    """Tickets of 5-10 sentences: an opener, a body, sometimes a sign-off, until ~NER_SENTENCES sentences."""
    documents: list[list[list[tuple[str, str]]]] = []
    seen: set[str] = set()
    total = 0
    while total < NER_SENTENCES:
        size = rng.randint(5, 10)
        parts = [OPENERS] + [BODY] * (size - 2) + [CLOSERS if rng.random() < 0.6 else BODY]
        documents.append([_fresh_sentence(rng, templates, seen) for templates in parts])
        total += size
    return documents


# --- support chats (the decoder demo) ------------------------------------------------------------------------------

CHATS_FILE = "support_chats.jsonl"
CHATS_PER_INTENT = 24

# The company's voice: every reply names what the customer gave (order number, item, amount, address) and the one
# next step, the way a support team's macros read. A decoder fine-tuned on these learns the voice and to echo the
# right details back; the pretrained one writes generic help.
REPLY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "track_order": _words(
        "Order {order} is on its way. You can follow it under My orders, and you will get an e-mail when it is out "
        "for delivery.|I checked order {order}: your {item} has shipped and the tracking link is under My orders."),
    "delivery_delay_complaint": _words(
        "I'm sorry order {order} is late. I have asked the carrier to check it; if it has not arrived in 3 working "
        "days, we will send a new {item} at no cost.|Sorry for the wait on order {order}. The carrier reports a "
        "delay; you will have it within 3 working days, or we replace it."),
    "cancel_order": _words(
        "Order {order} is cancelled. You will get a confirmation e-mail, and any payment is returned within 5 "
        "working days.|Done: I cancelled order {order}. The refund reaches your account within 5 working days."),
    "refund_request": _words(
        "I have started a refund of {amount} for order {order}. It reaches your account within 5 working days.|"
        "Your refund for the {item} is on its way: {amount}, within 5 working days."),
    "change_address": _words(
        "I changed the delivery address of order {order} to {street}, {city}. You will get a confirmation e-mail.|"
        "Order {order} will now go to {street}, {city}."),
    "reset_password": _words(
        "I sent a password reset link to the e-mail on your account. It is valid for 24 hours.|"
        "Please use the reset link I just sent to your e-mail; it works for 24 hours."),
    "update_email": _words(
        "Your account e-mail is now {email}. We sent a confirmation link there.|I updated your e-mail to {email}; "
        "please confirm it with the link we sent."),
    "payment_failed": _words(
        "I'm sorry the payment for order {order} was declined. Please check the card details or try another card; "
        "the order stays reserved for 48 hours.|The payment for order {order} did not go through. Your order is "
        "kept for 48 hours while you try again."),
    "card_lost": _words(
        "I blocked your card ending in {last4}. A new card is on its way and arrives within 5 working days.|"
        "Your card ending in {last4} is blocked now; the replacement arrives within 5 working days."),
    "talk_to_human": _words(
        "Of course. I am passing you to a colleague now; the usual wait is under 5 minutes.|I'll connect you with "
        "a person from our team right away."),
}


def _chat_rows(rng: random.Random) -> list[dict[str, str]]:
    """Unique (message, reply) chats: the reply fills the same slot values the message was written with."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for intent, templates in INTENT_TEMPLATES.items():
        made = 0
        for _ in range(CHATS_PER_INTENT * 20):
            if made == CHATS_PER_INTENT:
                break
            slots = _fillers(rng)
            prefix, suffix = rng.choice(PREFIXES), rng.choice(SUFFIXES)
            message = prefix + rng.choice(templates).format(**slots) + suffix
            if _normal(message) in seen:
                continue
            seen.add(_normal(message))
            rows.append({"prompt": message, "response": rng.choice(REPLY_TEMPLATES[intent]).format(**slots)})
            made += 1
    rng.shuffle(rows)
    return rows


def write_demo_chats(out_dir: Path, seed: int = 0) -> Path:
    """Write the support chats (JSONL, prompt/response) into `out_dir`; the same seed gives identical files."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHATS_FILE
    path.write_text("".join(json.dumps(row) + "\n" for row in _chat_rows(random.Random(seed))), encoding="utf-8")
    return path


# --- writing -------------------------------------------------------------------------------------------------------


def write_demo_data(out_dir: Path, seed: int = 0) -> DemoFiles:
    """Write both demo files into `out_dir` (created if missing); the same seed gives byte-identical files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    intents, ner = out_dir / INTENTS_FILE, out_dir / NER_FILE
    with intents.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("text", "label"))
        writer.writerows(_intent_rows(rng))
    lines: list[str] = []
    for document in _ner_documents(rng):
        lines += ["-DOCSTART- O", ""]
        for sentence in document:
            lines += [f"{token} {tag}" for token, tag in sentence] + [""]
    ner.write_text("\n".join(lines), encoding="utf-8", newline="\n")
    return DemoFiles(intents=intents, ner=ner)
