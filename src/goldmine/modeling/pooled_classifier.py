"""A sequence classifier that pools the way sentence-transformers checkpoints were trained.

transformers' `BertForSequenceClassification` classifies from the BERT pooler (a dense+tanh
layer on [CLS]). all-MiniLM-L6-v2 was trained with *mean pooling* and its pooler was never
trained for that objective, so we pool the token states the way the checkpoint learned to.
Measured on sst2 dev (bench/accuracy): mean pooling beats the [CLS]/pooler head.

This file imports only torch and transformers: `save_pretrained` copies it into every model
directory, so `AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)`
loads a goldmine model without goldmine installed.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states that are not padding: (B, T, H), (B, T) -> (B, H)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def load_encoder(factory, source, pooling: str) -> PreTrainedModel:
    """`factory(source)` (AutoModel.from_pretrained / from_config) with a pooler only when `pooling` uses it.

    BERT-like encoders take `add_pooling_layer`; encoders without a pooler (DistilBERT, ELECTRA, DeBERTa)
    reject the argument, and are built without it.
    """
    try:
        return factory(source, add_pooling_layer=pooling == "pooler")
    except TypeError as err:
        if "add_pooling_layer" not in str(err):
            raise
    return factory(source)


class PooledEncoderForSequenceClassification(PreTrainedModel):
    """Any transformers encoder + pooling (mean | cls | pooler) + dropout + linear head.

    The pooling mode lives in `config.goldmine_pooling`; `config.problem_type` is
    "single_label_classification" or "multi_label_classification" as in transformers. With
    `config.goldmine_normalize`, the pooled embedding is scaled to unit length before the head, so a
    head row that is a unit vector times s gives s x cosine similarity: how zero-shot (label prototypes)
    and few-shot (a head fitted on normalised sentence embeddings) models classify.
    """

    config_class = AutoConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        self.pooling = getattr(config, "goldmine_pooling", "mean")
        self.normalize = bool(getattr(config, "goldmine_normalize", False))
        self.backbone = encoder if encoder is not None else load_encoder(AutoModel.from_config, config, self.pooling)
        if self.pooling == "pooler" and getattr(self.backbone, "pooler", None) is None:
            raise ValueError(f"pooling 'pooler' needs an encoder with a pooler layer, {config.model_type} has none; "
                             "use mean or cls pooling")
        dropout = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(getattr(config, "hidden_dropout_prob", 0.1) if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if module is getattr(self, "classifier", None):
            module.weight.data.normal_(mean=0.0, std=getattr(self.config, "initializer_range", 0.02))
            module.bias.data.zero_()

    def pool(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs) -> torch.Tensor:
        """Sentence embeddings (B, H) as the chosen pooling computes them."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra, **kwargs)
        if self.pooling == "pooler":
            return out.pooler_output
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        return mean_pool(out.last_hidden_state, attention_mask)

    def embed(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs) -> torch.Tensor:
        """What the head reads: the pooled embeddings (B, H), of unit length with `goldmine_normalize`."""
        pooled = self.pool(input_ids, attention_mask, token_type_ids, **kwargs)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def logits_and_embeddings(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, C), embeddings (B, H)) from one pass: what the exported graph outputs."""
        embeddings = self.embed(input_ids, attention_mask, token_type_ids, **kwargs)
        return self.classifier(self.dropout(embeddings)), embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        kwargs.pop("return_dict", None)
        kwargs.pop("num_items_in_batch", None)
        logits = self.classifier(self.dropout(self.embed(input_ids, attention_mask, token_type_ids, **kwargs)))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
