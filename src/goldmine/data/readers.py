"""Readers for CSV/TSV, JSONL (labeled texts, or chat conversations: `goldmine.data.chat`) and CoNLL files.

Each reader collects *every* problem as a `DataIssue` ("file:line: reason") and raises one
`DataError` at the end, so a user fixes a file in one pass. No row is dropped silently: a row
is either read or reported.

Labels are text. A JSON label (a JSONL value, or a JSON list in a CSV cell) must be a string or a
number: an object, a nested list, a boolean or a null inside a list is reported, never turned into
a label such as "{'x': 1}" or "True" (a `true` label is nearly always a column holding something
else; a class really named "true" is written as a string). A whole number is one label however it
is written (`1`, `1.0` and `1e0` are all "1"), so a file written by a tool that stores classes as
floats keeps its classes; other numbers keep their shortest form ("0.5"). A CSV cell is text and is
taken as written ("1.0" stays "1.0").
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from goldmine.data.chat import chat_example, is_chat_record
from goldmine.data.schema import DataKind, LabeledData, TextExample, TokenExample
from goldmine.data.tags import Scheme, dangling_inside, detect_scheme, is_valid_tag, to_iob2
from goldmine.errors import DataError, DataIssue
from goldmine.registry import Registry

log = logging.getLogger(__name__)
LABEL_COLUMNS = ("label", "labels")  # the label columns read when `label_column` is unset

@dataclass(frozen=True)
class ReadOptions:
    """How to interpret a file's columns. The defaults fit `text,label` and `text_a,text_b,label` files."""

    text_column: str = "text"
    text_b_column: str = "text_b"
    label_column: str | None = None  # None: "label", or "labels" when a file has only that (both: an error)
    label_separator: str = "|"
    multi_label: bool | None = None  # None: multi-label if any row holds a list or the separator
    scheme: Scheme = Scheme.AUTO  # CoNLL tagging scheme; everything is normalised to IOB2
    strict: bool = False  # CoNLL: reject I- tags that continue no entity instead of repairing them


READERS: Registry[Callable[[Path, ReadOptions], LabeledData]] = Registry("reader")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def detect_format(path: Path) -> str:
    """Format name from the file suffix; anything else (.txt, .conll, .bio, .iob) is read as CoNLL."""
    return _SUFFIXES.get(path.suffix.lower(), "conll")


def read_file(path: str | Path, options: ReadOptions | None = None, fmt: str = "auto") -> LabeledData:
    """Read and validate one labeled file. Raises `DataError` listing every bad line."""
    path = Path(path)
    options = options or ReadOptions()
    if not path.is_file():
        raise DataError([DataIssue(str(path), 0, "file not found")], header="cannot read data")
    reader = READERS.get(detect_format(path) if fmt == "auto" else fmt)
    return reader(path, options)


def decoded_text(path: Path, header: str) -> str:
    """A whole file as text (a UTF-8 byte-order mark dropped), or a `DataError` naming the first line that is not
    UTF-8: for readers that need the file at once (CSV with a header, corpora, unlabeled texts)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError([DataIssue(str(path), line, "undecodable bytes (not UTF-8)")], header=header) from None


def _decoded_lines(path: Path, issues: list[DataIssue]) -> list[str]:
    """The file's lines as text (newlines kept). A line that is not UTF-8 is reported, never guessed at."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = []
    for number, chunk in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as err:
            issues.append(DataIssue(str(path), number, f"undecodable bytes (not UTF-8) at byte {err.start}"))
            lines.append(chunk.decode("utf-8", errors="replace"))
    if not any(line.strip() for line in lines):
        issues.append(DataIssue(str(path), 1, "file is empty"))
    return lines


