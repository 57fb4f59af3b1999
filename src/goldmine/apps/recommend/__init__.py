"""The text-based recommender (issue 15, part 3): items described by text, users by the items they liked,
candidates by embedding similarity with an encoder fine-tuned on co-liked items, re-ranked, filtered, explained,
and new items recommendable from their text alone. See `recommender.py` for how a request is answered."""

from goldmine.apps.recommend.config import FinetuneConfig, RecommenderConfig
from goldmine.apps.recommend.data import Interaction, Item, ReadReport, read_interactions, read_items, read_movielens
from goldmine.apps.recommend.recommender import BuildReport, Filters, Recommender, UnknownUser

__all__ = ["BuildReport", "Filters", "FinetuneConfig", "Interaction", "Item", "ReadReport", "Recommender",
           "RecommenderConfig", "UnknownUser", "read_interactions", "read_items", "read_movielens"]
