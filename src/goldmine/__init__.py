"""goldmine: fine-tune a small pretrained language model on your labeled text, measure it, serve it.

    import goldmine
    result = goldmine.train("configs/intents.yaml")
    goldmine.Model.load(result.output_dir).predict(["where is my parcel?"])
    goldmine.Index.build(result.output_dir, "faq.jsonl", name="faq").search(["my parcel is late"])
"""

from goldmine.api import ensemble, evaluate, export, predict, train
from goldmine.config import TrainConfig, load_config
from goldmine.errors import ConfigError, DataError, GoldmineError, ModelError
from goldmine.version import __version__

__all__ = [
    "ConfigError", "DataError", "GoldmineError", "Index", "Model", "ModelError", "TrainConfig",
    "__version__", "ensemble", "evaluate", "export", "load_config", "predict", "train",
]


def __getattr__(name: str):
    # Model pulls in torch and transformers; import it on first use so `goldmine --help` stays fast.
    if name == "Model":
        from goldmine.inference.model import Model

        return Model
    if name == "Index":
        from goldmine.retrieval.index import Index

        return Index
    raise AttributeError(name)
