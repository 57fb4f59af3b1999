"""A decoder as a classifier: each label's score is the log-likelihood of its reply given the prompt.

The prompt of a text is `prefix + text + suffix` (token ids): the prefix is everything the chat template renders
before the text (system turn, instruction with the options, in-context examples), the suffix everything after it
up to where the assistant's reply starts. A label's *reply* is its verbalisation followed by the end-of-turn token;
its score is log P(reply | prompt), the sum (or the mean) of its tokens' log-probabilities.

What it costs, and how that is kept small:
- the prefix is the same for every text, so it runs once, when the model is loaded; its keys and values (the KV
  cache) are reused by every batch;
- a text's replies share everything before them, so the text runs once for all its labels, and every reply reads
  the text's keys and values instead of repeating the text (banking77: 77 replies per text);
- instead of one row per (text, label) with the cache copied into each, the texts of a batch and all their replies
  are *packed* into one sequence behind the prefix, with a block attention mask (each text sees the prefix and
  itself; each reply sees the prefix, its text and its own earlier tokens) and explicit positions (every reply of
  a text starts at the same position, right after the text). So the cache is never copied per label;
- a reply's last token is only ever predicted, never read: it is not fed in (a one-token reply costs no input);
- the output layer (49k x 576 for SmolLM2) runs only at the positions that predict a reply token.

Scores equal those of a plain forward over `prefix + text + suffix + reply`, one sequence at a time
(`tests/tuning/test_label_likelihood.py` checks it against exactly that).

The network takes what every goldmine classifier takes (a padded batch of text token ids, either padding side)
and returns (B, L) logits: the label scores plus a calibration bias per label, so `goldmine.Model`, `eval`,
`predict` and the server use it unchanged.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

PACK_TOKENS = 1024  # tokens (texts, suffixes and replies) per packed forward pass; the mask is PACK x (prefix + PACK)


@dataclass(frozen=True)
class PromptIds:
    """The token ids of a prompt around a text, and of each label's replies."""

    prefix: list[int]  # before the text: system turn, instruction with the options, in-context examples
    suffix: list[int]  # after the text, up to where the assistant's reply starts
    replies: list[list[int]]  # every reply (R of them), each its verbalisation + the end-of-turn token
    owners: list[int]  # the label index of each reply (a label may have several replies: its templates)
    strip: tuple[int, int] = (0, 0)  # special tokens the tokenizer adds before / after a text: not part of it


