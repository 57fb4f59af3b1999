"""The medical FAQ end to end on data it writes itself: a small invented clinic FAQ, questions with personal data,
an urgent question, one the FAQ cannot answer, and a threshold calibrated on questions apart from those asked.

It goes the way a customer does: the encoder (the bundled one saved as a retrieval run, or a run of your own) is
registered in a serving database under `<out>/serving` as tenant `demo`, the FAQ index is built on that registered
version (`build_registered_index`), the app config `<out>/medfaq.yaml` names the model by registry name, and the
questions go through `MedFaq.from_config`, the object `goldmine app medfaq ask` uses. Nothing is downloaded.

Every name, number and address below is invented; the answers are short general-information texts written for the
demo (not medical advice). `run_demo(out_dir)` takes a minute on 2 CPU cores with the bundled encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from goldmine.apps.medfaq.faq import MedFaq, MedFaqAnswer, build_registered_index, calibrate_threshold

URL = "https://clinic.example.org/faq/"
APP_CONFIG = "medfaq.yaml"
TENANT = "demo"
MODEL = "medfaq-retriever"
INDEX = "faq"
# (id, focus, question, answer)
DEMO_FAQ = [
    ("flu-shot", "influenza vaccine", "When should I get the flu shot?",
     "Get the flu vaccine every year, ideally by the end of October, before flu starts spreading in your area."),
    ("child-fever", "fever in children", "When should I call the doctor about my child's fever?",
     "Call for a fever in a baby under 3 months, a fever above 104 F (40 C), a fever lasting more than 3 days, or a "
     "child who is unusually drowsy, cannot keep fluids down or has a stiff neck."),
    ("strep", "strep throat", "How do I know if a sore throat is strep throat?",
     "Strep throat often brings a sudden sore throat, fever and swollen neck glands without a cough; only a rapid "
     "strep test or a throat culture can confirm it."),
    ("antibiotics-cold", "common cold", "Do antibiotics help with a cold?",
     "No. Colds are caused by viruses and antibiotics do not work on viruses; rest, fluids and time help most."),
    ("hay-fever", "seasonal allergies", "What can I take for seasonal allergies?",
     "Non-drowsy antihistamines and steroid nose sprays relieve most hay fever symptoms; start them before the "
     "pollen season for the best effect."),
    ("home-bp", "blood pressure", "How do I measure my blood pressure at home?",
     "Sit quietly for 5 minutes with your back supported and arm at heart level, use a validated upper-arm cuff, and "
     "take two readings a minute apart, morning and evening."),
    ("diabetes-diet", "type 2 diabetes", "What should I eat if I have type 2 diabetes?",
     "Fill half the plate with vegetables, a quarter with lean protein and a quarter with whole grains; limit sugary "
     "drinks and refined carbohydrates."),
    ("cholesterol", "high cholesterol", "How can I lower my cholesterol?",
     "Eat less saturated fat, more fibre, exercise regularly, stop smoking and, if your doctor advises it, take a "
     "statin."),
    ("migraine", "migraine", "What triggers migraines?",
     "Common triggers are lack of sleep, skipped meals, stress, hormonal changes, alcohol and bright or flickering "
     "light; a headache diary helps find yours."),
    ("sleep", "insomnia", "How can I sleep better?",
     "Keep regular hours, avoid screens and caffeine in the evening, keep the bedroom dark and cool, and get up if "
     "you cannot sleep after 20 minutes."),
    ("heartburn", "heartburn", "What helps with heartburn?",
     "Smaller meals, not eating within 3 hours of bedtime, raising the head of the bed and antacids help; see a "
     "doctor if it happens more than twice a week."),
    ("uti", "urinary tract infection", "What are the signs of a urinary tract infection?",
     "Burning when passing urine, needing to go often and urgently, cloudy urine and lower belly pain; fever or "
     "back pain can mean the kidneys are involved."),
    ("sunscreen", "sun protection", "What sunscreen should I use?",
     "Use a broad-spectrum sunscreen of SPF 30 or higher, apply it 15 minutes before going out and again every two "
     "hours and after swimming."),
    ("tetanus", "tetanus vaccine", "How often do I need a tetanus shot?",
     "Adults need a tetanus booster every 10 years, or after 5 years for a deep or dirty wound."),
    ("measles", "measles vaccine", "How many doses of the measles vaccine does my child need?",
     "Two doses of MMR: the first at 12 to 15 months and the second at 4 to 6 years."),
    ("iron", "iron deficiency", "What are the symptoms of iron deficiency?",
     "Tiredness, pale skin, shortness of breath on exertion, brittle nails and cravings for ice are common signs; a "
     "blood test confirms it."),
    ("back-pain", "low back pain", "What can I do for low back pain?",
     "Keep moving gently, use heat, and take over-the-counter pain relief if needed; most back pain improves within "
     "six weeks."),
    ("sprain", "ankle sprain", "How should I treat a sprained ankle?",
     "Rest, ice for 20 minutes several times a day, compression and elevation for the first two days, then gentle "
     "movement."),
    ("dehydration", "dehydration", "What are the signs of dehydration?",
     "Thirst, dark urine, passing little urine, dizziness and a dry mouth; older adults and babies dehydrate faster."),
    ("pink-eye", "conjunctivitis", "Is pink eye contagious?",
     "Viral and bacterial pink eye spread easily: wash hands often and do not share towels; allergic pink eye is not "
     "contagious."),
    ("ear-infection", "ear infection", "Does an ear infection need antibiotics?",
     "Many ear infections clear up on their own in 2 to 3 days; children under 2 and severe cases may need "
     "antibiotics."),
    ("inhaler", "asthma", "How do I use my asthma inhaler correctly?",
     "Shake it, breathe out fully, press once as you start a slow deep breath in, hold your breath for 10 seconds; a "
     "spacer helps."),
    ("acne", "acne", "What helps with acne?",
     "Wash twice daily with a gentle cleanser and use benzoyl peroxide or adapalene; see a doctor for painful or "
     "scarring acne."),
    ("constipation", "constipation", "How can I relieve constipation?",
     "Drink more water, eat more fibre such as fruit, vegetables and whole grains, and stay active; a mild laxative "
     "can help for a short time."),
    ("smoking", "smoking cessation", "How can I quit smoking?",
     "Set a quit date, use nicotine replacement or ask about medicines that double your chances, and get support from "
     "a quit line."),
    ("vitamin-d", "vitamin D", "Should I take vitamin D supplements?",
     "Many adults benefit from 600 to 800 IU a day, especially in winter or with little sun exposure; ask before "
     "taking high doses."),
    ("refill", "prescription refills", "How do I get a prescription refill?",
     "Request refills through the patient portal or your pharmacy at least 3 working days before you run out."),
    ("records", "medical records", "How can I get a copy of my medical records?",
     "Fill in the records request form in the patient portal; copies are ready within 10 working days."),
    ("cancel", "appointments", "How do I cancel or change an appointment?",
     "Use the patient portal or call the front desk at least 24 hours before your appointment."),
    ("handwashing", "hand hygiene", "How long should I wash my hands?",
     "Wash with soap and water for at least 20 seconds, covering the backs of the hands, between the fingers and "
     "under the nails."),
]

# Calibration: paraphrases of FAQ questions (with their entry) and questions the FAQ cannot answer (None). Apart
# from the questions the demo asks, so the threshold is not fitted on what it is shown on.
CALIBRATION = [
    ("is it too late to get a flu jab in december?", "flu-shot"),
    ("my 2 year old has a temperature, when do i need to see someone", "child-fever"),
    ("can you test for strep in a sore throat", "strep"),
    ("will an antibiotic cure my cold", "antibiotics-cold"),
    ("best medicine for pollen allergy", "hay-fever"),
    ("how do I check my blood pressure myself", "home-bp"),
    ("diet advice for type 2 diabetics", "diabetes-diet"),
    ("ways to bring down high cholesterol", "cholesterol"),
    ("why do I keep getting migraines", "migraine"),
    ("tips to fall asleep faster", "sleep"),
    ("what does a burning feeling in the chest after meals mean", "heartburn"),
    ("it burns when I pee, is that an infection", "uti"),
    ("which SPF is enough", "sunscreen"),
    ("when is a tetanus booster due", "tetanus"),
    ("how do I treat a twisted ankle", "sprain"),
    ("how do I know if I'm dehydrated", "dehydration"),
    ("can my kid go to school with pink eye", "pink-eye"),
    ("what is the right way to use a puffer", "inhaler"),
    ("how to stop smoking for good", "smoking"),
    ("is there a way to get my records from the clinic", "records"),
    ("what is the prognosis of pancreatic cancer", None),
    ("can I travel with an insulin pump", None),
    ("does my dog need a rabies booster", None),
    ("how much does an MRI cost", None),
    ("what are the side effects of chemotherapy", None),
    ("is it safe to get a tattoo while breastfeeding", None),
    ("how is multiple sclerosis diagnosed", None),
    ("what is the best treatment for gout", None),
]

QUESTIONS = [
    "Hi, I'm Dana Whitfield (DOB 04/12/1979, MRN 00482913). My son Leo has a fever of 103, when should I call?",
    "my chest hurts and my left arm feels numb, what should I do",
    "how do I treat a sprained ankle from soccer? you can reach me at dana.w@example.com or (617) 555-0134",
    "What is the survival rate for stage 3 melanoma?",
    "I live at 42 Larkspur Lane, Springfield. Can I get a copy of my medical records?",
]


@dataclass(frozen=True)
class DemoFiles:
    faq: Path
    calibration: Path


def write_demo_data(folder: str | Path) -> DemoFiles:
    """The invented FAQ (JSONL: id, question, answer, url, focus) and the calibration questions."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    faq = folder / "faq.jsonl"
    faq.write_text("".join(json.dumps({"id": i, "question": q, "answer": a, "url": URL + i, "focus": f}) + "\n"
                           for i, f, q, a in DEMO_FAQ))
    calibration = folder / "calibration.jsonl"
    calibration.write_text("".join(json.dumps({"question": q, "entry": e}) + "\n" for q, e in CALIBRATION))
    return DemoFiles(faq, calibration)