def _label_text(value) -> str | None:
    """A JSON label value as label text, or None when it cannot be a label (see the module docstring)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _not_a_label(value, where: str) -> str:
    """Why a JSON value cannot be a label, with the value as written (shortened) and what to do."""
    kind = {dict: "an object", list: "a list", bool: "a boolean", float: "a number that is not finite"}.get(
        type(value), "null")
    shown = "" if value is None else f" ({_shortened(json.dumps(value, ensure_ascii=False))})"
    hint = f"; quote it ({json.dumps(json.dumps(value))}) if it is a class name" if isinstance(value, bool) else ""
    return f"label must be a string or a number, got {kind}{shown} {where}{hint}"


def _shortened(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _labels_of(value, options: ReadOptions, column: str) -> tuple[tuple[str, ...], bool, list[str]]:
    """Normalise a label cell to a tuple of strings.

    Returns the labels, whether the cell was a multi-label form, and why values could not be labels (each
    problem a reason for a `DataIssue`; the labels are then incomplete and the row must not be used).
    """
    if value is None:
        return (), False, []  # reported as an empty label
    if isinstance(value, list):
        return _list_labels(value, column)
    if not isinstance(value, str):
        text = _label_text(value)
        return ((), False, [_not_a_label(value, f"in '{column}'")]) if text is None else ((text,), False, [])
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            return _list_labels(parsed, column)
    if options.multi_label is not False and options.label_separator and options.label_separator in text:
        return tuple(part.strip() for part in text.split(options.label_separator)), True, []
    return ((text,) if text else ()), False, []


def _list_labels(values: list, column: str) -> tuple[tuple[str, ...], bool, list[str]]:
    labels, problems = [], []
    for position, value in enumerate(values, start=1):
        text = _label_text(value)
        if text is None:
            problems.append(_not_a_label(value, f"as item {position} of the list in '{column}'"))
        else:
            labels.append(text)
    return tuple(labels), True, problems


@dataclass(frozen=True)
class _Columns:
    """What a record's keys (or a header) say about the file: which columns to read and what kind of data."""

    text: str
    label: str
    kind: DataKind


def _columns(path: Path, line: int, record: Collection[str],
             options: ReadOptions) -> tuple[_Columns, DataIssue | None]:
    """The columns a record's keys (or a header) imply, and an issue if they are missing or ambiguous."""
    text_col = options.text_column
    if text_col not in record and "text_a" in record:
        text_col = "text_a"  # the usual name for the first text of a pair
    kind = DataKind.PAIR if options.text_b_column in record else DataKind.TEXT
    label_col = options.label_column
    if label_col is None:  # unset: "label", or the common plural when the file has only that
        found = [c for c in LABEL_COLUMNS if c in record]
        if len(found) > 1:
            reason = (f"columns {' and '.join(map(repr, found))} both found: say which holds the labels with "
                      "data.label_column (--set data.label_column=NAME; `goldmine data check --label-column NAME`)")
            return _Columns(text_col, found[0], kind), DataIssue(str(path), line, reason)
        label_col = found[0] if found else LABEL_COLUMNS[0]
    columns = _Columns(text_col, label_col, kind)
    missing = [c for c in (text_col, label_col) if c not in record]
    if not missing:
        return columns, None
    have = ", ".join(sorted(record)) or "none"
    hint = ""
    if label_col in missing and options.label_column is None:
        hint = " (data.label_column names the label column; 'label' or 'labels' are found without it)"
    return columns, DataIssue(str(path), line, f"missing column(s) {missing}; columns found: {have}{hint}")


