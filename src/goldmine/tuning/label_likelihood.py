"""Zero- and few-shot classification with a decoder: each label is scored by the log-likelihood of its reply.

A chat model is asked, in its own chat template, which category a text belongs to (the options listed), and every
label's verbalisation is scored as the assistant's reply: score = log P(reply | prompt). The answer is never
parsed from generated text, so it is always one of the labels, every label gets a probability (a softmax over the
scores), and a label the model would phrase differently still wins if it is the likeliest of the options.

The conversation (ChatML shown; any template whose longer conversations start with the shorter ones works):

    <system turn of the template, if it adds one>
    user:       {instruction with the options}\\n{example 1}     assistant: {its label}    } few-shot: k examples
    user:       {example 2}                                     assistant: {its label}    } per label, shuffled
    user:       {the text}   (the first user turn when there are no examples)
    assistant:  {a label's reply}<end of turn>               <- the scored tokens

Labels come from a label file in the zero-shot format (`goldmine.tuning.zeroshot`): a label's reply is its
description, else its name; a label with templates has one reply per filled template and scores the mean of their
likelihoods. Without a label file the training data's label names are the replies. Examples (few-shot) are drawn
from `data.train`, `examples_per_label` of each label, seeded: the prompt changes, no weight does.

`score: sum` compares the replies' total log-likelihoods (the probability of the whole reply), `mean` their mean
per token (which does not penalise a long label name). Contextual calibration (Zhao et al., "Calibrate Before Use",
ICML 2021): a model prefers some replies whatever the text (a frequent word, the last option listed); the mean
probability p_cf of each label on content-free inputs ("", "N/A", "[MASK]") measures that prior, and each label's
score gets -log p_cf, which divides its probability by its prior as in the paper (W = diag(p_cf)^-1).

How it is computed (one cached prefix, one pass per batch of texts for all their labels) is in
`goldmine.modeling.label_scorer`. The run directory references the base decoder (`model.name`: `smollm2`, the
bundled one, a local directory or a hub name) instead of copying its weights; it holds the tokenizer and
`label_likelihood.json` (labels, replies, prompt, examples, calibration, token ids), and `eval`, `predict`, `serve`
and `goldmine.Model` take it as any classification run. ONNX export is refused (a packed, cached decoder pass is
not what the exported graph computes).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import ConfigError, DataError, DataIssue, ModelError
from goldmine.modeling.label_scorer import LabelLikelihoodClassifier, PromptIds
from goldmine.registry import STRATEGIES
from goldmine.tuning.base import TuningMethod
from goldmine.tuning.zeroshot import CONTENT_FREE, LabelSpec, check_examples, read_label_file

log = logging.getLogger(__name__)

RECORD_FILE = "label_likelihood.json"
RECORD_FORMAT = 1
TEXT_SLOT = "\u2063goldmine-text\u2063"  # stands for the text while the template is rendered; never in real text
ARCHITECTURE_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers")


@dataclass(frozen=True)
class InContextExample:
    text: str
    label: str
    source: str = ""


def label_specs(config, train: LabeledData | None) -> list[LabelSpec]:
    """The labels: the label file's, else the training data's names (each its own reply)."""
    path = config.tuning.label_likelihood.labels
    if path is not None:
        return read_label_file(path)
    if train is None:
        raise ConfigError("tuning.strategy label_likelihood: needs a label file (--labels labels.yaml) or training "
                          "data whose labels it uses (--train)")
    names = train.label_names()
    if len(names) < 2:
        raise DataError([DataIssue(train.path, 0, f"classification needs at least two labels; every example is "
                                                  f"labelled {names}")])
    return [LabelSpec(name) for name in names]


def replies(spec: LabelSpec) -> list[str]:
    """What the assistant answers for a label: its description or name, or each of its filled templates."""
    return spec.texts()


def pick_examples(train: LabeledData, specs: list[LabelSpec], per_label: int, seed: int) -> list[InContextExample]:
    """`per_label` examples of each label (all of a label's when it has fewer), drawn and then shuffled with
    `seed`: class-balanced, so no label is shown more than another, and in no label order."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list] = {spec.name: [] for spec in specs}
    for example in train.examples:
        by_label[example.labels[0]].append(example)
    picked = []
    for spec in specs:
        members = by_label[spec.name]
        if len(members) < per_label:
            log.warning("label %r has %d training examples; the prompt shows %d of %d wanted", spec.name,
                        len(members), len(members), per_label)
        chosen = rng.choice(len(members), size=min(per_label, len(members)), replace=False) if members else []
        picked += [InContextExample(members[i].text, spec.name, members[i].source) for i in sorted(chosen)]
    return [picked[i] for i in rng.permutation(len(picked))]


def conversation(instruction: str, specs: list[LabelSpec], examples: list[InContextExample],
                 text: str) -> list[dict[str, str]]:
    """The messages that end with the user's turn holding `text` (the assistant's reply is what gets scored)."""
    stated = instruction.format(options=", ".join(spec.description or spec.name for spec in specs))
    reply = {spec.name: replies(spec)[0] for spec in specs}
    turns = [(example.text, reply[example.label]) for example in examples]
    messages = []
    for number, (user, assistant) in enumerate([*turns, (text, None)]):
        messages.append({"role": "user", "content": f"{stated}\n{user}" if number == 0 else user})
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant})
    return messages