def write_app_config(out_dir: Path, threshold: float) -> Path:
    """The demo's app config: the registered encoder and its FAQ index, by registry name."""
    config = {"app": "medfaq", "tenant": TENANT,
              "models": {"retriever": {"name": MODEL, "version": "production", "index": INDEX}},
              "threshold": threshold, "top_k": 3}
    path = out_dir / APP_CONFIG
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_demo(out_dir: str | Path, retriever: str | Path | None = None,
             questions: list[str] | None = None) -> list[tuple[str, MedFaqAnswer]]:
    """Write the demo data, register `retriever` (default: the bundled encoder, saved to out_dir/encoder) in the
    demo's serving database, build the FAQ index on the registered version, calibrate the threshold on the
    calibration questions, write the app config and answer the demo questions through it. Returns (question,
    reply) pairs; the caller decides what to show (the questions are invented, so printing them leaks nothing)."""
    from goldmine.apps.base import load_app_config
    from goldmine.apps.medfaq.encoder import save_pretrained_encoder
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    out_dir = Path(out_dir)
    files = write_demo_data(out_dir / "data")
    if retriever is None:
        retriever = out_dir / "encoder"
        if not (retriever / "goldmine.json").is_file():
            save_pretrained_encoder(retriever)
    settings = load_settings(data_dir=out_dir / "serving", preload=False)
    db = open_database(settings)
    try:
        register(db, settings.registry_dir, MODEL, retriever, TENANT)
        provisional = load_app_config(write_app_config(out_dir, 0.0), "medfaq")
        build_registered_index(provisional, db, files.faq)
        rows = [json.loads(line) for line in files.calibration.read_text().splitlines()]
        uncalibrated = MedFaq.from_config(provisional, db)
        best = uncalibrated.best_scores([r["question"] for r in rows])
        fit = calibrate_threshold([s for s, _ in best], [hit.id == r["entry"] for (_, hit), r in zip(best, rows,
                                                                                                  strict=True)])
        config = load_app_config(write_app_config(out_dir, fit.threshold), "medfaq")
        faq = MedFaq(config, uncalibrated.retriever, uncalibrated.index, rules=uncalibrated.rules)  # loaded once
        asked = questions or QUESTIONS
        return list(zip(asked, faq.answer_many(asked), strict=True))
    finally:
        db.dispose()
