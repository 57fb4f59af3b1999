"""Stream readers: every bad record reported as file:line and skipped, the rest read; positions for resuming."""

from __future__ import annotations

import io
import json
from datetime import datetime

from goldmine.apps.monitor.config import InputFields
from goldmine.apps.monitor.items import StreamReader, item_id, parse_tickers, parse_time

# what headlines.csv looks like, with one headline broken by an unquoted line break (two malformed records)
CSV = (",title,date,stock\n"
       "0,Stocks That Hit 52-Week Highs On Friday,2020-06-05 10:30:00-04:00,A\n"
       "1,Agilent beats estimates\n"
       " and raises outlook,2020-06-04 08:00:00-04:00,A\n"
       ",\"Alcoa, Inc. cuts jobs\nacross plants\",2020-06-03 09:00:00-04:00,AA\n"
       "3,Undated headline,not a date,AAP\n"
       "4,,2020-06-02 09:00:00-04:00,AAP\n"
       "5,Barrick Gold output up,2020-06-01,ABX\n")


def read(data: bytes, fmt: str, **kw):
    return list(StreamReader(io.BytesIO(data), "news.csv" if fmt == "csv" else "news.jsonl", fmt, **kw))


def test_csv_reports_broken_records_by_line_and_goes_on():
    records = read(CSV.encode(), "csv")
    items = [r.item for r in records if r.item]
    issues = [str(r.issue) for r in records if r.issue]
    assert [i.text for i in items] == ["Stocks That Hit 52-Week Highs On Friday",
                                       "Alcoa, Inc. cuts jobs\nacross plants", "Barrick Gold output up"]
    assert [i.source for i in items] == ["news.csv:2", "news.csv:5", "news.csv:9"]
    assert issues[0].startswith("news.csv:3: 2 fields where the header has 4")
    assert issues[1].startswith("news.csv:4: 3 fields where the header has 4")
    assert issues[2].startswith("news.csv:7: date: not a date or time")
    assert issues[3].startswith("news.csv:8: no text")
    assert len(issues) == 4
    first = items[0]
    assert first.time == datetime(2020, 6, 5, 14, 30) and first.tickers == ("A",)  # -04:00 -> UTC
    assert items[2].time == datetime(2020, 6, 1)  # a date alone: midnight UTC


def test_jsonl_bad_lines_and_resume_from_an_offset():
    lines = [json.dumps({"time": "2026-03-02T09:00:00Z", "text": "Contoso up", "tickers": "ctso, $FABR"}),
             '{"time": "2026-03-02", "text": "cut off',
             json.dumps(["not", "an", "object"]),
             "",
             json.dumps({"id": 7, "time": 1772442000, "text": "Tailspin grounded"})]
    data = ("\n".join(lines) + "\n").encode()
    records = read(data, "jsonl")
    assert [str(r.issue).split(";")[0] for r in records if r.issue] == [
        "news.jsonl:2: not valid JSON: Unterminated string starting at (column 32)",
        "news.jsonl:3: a JSONL line must be an object"]
    first, last = [r for r in records if r.item]
    assert first.item.tickers == ("CTSO", "FABR") and last.item.id == "id:7" and last.line == 5
    resumed = read(data, "jsonl", offset=records[1].end_offset, line=records[1].end_line)
    assert [r.line for r in resumed] == [3, 5] and resumed[-1].item == last.item


def test_custom_field_names_and_length_limit():
    fields = InputFields(text=["body"], time=["ts"], tickers=["syms"], id=["uid"])
    data = (json.dumps({"uid": "a1", "ts": "2026-01-01T00:00:00+01:00", "body": "x" * 30, "syms": ["nwb"]}) + "\n"
            + json.dumps({"uid": "a2", "ts": "2026-01-01", "body": "y" * 31}) + "\n").encode()
    ok, too_long = read(data, "jsonl", fields=fields, max_chars=30)
    assert ok.item.id == "id:a1" and ok.item.time == datetime(2025, 12, 31, 23) and ok.item.tickers == ("NWB",)
    assert "text has 31 characters; the limit is 30" in str(too_long.issue)


def test_ids_are_stable_and_content_based():
    moment = parse_time("2026-03-02T09:00:00Z")
    assert item_id(moment, "a", ("X", "Y")) == item_id(moment, "a", ("Y", "X")) != item_id(moment, "b", ("X",))
    assert parse_tickers("aapl;msft | $goog") == ("AAPL", "MSFT", "GOOG")
