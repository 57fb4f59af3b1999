"""The recommender's settings: what counts as a like, how a user's taste vector is made, how candidates are re-ranked,
and how the encoder is fine-tuned on items that the same users liked; and the app config (`app: recommend`) that
serves it to a tenant.

Every field has a default that was chosen on a validation split cut from training histories (bench/recommend.py),
never on evaluation positives; `bench/results/recommend.md` shows what each setting measured. The settings are saved
in the recommender's directory (`recommender.json`), so a loaded recommender answers as the one that was built; a
served recommender takes them from its app config instead (`RecommendConfig.recommender`), so a customer tunes the
re-ranking by editing a line.

    app: recommend
    tenant: acme
    models:
      encoder: {name: shop-encoder, version: production}   # the registered item encoder (a retrieval model)
    state_dir: recommend-acme                              # items, users and item vectors (relative to this file)
    recommender: {like_threshold: 4.0, diversity: 0.2}
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from goldmine.apps.base import AppConfig, ModelRef
from goldmine.errors import ConfigError

MAX_K = 100  # recommendations per request


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FinetuneConfig(_Section):
    """Contrastive fine-tuning of the item encoder on co-liked item pairs (`goldmine.apps.recommend.finetune`)."""

    window: int = Field(10, ge=1, description="Two items make a pair when one user liked both within this many "
                        "consecutive likes of each other (time order): near likes share a taste more than far ones.")
    pairs_per_user: int = Field(100, ge=1, description="At most this many pairs per user (drawn at random), so "
                                "that a few heavy users do not decide what the encoder learns.")
    max_pairs: int = Field(60_000, ge=10, description="At most this many pairs in all (drawn at random).")
    dev_share: float = Field(0.03, ge=0, lt=0.5, description="Share of the pairs kept apart for the dev MRR@10 that "
                             "picks the best checkpoint (0: no dev, the last step is kept).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training pairs.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps; -1: use epochs.")
    batch_size: int = Field(64, ge=2, description="Pairs per batch: each item's partner must rank first among the "
                            "2 x batch_size - 1 other items of the batch (in-batch negatives).")
    learning_rate: float = Field(1e-4, gt=0, lt=1, description="Peak AdamW learning rate (goldmine's training "
                                 "default: a short run needs the larger step).")
    scale: float = Field(20.0, gt=0, le=1000, description="Inverse temperature of the in-batch ranking loss.")
    max_length: int = Field(64, gt=8, le=512, description="Longest item text in tokens; longer ones are truncated.")
    seed: int = Field(13, description="Seed of the pair draw and of training.")
    num_threads: int | None = Field(None, gt=0, description="torch intra-op threads while training (default: all).")


class RecommenderConfig(_Section):
    """How a `Recommender` turns a user's history into ranked, explained items."""

    like_threshold: float = Field(4.0, description="A rating at or above this is a like; lower ratings only mark "
                                  "an item as seen. Interactions without a rating (clicks, purchases) are likes.")
    recency_half_life: float | None = Field(None, gt=0, description="Weight of a liked item in the user's taste "
                                            "vector halves every this many newer likes (None: a plain mean).")
    popularity_weight: float = Field(0.0, ge=0, description="Score = cosine similarity + this x popularity prior "
                                     "(log(1 + likes) / log(1 + most likes), in [0, 1]); 0: similarity alone.")
    diversity: float = Field(0.0, ge=0, lt=1, description="Maximal marginal relevance: each next pick loses this "
                             "share of its score to its similarity with the picks before it (0: off).")
    candidates: int = Field(300, ge=10, le=1000, description="Items taken by similarity before re-ranking.")
    explain: int = Field(2, ge=0, le=10, description="Liked items shown as the reason of each recommendation.")
    batch_size: int = Field(64, gt=0, description="Item texts embedded per batch.")
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Fine-tuning (Recommender.fit).")

    @classmethod
    def from_dict(cls, tree: dict | None) -> RecommenderConfig:
        """Validate a mapping (from YAML or JSON); errors name the dotted field."""
        try:
            return cls.model_validate(tree or {})
        except ValidationError as err:
            lines = [f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in err.errors()]
            raise ConfigError("invalid recommender configuration\n  " + "\n  ".join(lines)) from None


class RecommendModels(_Section):
    """The models the recommender app runs, by serving-registry name and version or alias."""

    encoder: ModelRef = Field(description="The item encoder: a goldmine retrieval model (the bundled MiniLM saved "
                              "with `goldmine app recommend fit`, or any encoder registered with `goldmine models "
                              "register`). Items are embedded with the version this names; when it changes (an "
                              "alias promoted), the catalog is embedded again with the new version on first use.")


class RecommendConfig(AppConfig):
    """The recommender app's config (`app: recommend`).

    Where the state lives, and why: the encoder is a registry version (immutable, content-hashed, shared by every
    app and route that names it), but the catalog and the users grow with every `POST items` and `POST
    interactions`. Writing them into the registry's copy would change a version that must never change, so they
    live in a directory of their own, `state_dir`, one per tenant and config: a `Recommender` directory (items with
    their vectors in a search index, users' interactions, settings), whose index records the digest of the encoder
    that embedded it. Opening the state checks that digest against the version the config resolves to now; another
    version (a promoted alias, an edited line) re-embeds the catalog from the items' stored text, keeping every item
    and interaction. Files, not tables: no migration, and each file is replaced whole through a rename."""

    app_name = "recommend"

    models: RecommendModels = Field(description="The encoder the recommender embeds items with.")
    state_dir: str = Field(min_length=1, description="Directory of the recommender's state (items, interactions, "
                           "item vectors), relative to this file; `goldmine app recommend build` creates it.")
    recommender: RecommenderConfig = Field(default_factory=RecommenderConfig, description="How requests are "
                                           "answered (like threshold, re-ranking, explanations) and how `fit` "
                                           "fine-tunes; these override the settings saved in the state.")
    default_k: int = Field(10, ge=1, le=MAX_K, description="Recommendations per request when a request gives no k.")

    def state_path(self) -> Path:
        """`state_dir`, relative to the config file's directory."""
        return self.path(self.state_dir)
