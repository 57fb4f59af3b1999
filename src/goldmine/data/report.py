"""A data quality report over the splits of a dataset, before any training time is spent.

Most disappointing models are data problems: duplicates that inflate scores, dev examples leaked from train,
the same text labeled two ways, or texts silently truncated by the model. This module finds them with one
hashing pass per split (O(n), fine for 100k examples) and names the `file:line` sources so they can be fixed.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from goldmine.data.schema import AUGMENTED, DataKind, LabeledData

MAX_EXAMPLES = 5  # example groups kept per finding
MAX_SOURCES = 10  # sources kept per example group
IMBALANCE_WARNING = 10.0  # max/min label count from which imbalance is reported
PAIR_SEPARATOR = " ||| "  # how a text pair is shown


@dataclass
class LengthStats:
    """Distribution of text lengths (words or model tokens)."""

    min: int
    mean: float
    median: float
    p95: float
    max: int

    @classmethod
    def of(cls, values: Sequence[int]) -> LengthStats | None:
        """Stats of `values` (None when empty); floats rounded to 2 decimals so reports stay readable."""
        if not values:
            return None
        arr = np.asarray(values)
        mean, median, p95 = (round(float(v), 2) for v in (arr.mean(), np.median(arr), np.percentile(arr, 95)))
        return cls(int(arr.min()), mean, median, p95, int(arr.max()))


@dataclass
class DuplicateGroup:
    """Texts that count as one: shown text, how many examples share it, and where (first MAX_SOURCES)."""

    text: str
    count: int
    sources: list[str]
    variants: list[str] = field(default_factory=list)  # the differing spellings, for near duplicates


@dataclass
class ConflictGroup:
    """One normalised text labeled in more than one way; `labels` maps each labeling to its sources."""

    text: str
    labels: dict[str, list[str]]


@dataclass
class SplitReport:
    """Findings within one split.

    `exact_duplicates` counts examples repeating an earlier text; `near_duplicates` counts extra spellings of
    a text that differ only in case, unicode form, spacing or punctuation; `conflicts` counts normalised texts
    with more than one labeling. Label shares are of all label occurrences (entity mentions for NER).
    """

    name: str
    examples: int
    label_counts: dict[str, int]
    label_shares: dict[str, float]
    imbalance_ratio: float | None
    missing_labels: list[str]
    word_lengths: LengthStats | None
    token_lengths: LengthStats | None
    over_length: int | None
    exact_duplicates: int
    near_duplicates: int
    conflicts: int
    duplicate_examples: list[DuplicateGroup]
    near_duplicate_examples: list[DuplicateGroup]
    conflict_examples: list[ConflictGroup]


@dataclass
class LeakExample:
    text: str
    exact: bool
    first_sources: list[str]
    second_sources: list[str]


@dataclass
class Leakage:
    """Examples of split `second` whose text also occurs in split `first` (exactly, or only after normalising)."""

    first: str
    second: str
    exact: int
    near: int
    examples: list[LeakExample]


@dataclass
class QualityReport:
    """Everything `quality_report` found; `warnings` is the short list of problems (empty when clean)."""

    kind: str
    max_length: int
    splits: dict[str, SplitReport]
    leakage: list[Leakage]
    warnings: list[str]

    def to_dict(self) -> dict:
        """A JSON-serialisable form, for writing next to a trained model."""
        return asdict(self)


def quality_report(
    splits: dict[str, LabeledData],
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    max_length: int = 128,
) -> QualityReport:
    """Check every split and every pair of splits; `count_tokens` (a tokenizer) enables the truncation check.

    Augmented examples (`goldmine.data.augment`) are left out: they are near-copies of real ones by design, and
    the report is about the data the user brought.
    """
    splits = {name: _real(data) for name, data in splits.items()}
    kinds = {data.kind.value for data in splits.values()}
    kind = kinds.pop() if len(kinds) == 1 else "mixed" if kinds else ""
    indexes = {name: _Index(data) for name, data in splits.items()}
    label_counts = {name: data.label_counts() for name, data in splits.items()}
    all_labels = sorted({label for counts in label_counts.values() for label in counts})

    split_reports = {
        name: _split_report(name, data, indexes[name], label_counts[name], all_labels, count_tokens, max_length)
        for name, data in splits.items()
    }
    leakage = [_leakage(a, indexes[a], b, indexes[b]) for a, b in itertools.combinations(splits, 2)]
    warnings = [w for rep in split_reports.values() for w in _split_warnings(rep, max_length)]
    for leak in leakage:
        if leak.exact:
            warnings.append(f"{leak.second}: {leak.exact} texts also in {leak.first} (leakage)")
        if leak.near:
            warnings.append(f"{leak.second}: {leak.near} texts near-identical to texts in {leak.first} (leakage)")
    return QualityReport(kind, max_length, split_reports, leakage, warnings)


def _real(data: LabeledData) -> LabeledData:
    if not any(ex.source.startswith(AUGMENTED) for ex in data.examples):
        return data
    return LabeledData(data.kind, [ex for ex in data.examples if not ex.source.startswith(AUGMENTED)], data.path,
                       data.multi_label)


def normalize_text(text: str) -> str:
    """The form under which two texts count as near duplicates: NFKC, lower case, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCTUATION)
    return " ".join(text.split())


