"""Items (dated headlines or posts with optional tickers) and the stream readers that yield them.

A stream is CSV or JSONL, from a file or stdin. Reading never stops at a bad record: a line that is not valid
JSON, a CSV record with the wrong number of fields (as an unquoted line break inside a headline leaves behind), a
date that does not parse or an empty text is reported as `file:line: reason` (a `DataIssue`) and the next line
is read. Each record carries the byte offset just after it, so a restarted ingest seeks to where the last
committed batch ended instead of reading the file again.

Every item has a stable id: its own `id` field, else a hash of its time, text and tickers. Items are stored
under it once, so reading a record twice (a restart, stdin sent again, an HTTP retry) never counts it twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from goldmine.apps.monitor.config import InputFields
from goldmine.errors import DataIssue

MAX_RECORD_LINES = 20  # a quoted CSV field may span lines; an unbalanced quote beyond this is a bad record
_TICKER_SPLIT = re.compile(r"[,;|\s]+")


@dataclass(frozen=True)
class Item:
    """One dated text, with the tickers its source tagged it with (may be none)."""

    id: str
    time: datetime  # naive UTC
    text: str
    tickers: tuple[str, ...] = ()
    source: str = ""  # where it came from: "file:line", "http"


@dataclass
class Record:
    """A stream position: the item read there, or the issue that kept it from being read."""

    line: int  # where the record starts
    end_offset: int  # byte offset just after this record (where a resumed read starts)
    item: Item | None = None
    issue: DataIssue | None = None
    end_line: int = 0  # its last line (a quoted CSV field may span lines)


def item_id(time: datetime, text: str, tickers: tuple[str, ...]) -> str:
    payload = json.dumps([time.isoformat(), text, sorted(tickers)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def parse_time(value: Any) -> datetime:
    """ISO 8601 (a date alone, or with time and zone) or Unix seconds -> naive UTC. ValueError otherwise."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    else:
        raise ValueError(f"no time ({value!r})")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def parse_tickers(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        parts = _TICKER_SPLIT.split(value)
    elif isinstance(value, list | tuple):
        parts = value
    else:
        raise ValueError(f"tickers must be a list or a string, got {type(value).__name__}")
    out = []
    for part in parts:
        if not isinstance(part, str):
            raise ValueError(f"a ticker must be a string, got {part!r}")
        part = part.strip().lstrip("$").upper()
        if part:
            out.append(part)
    return tuple(dict.fromkeys(out))


def _first(record: dict, names: list[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in record and record[name] not in (None, ""):
            return name, record[name]
    return None, None


def make_item(record: dict, fields: InputFields, source: str, max_chars: int) -> Item:
    """An item from a parsed record; ValueError with the reason when it cannot be one."""
    _, text = _first(record, fields.text)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"no text (looked for {', '.join(fields.text)})")
    text = text.strip()
    if len(text) > max_chars:
        raise ValueError(f"text has {len(text)} characters; the limit is {max_chars}")
    name, raw_time = _first(record, fields.time)
    try:
        time = parse_time(raw_time)
    except (ValueError, TypeError, OverflowError, OSError) as err:
        raise ValueError(f"{name or fields.time[0]}: not a date or time ({err})") from None
    _, raw_tickers = _first(record, fields.tickers)
    tickers = parse_tickers(raw_tickers)
    _, given_id = _first(record, fields.id)
    if given_id is not None and not isinstance(given_id, str | int):
        raise ValueError(f"id must be a string or an integer, got {type(given_id).__name__}")
    ident = f"id:{given_id}" if given_id is not None else item_id(time, text, tickers)
    if len(ident) > 128:
        raise ValueError("id is longer than 125 characters")
    return Item(ident, time, text, tickers, source)


@dataclass
class StreamReader:
    """Records of a CSV or JSONL stream, from `offset` on (0: the start; CSV reads its header first anyway)."""

    stream: IO[bytes]
    name: str  # for messages: the path, or "stdin"
    fmt: str  # csv | jsonl
    fields: InputFields = field(default_factory=InputFields)
    max_chars: int = 2000
    offset: int = 0
    line: int = 0  # lines before `offset` (to number the lines of a resumed read)

    def __iter__(self) -> Iterator[Record]:
        header: list[str] | None = None
        position, number = 0, 0
        if self.fmt == "csv":
            raw = self.stream.readline()
            position, number = len(raw), 1
            header = next(csv.reader([raw.decode("utf-8-sig", errors="replace")]), [])
            if not header:
                yield Record(1, position, issue=DataIssue(self.name, 1, "empty file: no CSV header"))
                return
        if self.offset > position:
            self.stream.seek(self.offset)
            position, number = self.offset, self.line
        pending: list[bytes] = []
        first_line = number + 1
        for raw in self.stream:
            number += 1
            position += len(raw)
            if not pending:
                first_line = number
            pending.append(raw)
            if self.fmt == "csv" and sum(p.count(b'"') for p in pending) % 2 and len(pending) < MAX_RECORD_LINES:
                continue  # inside a quoted field: the record goes on on the next line
            chunk, pending = b"".join(pending), []
            record = self._record(chunk, header, first_line, position)
            if record is not None:
                record.end_line = number
                yield record
        if pending:
            record = self._record(b"".join(pending), header, first_line, position) or Record(number, position)
            record.end_line = number
            yield record

    def _record(self, chunk: bytes, header: list[str] | None, line: int, end: int) -> Record | None:
        where = f"{self.name}:{line}"
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as err:
            return Record(line, end, issue=DataIssue(self.name, line, f"not UTF-8 (byte {err.start}); skipped"))
        if not text.strip():
            return None  # blank lines are nothing to report
        try:
            if header is not None:
                values = next(csv.reader([text.rstrip("\r\n")]))
                if len(values) != len(header):
                    raise ValueError(f"{len(values)} fields where the header has {len(header)} (a line break inside a "
                                     "field that is not quoted?)")
                record = dict(zip(header, values, strict=True))
            else:
                try:
                    record = json.loads(text.strip())
                except json.JSONDecodeError as err:
                    raise ValueError(f"not valid JSON: {err.msg} (column {err.colno})") from None
                if not isinstance(record, dict):
                    raise ValueError("a JSONL line must be an object")
            item = make_item(record, self.fields, where, self.max_chars)
        except (ValueError, csv.Error) as err:
            return Record(line, end, issue=DataIssue(self.name, line, f"{err}; skipped"))
        return Record(line, end, item=item)


def detect_format(path: str | Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"format must be csv, jsonl or auto, got {fmt!r}")
        return fmt
    suffix = Path(str(path)).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ValueError(f"{path}: cannot tell the format from the name: give --format csv or jsonl")