def _build_text_data(path: Path, rows: Iterator[tuple[int, dict]], options: ReadOptions, issues) -> LabeledData:
    """Turn (line, record) pairs from CSV or JSONL into TextExamples, reporting bad rows."""
    examples: list[TextExample] = []
    any_multi = False
    columns: _Columns | None = None
    for line, record in rows:
        if columns is None:
            columns, missing_issue = _columns(path, line, record, options)
            if missing_issue:
                issues.append(missing_issue)
                return LabeledData(columns.kind, [], str(path))
            if columns.label != (options.label_column or LABEL_COLUMNS[0]):
                log.info("%s: labels read from column %r (no %r column; data.label_column names another)",
                         path, columns.label, LABEL_COLUMNS[0])
        kind, text_col, label_col = columns.kind, columns.text, columns.label
        text = record.get(text_col)
        text = "" if text is None else str(text)
        text_b = None
        if kind is DataKind.PAIR:
            text_b = record.get(options.text_b_column)
            text_b = "" if text_b is None else str(text_b)
            if not text_b.strip():
                issues.append(DataIssue(str(path), line, f"empty '{options.text_b_column}'"))
        if not text.strip():
            issues.append(DataIssue(str(path), line, f"empty '{text_col}'"))
        if label_col not in record:
            issues.append(DataIssue(str(path), line, f"missing '{label_col}'"))
            continue
        labels, was_multi, problems = _labels_of(record[label_col], options, label_col)
        any_multi |= was_multi
        if problems:
            issues.extend(DataIssue(str(path), line, reason) for reason in problems)
            continue
        if not labels or any(not label for label in labels):
            issues.append(DataIssue(str(path), line, f"empty label in '{label_col}'"))
            continue
        examples.append(TextExample(text=text, labels=labels, text_b=text_b, source=f"{path}:{line}"))
    multi = any_multi if options.multi_label is None else options.multi_label
    if not multi:
        for ex in examples:
            if len(ex.labels) != 1:
                issues.append(DataIssue.at(ex.source, f"{len(ex.labels)} labels in single-label data"))
    return LabeledData(columns.kind if columns else DataKind.TEXT, examples, str(path), multi_label=multi)


def _raise_if(issues: list[DataIssue], path: Path) -> None:
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        raise DataError(errors, header=f"{path} is invalid")


def _read_delimited(path: Path, options: ReadOptions, delimiter: str) -> LabeledData:
    issues: list[DataIssue] = []
    text = "".join(_decoded_lines(path, issues))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    header_line = 0
    records = 0  # data rows after the header, well-formed or not
    rows: list[tuple[int, dict]] = []
    end = 0  # last line of the previous record: a record starts on the next line, even if quoted newlines follow
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            issues.append(DataIssue(str(path), start, f"cannot parse this row: {err}"))
            records += header is not None
            if reader.line_num == end:
                break  # nothing consumed: the rest of the file cannot be read either
            end = reader.line_num
            continue
        end = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank line: nothing to read, nothing lost
        if header is None:
            header = [c.strip() for c in cells]
            header_line = start
            continue
        records += 1
        if len(cells) != len(header):
            reason = f"expected {len(header)} fields ({','.join(header)}), got {len(cells)}"
            issues.append(DataIssue(str(path), start, reason))
            continue
        rows.append((start, dict(zip(header, cells, strict=True))))
    if header is not None:
        # Columns are a property of the header, so a missing one is reported at the header's line.
        _, missing_issue = _columns(path, header_line, header, options)
        if missing_issue:
            issues.append(missing_issue)
            rows = []
        if not records:
            issues.append(DataIssue(str(path), header_line, "header only: no data rows"))
    data = _build_text_data(path, iter(rows), options, issues)
    _raise_if(issues, path)
    return data


@READERS.register("csv")
def read_csv(path: Path, options: ReadOptions) -> LabeledData:
    return _read_delimited(path, options, ",")


@READERS.register("tsv")
def read_tsv(path: Path, options: ReadOptions) -> LabeledData:
    return _read_delimited(path, options, "\t")


