"""The text-based recommender (issue 15, part 3): items described by text, users by the items they liked,
candidates by embedding similarity with an encoder fine-tuned on co-liked items, re-ranked, filtered, explained,
and new items recommendable from their text alone. See `recommender.py` for how a request is answered.

    config.py       the recommender's settings and the app config (encoder by registry name, state directory)
    data.py         items, interactions, their files (JSONL/CSV/TSV, MovieLens)
    recommender.py  `Recommender`: build, load, recommend, add items and interactions (one lock)
    finetune.py     contrastive fine-tuning on co-liked pairs      evaluation.py  offline metrics
    api.py          the app's Python API (`RecommendApp`, build, fit)   cli.py  goldmine app recommend ...
    router.py       /v1/apps/recommend/...     demo.py  offline demo on a bookshop the code writes
"""

from goldmine.apps import APPS
from goldmine.apps.base import AppSpec
from goldmine.apps.recommend.config import FinetuneConfig, RecommendConfig, RecommenderConfig
from goldmine.apps.recommend.data import Interaction, Item, ReadReport, read_interactions, read_items, read_movielens
from goldmine.apps.recommend.recommender import BuildReport, Filters, Recommender, UnknownUser

SPEC = APPS.register("recommend")(AppSpec(
    name="recommend",
    summary="Text-based recommender: items by text, users by what they liked -> ranked, filtered, explained items.",
    config=RecommendConfig,
    cli="goldmine.apps.recommend.cli:app",
    router="goldmine.apps.recommend.router:router",
))

__all__ = ["BuildReport", "Filters", "FinetuneConfig", "Interaction", "Item", "ReadReport", "RecommendConfig",
           "Recommender", "RecommenderConfig", "SPEC", "UnknownUser", "read_interactions", "read_items",
           "read_movielens"]