class LabelLikelihoodClassifier(nn.Module):
    """(B, T) text ids -> (B, L) logits: the label log-likelihoods of `decoder` plus `bias` (the calibration)."""

    def __init__(self, decoder: nn.Module, prompt: PromptIds, num_labels: int, score: str = "sum",
                 bias: list[float] | None = None, pack_tokens: int = PACK_TOKENS):
        super().__init__()
        if score not in ("sum", "mean"):
            raise ValueError(f"score must be sum or mean, got {score!r}")
        self.decoder = decoder.eval()
        self.prompt = prompt
        self.num_labels = num_labels
        self.score = score
        self.pack_tokens = pack_tokens
        self.register_buffer("bias", torch.tensor(bias if bias is not None else [0.0] * num_labels))
        self.register_buffer("owners", torch.tensor(prompt.owners))
        counts = torch.bincount(self.owners, minlength=num_labels)
        if int(counts.min()) == 0:
            raise ValueError("every label needs at least one reply")
        self.register_buffer("log_replies", counts.float().log())  # (L,) log of each label's number of replies
        self._cache_argument = "cache" if "cache" in inspect.signature(decoder.forward).parameters \
            else "past_key_values"  # transformers renamed it in 5.x
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._lock = threading.Lock()  # the prefix cache is shared: one packed pass at a time

    # ---- what goldmine.Model calls ----
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **_: torch.Tensor) -> SequenceClassifierOutput:
        """(B, T) padded text ids -> logits (B, L)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lead, trail = self.prompt.strip
        texts = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            kept = [t for t, m in zip(ids, mask, strict=True) if m]
            texts.append(kept[lead:len(kept) - trail])
        return SequenceClassifierOutput(logits=self.label_scores(texts) + self.bias)

    # ---- the scores ----
    def label_scores(self, texts: list[list[int]]) -> torch.Tensor:
        """(N, L) uncalibrated scores: per label, the log of the mean likelihood of its replies (one reply: its
        log-likelihood), a reply's likelihood being its summed or its mean token log-probability."""
        total, tokens = self.reply_log_likelihoods(texts)  # (N, R) each
        per_reply = total if self.score == "sum" else total / tokens
        out = per_reply.new_full((len(texts), self.num_labels), float("-inf"))
        index = self.owners.expand(len(texts), -1)
        out = out.scatter_reduce(1, index, per_reply, reduce="amax")  # logsumexp per label, stably
        sums = torch.zeros_like(out).scatter_add(1, index, (per_reply - out.gather(1, index)).exp())
        return out + sums.log() - self.log_replies

    @torch.no_grad()
    def reply_log_likelihoods(self, texts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """((N, R) summed log-probabilities of every reply given each text's prompt, (R,) reply lengths in tokens)."""
        replies = self.prompt.replies
        lengths = torch.tensor([len(r) for r in replies], dtype=torch.float32)
        out = torch.zeros(len(texts), len(replies))
        block_cost = len(self.prompt.suffix) + sum(len(r) - 1 for r in replies)
        start = 0
        with self._lock:
            while start < len(texts):
                end, used = start, 0
                while end < len(texts) and (end == start or used + len(texts[end]) + block_cost <= self.pack_tokens):
                    used += len(texts[end]) + block_cost
                    end += 1
                out[start:end] = self._packed(texts[start:end])
                start = end
        return out, lengths

    def _packed(self, texts: list[list[int]]) -> torch.Tensor:
        """(n, R) reply log-likelihoods of `texts`, all in one forward pass behind the cached prefix."""
        replies, suffix = self.prompt.replies, self.prompt.suffix
        prefix_len = len(self.prompt.prefix)
        ids, positions, block, reply_of, order = [], [], [], [], []  # one entry per packed token
        read_at, targets, target_rows = [], [], []  # logit position, token it must predict, (text, reply) index
        for n, text in enumerate(texts):
            body = text + suffix
            for j, token in enumerate(body):
                ids.append(token)
                positions.append(prefix_len + j)
                block.append(n)
                reply_of.append(-1)
                order.append(j)
            last = len(ids) - 1  # its logits predict the first token of every reply
            for r, reply in enumerate(replies):
                previous = last
                for j, token in enumerate(reply):
                    read_at.append(previous)
                    targets.append(token)
                    target_rows.append((n, r))
                    if j == len(reply) - 1:
                        break  # the last token is predicted, never read
                    ids.append(token)
                    positions.append(prefix_len + len(body) + j)
                    block.append(n)
                    reply_of.append(r)
                    order.append(len(body) + j)
                    previous = len(ids) - 1
        q = len(ids)
        block_t, reply_t, order_t = torch.tensor(block), torch.tensor(reply_of), torch.tensor(order)
        same_block = block_t[:, None] == block_t[None, :]
        earlier = order_t[None, :] <= order_t[:, None]
        key_is_text = reply_t[None, :] == -1
        same_reply = reply_t[:, None] == reply_t[None, :]
        allowed = same_block & earlier & (key_is_text | same_reply)  # (q, q): query row, key column
        allowed = torch.cat([torch.ones(q, prefix_len, dtype=torch.bool), allowed], dim=1)  # all read the prefix
        dtype = next(self.decoder.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        keep = torch.tensor(read_at)
        kept_index, kept_rows = torch.unique(keep, return_inverse=True)
        logits = self.decoder(input_ids=torch.tensor([ids]), attention_mask=mask[None, None],
                              position_ids=torch.tensor([positions]), use_cache=prefix_len > 0,
                              logits_to_keep=kept_index, **{self._cache_argument: self._prefix_cache()}).logits[0]
        log_probs = logits.float().log_softmax(-1)  # (K, V) at the positions that predict a reply token
        token_scores = log_probs[kept_rows, torch.tensor(targets)]  # (number of reply tokens,)
        out = torch.zeros(len(texts), len(replies))
        rows = torch.tensor(target_rows)
        out.index_put_((rows[:, 0], rows[:, 1]), token_scores, accumulate=True)
        return out

    def _prefix_cache(self):
        """A fresh cache holding the prefix's keys and values (computed on first use); None without a prefix."""
        from transformers import DynamicCache

        if not self.prompt.prefix:
            return None
        if self._prefix_kv is None:
            with torch.no_grad():
                out = self.decoder(input_ids=torch.tensor([self.prompt.prefix]), use_cache=True,
                                   **{self._cache_argument: DynamicCache()})
            cache = getattr(out, "cache", None) or out.past_key_values
            self._prefix_kv = [(keys, values) for keys, values, *_ in cache]
        return DynamicCache(ddp_cache_data=self._prefix_kv)  # copies: the pass appends to it