def jsonl_records(path: Path, issues: list[DataIssue], lines: list[str] | None = None) -> list[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSONL file (or of its `lines`, already decoded); a line
    that is not UTF-8, not JSON or not an object is added to `issues` at its line. Every JSONL reader uses this."""
    records = []
    for number, line in enumerate(_decoded_lines(path, issues) if lines is None else lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            issues.append(DataIssue(str(path), number, f"invalid JSON: {err.msg} (column {err.colno})"))
            continue
        if not isinstance(record, dict):
            issues.append(DataIssue(str(path), number, f"expected a JSON object, got {type(record).__name__}"))
            continue
        records.append((number, record))
    return records


@READERS.register("jsonl")
def read_jsonl(path: Path, options: ReadOptions) -> LabeledData:
    issues: list[DataIssue] = []
    rows = jsonl_records(path, issues)
    if rows and is_chat_record(rows[0][1]):
        data = _build_chat_data(path, rows, issues)
    else:
        data = _build_text_data(path, iter(rows), options, issues)
    _raise_if(issues, path)
    return data


def _build_chat_data(path: Path, rows: list[tuple[int, dict]], issues: list[DataIssue]) -> LabeledData:
    """Conversations (`goldmine.data.chat`): every invalid one reported at its line, a labeled row among them too."""
    examples = []
    for line, record in rows:
        if not is_chat_record(record):
            reason = (f"expected a conversation ('messages', or 'prompt' and 'response') like the file's first "
                      f"record, got keys {sorted(record)}")
            issues.append(DataIssue(str(path), line, reason))
            continue
        example, problems = chat_example(record, f"{path}:{line}")
        issues.extend(DataIssue(str(path), line, reason) for reason in problems)
        if example is not None:
            examples.append(example)
    return LabeledData(DataKind.CHAT, examples, str(path))


@READERS.register("conll")
def read_conll(path: Path, options: ReadOptions) -> LabeledData:
    """CoNLL: `token [extra columns...] tag` per line, blank line between sentences.

    `-DOCSTART-` lines are document boundaries (kept as `TokenExample.document`, never as tokens).
    """
    issues: list[DataIssue] = []
    sentences: list[tuple[list[int], list[str], list[str], int]] = []  # (line of each token, tokens, tags, document)
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    document = 0
    seen_docstart = False

    def close_sentence() -> None:
        nonlocal tokens, tags, lines
        if tokens:
            sentences.append((lines, tokens, tags, document))
        tokens, tags, lines = [], [], []

    for number, line in enumerate(_decoded_lines(path, issues), start=1):
        cells = line.split()
        if not cells:
            close_sentence()
            continue
        if cells[0] == "-DOCSTART-":
            close_sentence()
            document += 1 if seen_docstart or sentences else 0  # sentences before the first -DOCSTART- are a document
            seen_docstart = True
            continue
        if len(cells) < 2:
            issues.append(DataIssue(str(path), number, f"expected 'token tag', got {line.strip()!r}"))
            continue
        tag = cells[-1]
        if not is_valid_tag(tag):
            reason = f"tag {tag!r} is not in the IOB/BIOES scheme (O, B-X, I-X, E-X, S-X)"
            issues.append(DataIssue(str(path), number, reason))
            continue
        lines.append(number)
        tokens.append(cells[0])
        tags.append(tag)
    close_sentence()
    if not sentences and not issues:
        issues.append(DataIssue(str(path), 1, "no sentences found"))

    scheme = detect_scheme([s[2] for s in sentences]) if options.scheme is Scheme.AUTO else options.scheme
    # Strict means "IOB2 as written": an auto-detected IOB1 file is not repaired but rejected line by line.
    # Only a file declared `scheme: iob1` may open entities with I-.
    if options.strict and scheme in (Scheme.IOB2, Scheme.IOB1) and options.scheme is not Scheme.IOB1:
        for token_lines, _, sentence_tags, _ in sentences:
            for position in dangling_inside(sentence_tags):
                issues.append(DataIssue(str(path), token_lines[position],
                                        f"tag {sentence_tags[position]!r} continues no entity (no B- before it)"))
    _raise_if(issues, path)
    examples = [
        TokenExample(tuple(toks), tuple(to_iob2(tgs, scheme)), doc, f"{path}:{token_lines[0]}")
        for token_lines, toks, tgs, doc in sentences
    ]
    return LabeledData(DataKind.TOKENS, examples, str(path))