class _PunctuationTable(dict):
    """A str.translate table deleting unicode punctuation (category P*), filled lazily per character."""

    def __missing__(self, codepoint: int) -> int | None:
        value = None if unicodedata.category(chr(codepoint)).startswith("P") else codepoint
        self[codepoint] = value
        return value


_PUNCTUATION = _PunctuationTable()


class _NormalizedWords(dict):
    """normalize_text per word, computed once per distinct word: NER words repeat a lot."""

    def __missing__(self, word: str) -> str:
        value = self[word] = normalize_text(word)
        return value


class _Index:
    """The keys of every example of one split, counted with Counters (C speed) so 100k examples stay fast.

    Keys are the text (a (text, text_b) tuple for pairs, the token tuple for NER). For NER the normalised key
    is built token by token, dropping tokens that normalise to nothing together with their tags, so split-off
    punctuation does not make the same sentence look differently tagged. A normalised key of None means nothing
    was left (e.g. only punctuation); such texts are not compared.
    """

    def __init__(self, data: LabeledData):
        self.examples = data.examples
        self.kind = data.kind
        token_cache = _NormalizedWords()
        keys = [_keys(ex, data.kind, token_cache) for ex in data.examples]
        self.exact = [key[0] for key in keys]
        self.normal = [key[1] for key in keys]
        self.labeling = [key[2] for key in keys]
        self.exact_counts = Counter(self.exact)
        # distinct (normalised, exact) pairs in first-seen order: the spellings of each normalised text
        self.spellings = dict.fromkeys((n, e) for n, e in zip(self.normal, self.exact, strict=True) if n is not None)
        self.spelling_counts = Counter(normal for normal, _ in self.spellings)
        labelings = dict.fromkeys((n, lab) for n, lab in zip(self.normal, self.labeling, strict=True) if n is not None)
        self.labeling_counts = Counter(normal for normal, _ in labelings)

    def positions(self, keys: list[Hashable], wanted: list[Hashable]) -> dict[Hashable, list[int]]:
        """Positions of the examples whose key (from `keys`) is wanted, grouped by key in first-seen order."""
        lookup = set(wanted)
        found: dict[Hashable, list[int]] = {}
        for i, key in enumerate(keys):
            if key in lookup:
                found.setdefault(key, []).append(i)
        return found

    def sources(self, positions: list[int]) -> list[str]:
        return [self.examples[i].source for i in positions[:MAX_SOURCES]]

    def shown(self, position: int) -> str:
        return _show(self.examples[position], self.kind)


def _keys(ex, kind: DataKind, token_cache: _NormalizedWords) -> tuple[Hashable, Hashable, str]:
    """(exact key, normalised key or None when empty, labeling) of one example."""
    if kind is DataKind.TOKENS:
        norms = [token_cache[token] for token in ex.tokens]
        if all(norms):  # the common case: no token is pure punctuation
            return ex.tokens, " ".join(norms) or None, " ".join(ex.tags)
        kept = [(norm, tag) for norm, tag in zip(norms, ex.tags, strict=False) if norm]
        return ex.tokens, " ".join(norm for norm, _ in kept) or None, " ".join(tag for _, tag in kept)
    labeling = ", ".join(sorted(ex.labels))
    if ex.text_b is not None:
        normal_pair = (normalize_text(ex.text), normalize_text(ex.text_b))
        return (ex.text, ex.text_b), normal_pair if any(normal_pair) else None, labeling
    return ex.text, normalize_text(ex.text) or None, labeling


def _show(ex, kind: DataKind) -> str:
    if kind is not DataKind.TOKENS and ex.text_b is not None:
        return f"{ex.text}{PAIR_SEPARATOR}{ex.text_b}"
    return ex.text


