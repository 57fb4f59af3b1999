"""One typed training configuration, loaded from YAML and overridable from the CLI.

Invalid values fail at load time with the field's dotted name, e.g.
`training.learning_rate: Input should be greater than 0`.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from goldmine.data.tags import Scheme
from goldmine.errors import ConfigError
from goldmine.registry import STRATEGIES, TASKS


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(_Section):
    """Label-preserving edits of train examples (see `goldmine.data.augment`); dev and test are never touched."""

    factor: float = Field(0.0, ge=0, le=20, description="New examples per train example (0 = off).")
    ops: list[Literal["typo", "swap", "delete", "mention"]] = Field(
        default_factory=list, description="Edits to draw from (default: all for the data's kind): "
        "typo, swap, delete for texts; mention, typo for NER.")
    seed: int = Field(13, description="Seed of the edits, so an augmented run is reproducible.")


class DataConfig(_Section):
    train: Path | None = Field(None, description="Training file (CSV/TSV/JSONL/CoNLL).")
    dev: Path | None = Field(None, description="Dev file for early stopping; split off train when absent.")
    test: Path | None = Field(None, description="Held-out test file for the before-vs-after table; split when absent.")
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train/dev/test shares when splitting.")
    split_seed: int = Field(13, description="Seed of the stratified split, so a split is reproducible.")
    text_column: str = Field("text", description="Column holding the text (or the first text of a pair).")
    text_b_column: str = Field("text_b", description="Column holding the second text of a pair.")
    label_column: str | None = Field(
        None, description="Column holding the label(s); unset: 'label', or 'labels' in a file that has only that.")
    label_separator: str = Field("|", description="Separator of several labels in one cell (multi-label).")
    scheme: Scheme = Field(Scheme.AUTO, description="CoNLL tagging scheme; normalised to IOB2.")
    strict: bool = Field(False, description="CoNLL: reject I- tags that continue no entity.")
    document_context: bool = Field(True, description="NER: feed neighbouring sentences of the same document.")
    context_length: int | None = Field(
        64, gt=8, description="NER with document_context: neighbouring sentences fill each input up to this many "
        "sub-tokens (a longer sentence alone still gets model.max_length); None fills to model.max_length.")
    case_features: bool | None = Field(
        None, description="NER: tell the encoder how each word was capitalised (lower/Title/UPPER/mixed) through "
        "its token types; uncased checkpoints otherwise never see case. None: on for NER with an uncased tokenizer "
        "and an encoder with token types, unless the strategy is lora.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Augmentation of the train split.")


class ModelConfig(_Section):
    name: str = Field("bundled", description="'bundled' (all-MiniLM-L6-v2), a local directory, or a hub name.")
    pooling: Literal["mean", "cls", "pooler"] = Field("mean", description="Sentence pooling for classification.")
    max_length: int = Field(128, gt=8, le=8192, description="Longest input in tokens; longer texts are truncated.")
    classifier_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the classification head.")


class LoraConfig(_Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(["query", "key", "value", "dense"], description="Module names to adapt.")
    merge: bool = Field(False, description="Also save a merged full model beside the adapter.")


class ZeroShotConfig(_Section):
    """`tuning.strategy: zeroshot`: classify by cosine similarity to label prototypes (`goldmine.tuning.zeroshot`)."""

    labels: Path | None = Field(None, description="Label file (YAML): each label's name, optional description and "
                                "templates.")
    scale: float = Field(20.0, gt=0, le=1000, description="Logits are scale x cosine similarity (the bundled "
                         "encoder was trained with 20).")
    calibrate: bool = Field(True, description="Subtract each label's similarity to content-free inputs, so that "
                            "scores are comparable across labels.")


class FewShotConfig(_Section):
    """`tuning.strategy: fewshot`: contrastive tuning of the sentence encoder, then a logistic-regression head
    (`goldmine.tuning.fewshot`)."""

    steps: int | None = Field(None, gt=0, description="Contrastive steps (None: enough for each example to be "
                              "seen about `passes` times, within 30 to 100 steps).")
    passes: float = Field(20.0, gt=0, description="How often each example is seen when steps is None.")
    batch_size: int = Field(32, ge=4, description="Texts per contrastive batch; every pair inside it is used.")
    examples_per_label: int = Field(4, ge=2, description="Examples of each drawn label in a batch (its positives).")
    learning_rate: float = Field(2e-5, gt=0, lt=1, description="Peak AdamW learning rate of the encoder.")
    head_c: float = Field(10.0, gt=0, description="Inverse L2 strength of the logistic-regression head "
                          "(scikit-learn's C). Unit-length embeddings have small features: the library's C=1 "
                          "shrinks the head so hard that an uneven sample collapses onto its larger classes.")
    calibrate: bool = Field(True, description="Fit a temperature on out-of-fold head scores (single-label), so "
                            "probabilities are not as sure as the examples the encoder was tuned on.")
    labels: Path | None = Field(None, description="Optional label file (the zero-shot format: names, "
                                "descriptions, templates): its prototypes join the head with a weight fitted on "
                                "out-of-fold scores (single-label).")
    end_to_end_passes: float = Field(6.0, ge=0, description="After the head: how often each example is seen by a "
                                     "last phase that trains encoder and head together on the task's loss "
                                     "(SetFit's end-to-end option); 0 leaves the encoder as the contrastive "
                                     "phase made it.")
    end_to_end_learning_rate: float = Field(5e-5, gt=0, lt=1, description="Peak AdamW learning rate of the "
                                            "encoder in the end-to-end phase. Chosen on 1,000 held-out banking77 "
                                            "*train* texts (10 per intent, seed 0): none 0.847, 2e-5 0.858, 5e-5 "
                                            "0.865, 1e-4 0.863.")
    end_to_end_head_learning_rate: float = Field(1e-3, gt=0, lt=1, description="Peak AdamW learning rate of the "
                                                 "head in the end-to-end phase.")


class LabelLikelihoodConfig(_Section):
    """`tuning.strategy: label_likelihood`: a decoder classifies by the log-likelihood of each label's reply to a
    prompt (`goldmine.tuning.label_likelihood`)."""

    labels: Path | None = Field(None, description="Label file (the zero-shot format: names, descriptions, "
                                "templates); each label's description (else its name) is its reply. Default: the "
                                "training data's label names.")
    instruction: str = Field("Classify the text into one of these categories: {options}. Answer with the category "
                             "only.", min_length=1, description="The task as the user states it before the text; "
                             "{options} is replaced by the labels' replies, comma-separated.")
    score: Literal["sum", "mean"] = Field("sum", description="A reply's score: the sum of its tokens' "
                                          "log-probabilities (its log-likelihood) or their mean per token.")
    calibrate: bool = Field(True, description="Divide each label's probability by its mean probability on "
                            "content-free inputs (contextual calibration), so the labels' priors do not decide.")
    examples_per_label: int = Field(1, ge=0, le=64, description="Few-shot: labeled examples of each label from "
                                    "data.train (seeded by training.seed, class-balanced) placed before the text as "
                                    "earlier turns of the conversation; 0 or no data.train: zero-shot.")

    @field_validator("instruction")
    @classmethod
    def _instruction_fields(cls, value: str) -> str:
        try:
            value.format(options="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"may only use {{options}} (write {{{{ and }}}} for braces): {err}") from None
        return value


class RetrievalConfig(_Section):
    """`task: retrieval` (a bi-encoder fine-tuned on matching pairs; goldmine.training.retrieval)."""

    positive_label: str | None = Field(None, description="The label of matching pairs (default: the only label, or "
                                       "the one that reads as a match: 1, true, same, duplicate, ...).")
    mine_negatives: bool = Field(True, description="Give each match without a labeled near miss the most similar "
                                 "non-matching second text the pretrained encoder finds, as its hard negative.")
    scale: float = Field(20.0, gt=0, le=1000, description="Inverse temperature of the in-batch ranking loss "
                         "(cosine similarities x scale are the logits).")


class TuningConfig(_Section):
    strategy: str = Field("full", description="Tuning strategy: full | freeze | lora | fewshot | zeroshot | "
                          "label_likelihood.")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    zeroshot: ZeroShotConfig = Field(default_factory=ZeroShotConfig)
    fewshot: FewShotConfig = Field(default_factory=FewShotConfig)
    label_likelihood: LabelLikelihoodConfig = Field(default_factory=LabelLikelihoodConfig)


class TrainingConfig(_Section):
    learning_rate: float = Field(1e-4, gt=0, lt=1, description="Peak AdamW learning rate.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with linear warmup.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases and LayerNorm).")
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field("linear", description="LR schedule.")
    epochs: float = Field(3.0, gt=0, description="Training epochs (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps; -1 means use epochs.")
    batch_size: int = Field(32, gt=0, description="Examples per device batch.")
    eval_batch_size: int = Field(64, gt=0, description="Examples per evaluation batch.")
    gradient_accumulation: int = Field(1, gt=0, description="Batches accumulated per optimizer step.")
    seed: int = Field(42, description="Seed for initialisation, shuffling and dropout.")
    ema_decay: float | Literal["auto"] | None = Field(
        "auto", description="Evaluate, keep and save an exponential moving average of the weights with this "
        "decay (null or false: the raw weights; 'auto': the task's measured default, 0.99 for single-label "
        "classification, none for NER and multi-label).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of single-label cross-entropy.")
    class_weights: Literal["none", "balanced"] = Field("none", description="'balanced' weights classes by 1/freq.")
    eval_strategy: Literal["epoch", "steps", "none"] = Field("epoch", description="When to evaluate on dev.")
    eval_steps: int = Field(200, gt=0, description="Evaluate every N steps when eval_strategy=steps.")
    save_steps: int | None = Field(None, gt=0, description="Checkpoint every N steps (default: with each eval).")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept on disk.")
    early_stopping_patience: int | None = Field(3, ge=1, description="Evaluations without improvement before stop.")
    metric_for_best: str | None = Field(None, description="Dev metric that selects the best checkpoint.")
    logging_steps: int = Field(20, gt=0, description="Log the training loss every N steps.")
    bf16: bool = Field(False, description="bf16 autocast (on CPUs that support it).")
    num_threads: int | None = Field(None, gt=0, description="torch intra-op threads (default: all cores).")
    linear_probe: bool = Field(True, description="Measure the frozen model with a logistic-regression probe.")
    head_init: Literal["auto", "random", "probe"] = Field(
        "auto", description="Start of the head: 'probe' (the logistic regression fitted on frozen features, then "
        "fine-tuned: LP-FT), 'random', or 'auto': probe for classification, random for NER.")

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, values):
        """`head_learning_rate` was declared but never read; configs saved with it unset still load."""
        if isinstance(values, dict) and "head_learning_rate" in values:
            if values["head_learning_rate"] is not None:
                raise ValueError("head_learning_rate: removed (it never had an effect); set training.learning_rate")
            values = {k: v for k, v in values.items() if k != "head_learning_rate"}
        return values

    @field_validator("ema_decay", mode="before")
    @classmethod
    def _decay_off(cls, value):
        return None if value is False else value  # YAML reads `off` / `no` / `false` as false: no averaging

    @field_validator("ema_decay")
    @classmethod
    def _decay_in_range(cls, value):
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError(f"ema_decay must be in (0, 1) (or 'auto' or null), got {value}")
        return value

    @field_validator("eval_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, value):
        return "none" if value is False or value == "no" else value  # YAML reads a bare `no` as false


class OutOfScopeConfig(_Section):
    """"None of these" for single-label classification (`goldmine.inference.out_of_scope`)."""

    method: Literal["none", "auto", "max_probability", "energy", "prototype", "mahalanobis"] = Field(
        "none", description="Score threshold fitted on dev: max_probability, energy (from the logits), prototype, "
        "mahalanobis (distance of the pooled embedding to the classes' training texts), auto (the one with the "
        "highest dev AUROC), or none (only an explicit out-of-scope class, if `label` is one).")
    label: str | None = Field(None, description="The label out-of-scope examples carry (e.g. 'oos'): a class "
                              "when train has it; else dev/test examples with it are the out-of-scope ground truth.")
    target_precision: float = Field(0.95, gt=0, le=1, description="The threshold answers as many dev texts as "
                                    "it can while P(the answer is right | it was given) stays at least this.")
    min_in_scope_sent_away: float = Field(0.01, ge=0, lt=1, description="Raise the threshold until at least this "
                                          "share of in-scope dev texts falls below it: what a user gives up to catch "
                                          "out-of-scope texts that dev has no examples of (precision alone sees "
                                          "only the model's mistakes).")
    fallback_label: str | None = Field(None, description="The label an out-of-scope answer carries (default: "
                                       "`label`, else 'out_of_scope').")

    @property
    def enabled(self) -> bool:
        return self.method != "none" or self.label is not None


class TrainConfig(_Section):
    """Everything one training run needs. Saved as `config.yaml` in the output directory."""

    task: str = Field("classification",
                      description="Task: classification | multilabel | ner | retrieval | causal_lm.")
    output_dir: Path = Field(Path("runs/model"), description="Where the model, metrics and logs are written.")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    out_of_scope: OutOfScopeConfig = Field(default_factory=OutOfScopeConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)

    @model_validator(mode="after")
    def _check_names(self) -> TrainConfig:
        # Against the registries' declared names: nothing is imported (a strategy's own checks, which need its
        # module, run where the strategy is used: `goldmine.training.trainer.check_config`).
        names = (("task", TASKS, self.task), ("tuning.strategy", STRATEGIES, self.tuning.strategy))
        for field, registry, name in names:
            try:
                registry.check(name)  # raises with the choices and a suggestion
            except ConfigError as err:
                raise ConfigError(f"{field}: {err}") from None
        if self.data.case_features and self.task != "ner":
            raise ValueError("data.case_features is for task ner")
        if self.out_of_scope.enabled and self.task != "classification":
            raise ValueError(f"out_of_scope: is for single-label classification, not {self.task}")
        if self.task == "retrieval" and self.tuning.strategy != "full":
            raise ValueError(f"tuning.strategy {self.tuning.strategy}: task retrieval fine-tunes the whole encoder "
                             "(strategy full)")
        if abs(sum(self.data.split) - 1) > 1e-6 or min(self.data.split) < 0:
            raise ValueError("data.split must be three non-negative shares summing to 1")
        return self

    def to_yaml(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key!r} is not a section")
    node[keys[-1]] = value


_NULLS = {"null", "Null", "NULL", "~"}


def _field_type(dotted: str) -> Any:
    """The annotation of a dotted config field, or None when the name is not a field."""
    model: type[BaseModel] = TrainConfig
    annotation: Any = None
    for key in dotted.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
            return None
        annotation = model = model.model_fields[key].annotation
    return annotation


def _parse_override(dotted: str, value: str) -> Any:
    """A string override as YAML ("2e-5", "true", "[a, b]"), except for text and path fields, which take it
    verbatim: a separator `|`, a file `[draft].csv` or a directory `2024` is not YAML."""
    annotation = _field_type(dotted)
    allowed = set(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else {annotation}
    if allowed - {type(None)} and allowed - {type(None)} <= {str, Path}:
        return None if value.strip() in _NULLS and type(None) in allowed else value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML config (optional) and apply dotted overrides such as {'training.epochs': 2}.

    Override values given as strings are parsed as YAML scalars, so "2e-5" and "true" get their types.
    """
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(tree, dotted, _parse_override(dotted, value) if isinstance(value, str) else value)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as err:
        where = f"{path}: " if path else ""
        lines = [f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in err.errors()]
        raise ConfigError(where + "invalid configuration\n  " + "\n  ".join(lines)) from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None