def render(tokenizer, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode_prompt(tokenizer, specs: list[LabelSpec], instruction: str,
                  examples: list[InContextExample]) -> tuple[PromptIds, dict]:
    """The prompt's token ids around a text and each label's reply ids, plus the same as readable strings.

    The template is rendered once with a stand-in for the text and split there: the prefix and suffix are tokenised
    as in the rendered conversation. A reply is what the template adds for the assistant's turn, up to and
    including the end-of-turn token (so a label that is the start of another is not scored as the longer one)."""
    if tokenizer.chat_template is None:
        raise ConfigError("tuning.strategy label_likelihood: the model's tokenizer has no chat template; use an "
                          "instruction-tuned (chat) decoder")
    messages = conversation(instruction, specs, examples, TEXT_SLOT)
    prompt = render(tokenizer, messages, generation_prompt=True)
    if prompt.count(TEXT_SLOT) != 1:
        raise ConfigError("the chat template does not render the user's message once and verbatim")
    prefix, suffix = prompt.split(TEXT_SLOT)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    reply_texts, reply_ids, owners = [], [], []
    for k, spec in enumerate(specs):
        for reply in replies(spec):
            full = render(tokenizer, [*messages, {"role": "assistant", "content": reply}], generation_prompt=False)
            if not full.startswith(prompt):
                raise ConfigError("the chat template does not render a conversation as the start of its "
                                  "continuation; goldmine cannot tell the assistant's reply apart")
            rendered = full[len(prompt):]
            if tokenizer.eos_token and tokenizer.eos_token in rendered:
                rendered = rendered[:rendered.index(tokenizer.eos_token) + len(tokenizer.eos_token)]
            ids = encode(rendered)
            reply_texts.append(rendered)
            reply_ids.append(ids)
            owners.append(k)
    ids = PromptIds(encode(prefix), encode(suffix), reply_ids, owners, special_tokens_around_text(tokenizer))
    return ids, {"prefix": prefix, "suffix": suffix, "replies": reply_texts}


def special_tokens_around_text(tokenizer) -> tuple[int, int]:
    """(before, after): how many special tokens the tokenizer adds around a text (e.g. a BOS); the scorer drops
    them, since the prompt's own special tokens already surround the text."""
    plain = tokenizer("a b", add_special_tokens=False)["input_ids"]
    full = tokenizer("a b")["input_ids"]
    for lead in range(len(full) - len(plain) + 1):
        if full[lead:lead + len(plain)] == plain:
            return lead, len(full) - lead - len(plain)
    raise ConfigError("cannot find a text's own tokens among those the tokenizer returns for it")


def check_lengths(prompt: PromptIds, examples: list[InContextExample], tokenizer, max_length: int,
                  window: int | None) -> None:
    """In-context examples longer than `max_length` are reported at their lines (texts to classify are truncated
    to it, as by every goldmine classifier); the whole prompt with a text of `max_length` tokens and the longest
    reply must fit the decoder's context window."""
    too_long = []
    for example in examples:
        n = len(tokenizer(example.text, add_special_tokens=False)["input_ids"])
        if n > max_length:
            too_long.append(DataIssue.at(example.source, f"the in-context example is {n} tokens; the limit is "
                                                         f"{max_length} (model.max_length)"))
    if too_long:
        raise DataError(too_long, header="in-context examples too long for the prompt")
    longest = len(prompt.prefix) + max_length + len(prompt.suffix) + max(len(r) for r in prompt.replies)
    if window is not None and longest > window:
        raise ConfigError(f"the prompt ({len(prompt.prefix)} tokens before the text: instruction, options and "
                          f"{len(examples)} in-context examples) with a text of model.max_length {max_length} tokens "
                          f"and the longest reply is {longest} tokens; the model reads at most {window}. Lower "
                          "tuning.label_likelihood.examples_per_label or model.max_length")


def calibration_bias(network: LabelLikelihoodClassifier, tokenizer) -> list[float]:
    """(L,) -log of each label's mean probability over the content-free inputs."""
    batch = tokenizer(list(CONTENT_FREE), padding=True, return_tensors="pt")
    with torch.inference_mode():
        probabilities = network(**batch).logits.softmax(-1).mean(0)  # (L,)
    return (-probabilities.log()).tolist()


def architecture(config) -> dict:
    return {key: getattr(config, key, None) for key in ARCHITECTURE_KEYS}


def load_decoder(name: str, run: Path | None = None) -> nn.Module:
    """The base decoder in float32 (`smollm2`, a local directory or a hub name), or a `ModelError` that says which
    run needs it."""
    from transformers import AutoModelForCausalLM

    from goldmine.tasks.causal_lm import CausalLM

    needed = f"{run} scores with the decoder {name!r}, which " if run else f"the decoder {name!r} "
    try:
        return AutoModelForCausalLM.from_pretrained(CausalLM.resolve_base(name), dtype=torch.float32).eval()
    except ModelError as err:
        raise ModelError(f"{needed}cannot be loaded: {err}") from None
    except OSError as err:
        raise ModelError(f"{needed}cannot be loaded (a missing directory, or a hub name while offline?): "
                         f"{err}") from None


@STRATEGIES.register("label_likelihood")
class LabelLikelihood(TuningMethod):
    """Builds a classifier that scores each label's reply with a decoder, from a label file or the training labels,
    with optional in-context examples; no weight changes."""

    name = "label_likelihood"
    builds_model = True
    export_refusal = ("its scores come from a decoder run over a cached prompt, which the ONNX exporter does not "
                      "handle; serve it with the torch runtime")

    def check(self, config) -> None:
        if config.task != "classification":
            raise ConfigError(f"tuning.strategy label_likelihood: is for task classification (one label per text), "
                              f"not {config.task}")
        settings = config.tuning.label_likelihood
        if settings.labels is None and config.data.train is None:
            raise ConfigError("tuning.strategy label_likelihood: needs a label file (--labels labels.yaml) or "
                              "training data whose labels it uses (--train)")
        if settings.labels is not None:
            read_label_file(settings.labels)  # fail before anything is loaded

    def apply(self, model: nn.Module, config) -> nn.Module:
        raise ConfigError("tuning.strategy label_likelihood: builds its model without training (see build)")

    def resolve_base(self, task_cls, name: str) -> str:
        from goldmine.tasks.causal_lm import CausalLM

        return CausalLM.resolve_base(name)  # `bundled` means the bundled decoder here

    def labels(self, config) -> list[str] | None:
        path = config.tuning.label_likelihood.labels
        return [spec.name for spec in read_label_file(path)] if path is not None else None

    def build(self, task, base: str, config, train: LabeledData | None) -> nn.Module:
        """The classifier: prompt and replies tokenised, examples drawn, calibration measured."""
        settings = config.tuning.label_likelihood
        specs = label_specs(config, train)
        examples: list[InContextExample] = []
        if train is not None:
            if train.kind is not DataKind.TEXT:
                raise ConfigError(f"tuning.strategy label_likelihood: classifies single texts; {train.path} holds "
                                  f"{train.kind.value} data")
            if settings.labels is not None:
                check_examples(train, specs, settings.labels)
            examples = pick_examples(train, specs, settings.examples_per_label, config.training.seed)
        tokenizer = task.tokenizer
        if tokenizer.pad_token is None:  # batches of texts are padded (the scorer drops the padding again)
            tokenizer.pad_token = tokenizer.eos_token
        prompt, readable = encode_prompt(tokenizer, specs, settings.instruction, examples)
        decoder = load_decoder(base)
        check_lengths(prompt, examples, tokenizer, task.max_length,
                      getattr(decoder.config, "max_position_embeddings", None))
        network = LabelLikelihoodClassifier(decoder, prompt, len(specs), settings.score)
        bias = calibration_bias(network, tokenizer) if settings.calibrate else [0.0] * len(specs)
        network.bias.copy_(torch.tensor(bias))
        network.record = {
            "format": RECORD_FORMAT, "base_model": _reference(config.model.name, base),
            "architecture": architecture(decoder.config),
            "labels": [{**asdict(spec), "replies": replies(spec)} for spec in specs],
            "instruction": settings.instruction, "score": settings.score, "calibrate": settings.calibrate,
            "content_free": list(CONTENT_FREE), "bias": bias,
            "examples": [{"text": e.text, "label": e.label, "source": e.source} for e in examples],
            "prompt": readable,
            "ids": {"prefix": prompt.prefix, "suffix": prompt.suffix, "replies": prompt.replies,
                    "owners": prompt.owners, "strip": list(prompt.strip)},
        }
        self.summary = {"base_model": network.record["base_model"], "labels": len(specs), "score": settings.score,
                        "calibrate": settings.calibrate, "examples": len(examples),
                        "prompt_tokens": len(prompt.prefix) + len(prompt.suffix)}
        return network

    def save(self, model: nn.Module, tokenizer, out: Path, config) -> None:
        """The record only: the decoder's weights stay where `base_model` points."""
        (out / RECORD_FILE).write_text(json.dumps(model.record, indent=2, ensure_ascii=False), encoding="utf-8")

    def load(self, directory: Path, base_model: str, model_class) -> nn.Module:
        path = directory / RECORD_FILE
        if not path.is_file():
            raise ModelError(f"{directory}: a label_likelihood run needs {RECORD_FILE}, which is missing")
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != RECORD_FORMAT:
            raise ModelError(f"{path}: format {record.get('format')!r}, this goldmine reads {RECORD_FORMAT}")
        decoder = load_decoder(record["base_model"], directory)
        found = architecture(decoder.config)
        if found != record["architecture"]:
            raise ModelError(f"{directory} was built on a decoder shaped {record['architecture']}; "
                             f"{record['base_model']!r} is now {found}: the run's token ids and calibration do not "
                             "fit it; build the run again")
        ids = record["ids"]
        prompt = PromptIds(ids["prefix"], ids["suffix"], ids["replies"], ids["owners"], tuple(ids["strip"]))
        network = LabelLikelihoodClassifier(decoder, prompt, len(record["labels"]), record["score"], record["bias"])
        network.record = record
        return network


def _reference(name: str, resolved: str) -> str:
    """How the run names its decoder: a local directory by its absolute path (the run may be loaded from another
    working directory), the bundled one and hub names as given."""
    from goldmine.modeling.backbone import BUNDLED
    from goldmine.modeling.decoder import BUNDLED_DECODER

    if name in (BUNDLED, BUNDLED_DECODER):
        return BUNDLED_DECODER
    return resolved if Path(resolved).is_dir() else name