def _split_report(
    name: str,
    data: LabeledData,
    index: _Index,
    counts: Counter,
    all_labels: list[str],
    count_tokens: Callable[[list[str]], list[int]] | None,
    max_length: int,
) -> SplitReport:
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    present = [c for c in counts.values() if c > 0]

    token_lengths = _token_lengths(data, count_tokens) if count_tokens else None
    over_length = sum(n > max_length for n in token_lengths) if token_lengths is not None else None

    duplicates = [key for key, count in index.exact_counts.items() if count > 1]
    near = [normal for normal, count in index.spelling_counts.items() if count > 1]
    conflicts = [normal for normal, count in index.labeling_counts.items() if count > 1]
    return SplitReport(
        name=name,
        examples=len(data),
        label_counts=dict(ordered),
        label_shares={label: count / total for label, count in ordered},
        imbalance_ratio=max(present) / min(present) if present else None,
        missing_labels=[label for label in all_labels if not counts.get(label)] if len(data) else [],
        word_lengths=LengthStats.of(_word_lengths(data)),
        token_lengths=LengthStats.of(token_lengths) if token_lengths is not None else None,
        over_length=over_length,
        exact_duplicates=sum(index.exact_counts[key] - 1 for key in duplicates),
        near_duplicates=sum(index.spelling_counts[normal] - 1 for normal in near),
        conflicts=len(conflicts),
        duplicate_examples=[
            DuplicateGroup(index.shown(found[0]), len(found), index.sources(found))
            for found in index.positions(index.exact, duplicates[:MAX_EXAMPLES]).values()
        ],
        near_duplicate_examples=[
            _near_group(index, found) for found in index.positions(index.normal, near[:MAX_EXAMPLES]).values()
        ],
        conflict_examples=[
            _conflict_group(index, found) for found in index.positions(index.normal, conflicts[:MAX_EXAMPLES]).values()
        ],
    )


def _near_group(index: _Index, positions: list[int]) -> DuplicateGroup:
    first_of_spelling: dict[Hashable, int] = {}
    for i in positions:
        first_of_spelling.setdefault(index.exact[i], i)
    variants = [index.shown(i) for i in first_of_spelling.values()]
    return DuplicateGroup(variants[0], len(positions), index.sources(positions), variants[:MAX_SOURCES])


def _conflict_group(index: _Index, positions: list[int]) -> ConflictGroup:
    by_labeling: dict[str, list[int]] = {}
    for i in positions:
        by_labeling.setdefault(index.labeling[i], []).append(i)
    return ConflictGroup(index.shown(positions[0]), {lab: index.sources(found) for lab, found in by_labeling.items()})


def _word_lengths(data: LabeledData) -> list[int]:
    if data.kind is DataKind.TOKENS:
        return [len(ex.tokens) for ex in data.examples]
    return [len(ex.text.split()) + len((ex.text_b or "").split()) for ex in data.examples]


def _token_lengths(data: LabeledData, count_tokens: Callable[[list[str]], list[int]]) -> list[int]:
    """Model tokens per example in one tokenizer call; a pair counts both of its texts."""
    if not data.examples:
        return []
    texts = [ex.text for ex in data.examples]
    if data.kind is not DataKind.PAIR:
        return list(count_tokens(texts))
    counts = list(count_tokens(texts + [ex.text_b or "" for ex in data.examples]))
    return [a + b for a, b in zip(counts[: len(texts)], counts[len(texts) :], strict=True)]


def _leakage(first: str, a: _Index, second: str, b: _Index) -> Leakage:
    """Count examples of `second` whose text is in `first`; near leakage only for spellings not leaked exactly."""
    exact_keys = [key for key in b.exact_counts if key in a.exact_counts]
    near_keys = [(n, e) for n, e in b.spellings if n in a.spelling_counts and e not in a.exact_counts]
    shown_exact, shown_near = exact_keys[:MAX_EXAMPLES], near_keys[:MAX_EXAMPLES]

    in_second = b.positions(b.exact, shown_exact + [e for _, e in shown_near])
    in_first = a.positions(a.exact, shown_exact)
    in_first_normal = a.positions(a.normal, [n for n, _ in shown_near])
    examples = [
        LeakExample(b.shown(in_second[key][0]), True, a.sources(in_first[key]), b.sources(in_second[key]))
        for key in shown_exact
    ] + [
        LeakExample(b.shown(in_second[e][0]), False, a.sources(in_first_normal[n]), b.sources(in_second[e]))
        for n, e in shown_near
    ]
    exact = sum(b.exact_counts[key] for key in exact_keys)
    near = sum(b.exact_counts[e] for _, e in near_keys)
    return Leakage(first, second, exact, near, examples)


def _split_warnings(rep: SplitReport, max_length: int) -> list[str]:
    warnings = []
    if rep.exact_duplicates:
        warnings.append(f"{rep.name}: {rep.exact_duplicates} exact duplicate texts")
    if rep.near_duplicates:
        warnings.append(
            f"{rep.name}: {rep.near_duplicates} near-duplicate texts (differ only in case/spacing/punctuation)"
        )
    if rep.conflicts:
        warnings.append(f"{rep.name}: {rep.conflicts} texts with conflicting labels")
    if rep.over_length:
        warnings.append(f"{rep.name}: {rep.over_length} texts exceed {max_length} tokens and will be truncated")
    if rep.imbalance_ratio is not None and rep.imbalance_ratio >= IMBALANCE_WARNING:
        labels = list(rep.label_counts)
        warnings.append(
            f"{rep.name}: label imbalance {rep.imbalance_ratio:.1f}:1 "
            f"({labels[0]!r} {rep.label_counts[labels[0]]} vs {labels[-1]!r} {rep.label_counts[labels[-1]]})"
        )
    if rep.missing_labels:
        shown = ", ".join(rep.missing_labels[:MAX_SOURCES])
        warnings.append(f"{rep.name}: no examples of {shown} (present in other splits)")
    return warnings


def render_report(report: QualityReport, console: Console) -> None:
    """Print the report as tables plus a Findings list, readable in a terminal."""
    splits = list(report.splits.values())
    console.print(_overview_table(splits, report.max_length))
    if any(rep.label_counts for rep in splits):
        console.print(_balance_table(splits, report.kind))
    console.print(_length_table(splits))
    examples = _examples_table(report)
    if examples.row_count:
        console.print(examples)
    console.print("[bold]Findings[/bold]")
    if not report.warnings:
        console.print("  [green]No problems found.[/green]")
    for warning in report.warnings:
        console.print(f"  [yellow]•[/yellow] {escape(warning)}")


def _overview_table(splits: list[SplitReport], max_length: int) -> Table:
    table = Table(title="Data quality")
    for column in ("split", "examples", "duplicates", "near duplicates", "conflicts", f"> {max_length} tokens"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for rep in splits:
        over = "-" if rep.over_length is None else str(rep.over_length)
        table.add_row(
            escape(rep.name),
            str(rep.examples),
            str(rep.exact_duplicates),
            str(rep.near_duplicates),
            str(rep.conflicts),
            over,
        )
    return table


def _balance_table(splits: list[SplitReport], kind: str) -> Table:
    table = Table(title="Entity types (mentions)" if kind == DataKind.TOKENS.value else "Label balance")
    table.add_column("label")
    for rep in splits:
        table.add_column(escape(rep.name), justify="right")
    labels = sorted({label for rep in splits for label in rep.label_counts})
    for label in labels:
        cells = [
            f"{rep.label_counts[label]} ({rep.label_shares[label]:.1%})" if label in rep.label_counts else "0"
            for rep in splits
        ]
        table.add_row(escape(label), *cells)
    ratios = ["-" if rep.imbalance_ratio is None else f"{rep.imbalance_ratio:.1f}:1" for rep in splits]
    table.add_section()
    table.add_row("[dim]max/min[/dim]", *ratios)
    return table


def _length_table(splits: list[SplitReport]) -> Table:
    table = Table(title="Lengths")
    table.add_column("split")
    table.add_column("unit")
    for column in ("min", "mean", "median", "p95", "max"):
        table.add_column(column, justify="right")
    for rep in splits:
        for unit, stats in (("words", rep.word_lengths), ("tokens", rep.token_lengths)):
            if stats is None:
                continue
            table.add_row(
                escape(rep.name),
                unit,
                str(stats.min),
                f"{stats.mean:.1f}",
                f"{stats.median:g}",
                f"{stats.p95:.1f}",
                str(stats.max),
            )
    return table


def _examples_table(report: QualityReport) -> Table:
    table = Table(title="Examples of findings")
    table.add_column("finding")
    table.add_column("text", overflow="fold", max_width=60)
    table.add_column("where", overflow="fold")
    for rep in report.splits.values():
        for group in rep.duplicate_examples:
            table.add_row(f"{escape(rep.name)}: duplicate x{group.count}", _clip(group.text), _where(group.sources))
        for group in rep.near_duplicate_examples:
            texts = " / ".join(_clip(variant, 40) for variant in group.variants[:3])
            table.add_row(f"{escape(rep.name)}: near duplicate", texts, _where(group.sources))
        for conflict in rep.conflict_examples:
            where = "; ".join(f"{escape(label)}: {_where(sources)}" for label, sources in conflict.labels.items())
            table.add_row(f"{escape(rep.name)}: conflicting labels", _clip(conflict.text), where)
    for leak in report.leakage:
        for example in leak.examples:
            what = "leakage" if example.exact else "near leakage"
            where = f"{_where(example.second_sources)} ~ {_where(example.first_sources)}"
            table.add_row(f"{escape(leak.second)} in {escape(leak.first)}: {what}", _clip(example.text), where)
    return table


def _clip(text: str, width: int = 80) -> str:
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def _where(sources: list[str], shown: int = 3) -> str:
    more = f" +{len(sources) - shown}" if len(sources) > shown else ""
    return escape(", ".join(s or "?" for s in sources[:shown]) + more)
