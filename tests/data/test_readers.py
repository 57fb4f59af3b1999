"""Readers: every bad line is reported as `file:line: reason`, every good line is read, nothing in between."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldmine.data.readers import ReadOptions, detect_format, read_file
from goldmine.data.schema import DataKind
from goldmine.data.tags import Scheme
from goldmine.errors import ConfigError, DataError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))  # bytes: no newline translation, the lines are exactly these
    return path


def read_error(path: Path, options: ReadOptions | None = None) -> DataError:
    with pytest.raises(DataError) as info:
        read_file(path, options)
    return info.value


def located(err: DataError) -> list[tuple[str, int, str]]:
    return [(issue.path, issue.line, issue.reason) for issue in err.issues]


# --- CSV / TSV: bad input -------------------------------------------------------------------------------------


def test_missing_configured_column_is_reported_at_the_header(tmp_path):
    path = write(tmp_path, "intents.csv", "text,label\nhello,greet\n")
    err = read_error(path, ReadOptions(text_column="utterance"))
    assert located(err) == [(str(path), 1, "missing column(s) ['utterance']; columns found: label, text")]
    assert f"{path}:1: missing column(s) ['utterance']; columns found: label, text" in str(err)
    assert str(err).startswith(f"{path} is invalid: 1 problem(s)\n")


def test_both_configured_columns_missing(tmp_path):
    path = write(tmp_path, "intents.csv", "\n\nsentence,class\nhello,greet\n")
    err = read_error(path, ReadOptions(text_column="utterance", label_column="intent"))
    reason = "missing column(s) ['utterance', 'intent']; columns found: class, sentence"
    assert located(err) == [(str(path), 3, reason)]


def test_configured_column_names_are_read(tmp_path):
    path = write(tmp_path, "intents.csv", "id,utterance,intent\n1,hello there,greet\n2,bye now,leave\n")
    data = read_file(path, ReadOptions(text_column="utterance", label_column="intent"))
    assert [(ex.text, ex.labels) for ex in data.examples] == [("hello there", ("greet",)), ("bye now", ("leave",))]
    assert data.kind is DataKind.TEXT


def test_empty_text(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\ngood,pos\n   ,neg\n")
    err = read_error(path)
    assert located(err) == [(str(path), 3, "empty 'text'")]
    assert f"{path}:3: empty 'text'" in str(err)


def test_empty_label(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\ngood,pos\nbad,\nworse, \n")
    err = read_error(path)
    assert located(err) == [(str(path), 3, "empty label in 'label'"), (str(path), 4, "empty label in 'label'")]
    assert f"{path}:4: empty label in 'label'" in str(err)


def test_empty_part_of_a_multi_label_cell(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\ngood,pos|\n")
    assert located(read_error(path)) == [(str(path), 2, "empty label in 'label'")]


def test_wrong_field_count(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\ngood,pos\ntoo,many,fields\nfine,neg\nlonely\n")
    err = read_error(path)
    assert located(err) == [
        (str(path), 3, "expected 2 fields (text,label), got 3"),
        (str(path), 5, "expected 2 fields (text,label), got 1"),
    ]
    assert f"{path}:3: expected 2 fields (text,label), got 3" in str(err)


def test_unterminated_quote_is_reported_where_the_record_starts(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\nfine,pos\n"never closed,neg\nmore,pos\nstill more,neg\n')
    err = read_error(path)
    assert located(err) == [(str(path), 3, "expected 2 fields (text,label), got 1")]


def test_undecodable_bytes_are_reported_at_their_line(tmp_path):
    path = write(tmp_path, "d.csv", b"text,label\nok,pos\n\xff\xfe bad,neg\nfine,pos\n")
    err = read_error(path)
    assert located(err) == [(str(path), 3, "undecodable bytes (not UTF-8) at byte 0")]
    assert f"{path}:3: undecodable bytes (not UTF-8) at byte 0" in str(err)


def test_undecodable_bytes_inside_a_line_give_the_byte_offset(tmp_path):
    path = write(tmp_path, "d.jsonl", b'{"text": "ok", "label": "a"}\n{"text": "b\xff", "label": "a"}\n')
    assert located(read_error(path)) == [(str(path), 2, "undecodable bytes (not UTF-8) at byte 11")]


@pytest.mark.parametrize("content", ["", "\n\n", "  \n\t\n"])
@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.conll"])
def test_empty_file(tmp_path, name, content):
    path = write(tmp_path, name, content)
    err = read_error(path)
    assert located(err) == [(str(path), 1, "file is empty")]


def test_header_only_csv(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\n")
    err = read_error(path)
    assert located(err) == [(str(path), 1, "header only: no data rows")]
    assert f"{path}:1: header only: no data rows" in str(err)


def test_header_only_csv_with_a_wrong_header_reports_both(tmp_path):
    path = write(tmp_path, "d.csv", "\nsentence,label\n\n")
    err = read_error(path)
    assert located(err) == [
        (str(path), 2, "missing column(s) ['text']; columns found: label, sentence"),
        (str(path), 2, "header only: no data rows"),
    ]


def test_file_with_only_malformed_rows_is_not_called_header_only(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\na,b,c\n")
    assert located(read_error(path)) == [(str(path), 2, "expected 2 fields (text,label), got 3")]


def test_overlong_csv_field_is_reported_not_raised(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nok,pos\n" + "x" * 200_000 + ",neg\nfine,pos\n")
    err = read_error(path)
    assert located(err) == [(str(path), 3, "cannot parse this row: field larger than field limit (131072)")]


def test_missing_file():
    err = read_error(Path("/nonexistent/dir/train.csv"))
    assert located(err) == [("/nonexistent/dir/train.csv", 0, "file not found")]


def test_single_label_data_rejects_several_labels(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\none,a\ntwo,"[""a"", ""b""]"\n')
    err = read_error(path, ReadOptions(multi_label=False))
    assert located(err) == [(str(path), 3, "2 labels in single-label data")]


def test_several_errors_in_one_file_are_all_reported(tmp_path):
    rows = [
        "text,label",  # 1
        "good one,pos",  # 2
        ",neg",  # 3 empty text
        "good two,neg",  # 4
        "no label,",  # 5 empty label
        "a,b,c",  # 6 wrong field count
        "",  # 7 blank: skipped, not an error
        "good three,pos",  # 8
        "good four,neg",  # 9
        "x",  # 10 wrong field count
    ]
    path = write(tmp_path, "d.csv", "\n".join(rows) + "\n")
    err = read_error(path)
    assert sorted(located(err)) == [
        (str(path), 3, "empty 'text'"),
        (str(path), 5, "empty label in 'label'"),
        (str(path), 6, "expected 2 fields (text,label), got 3"),
        (str(path), 10, "expected 2 fields (text,label), got 1"),
    ]
    assert str(err).startswith(f"{path} is invalid: 4 problem(s)\n")
    # nothing dropped: the rows not reported are exactly the rows that read
    good = write(tmp_path, "good.csv", "\n".join(rows[i] for i in (0, 1, 3, 7, 8)) + "\n")
    data_rows = [r for r in rows[1:] if r]
    assert len(read_file(good)) + len(err.issues) == len(data_rows) == 8


def test_issue_list_is_capped_in_the_message_but_complete_on_the_error(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\n" + "".join(f"t{i},\n" for i in range(60)))
    err = read_error(path)
    assert len(err.issues) == 60
    assert [issue.line for issue in err.issues] == list(range(2, 62))
    assert "... and 10 more" in str(err)
    assert f"{path}:51: empty label" in str(err)
    assert f"{path}:52: empty label" not in str(err)


# --- CSV / TSV: happy paths -----------------------------------------------------------------------------------


def test_csv_single_label(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nI love it,positive\n\nmeh,negative\n")
    data = read_file(path)
    assert data.kind is DataKind.TEXT
    assert data.multi_label is False
    assert [(ex.text, ex.labels, ex.text_b, ex.source) for ex in data.examples] == [
        ("I love it", ("positive",), None, f"{path}:2"),
        ("meh", ("negative",), None, f"{path}:4"),
    ]
    assert data.path == str(path)


def test_tsv(tmp_path):
    path = write(tmp_path, "d.tsv", "text\tlabel\nhello, world\tgreet\n")
    data = read_file(path)
    assert [(ex.text, ex.labels) for ex in data.examples] == [("hello, world", ("greet",))]


def test_multi_label_json_list_cell(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\none,"[""sports"", ""news""]"\ntwo,"[""news""]"\n')
    data = read_file(path)
    assert data.multi_label is True
    assert [ex.labels for ex in data.examples] == [("sports", "news"), ("news",)]


def test_multi_label_separator(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\none,sports | news\ntwo,news\n")
    data = read_file(path)
    assert data.multi_label is True
    assert [ex.labels for ex in data.examples] == [("sports", "news"), ("news",)]


def test_custom_label_separator(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\none,sports;news\n")
    assert read_file(path, ReadOptions(label_separator=";")).examples[0].labels == ("sports", "news")


def test_separator_is_kept_when_multi_label_is_off(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\none,a|b\n")
    data = read_file(path, ReadOptions(multi_label=False))
    assert data.multi_label is False
    assert data.examples[0].labels == ("a|b",)


def test_pairs(tmp_path):
    path = write(tmp_path, "d.csv", "text_a,text_b,label\nA man sleeps,A person rests,entailment\n")
    data = read_file(path)
    assert data.kind is DataKind.PAIR
    ex = data.examples[0]
    assert (ex.text, ex.text_b, ex.labels) == ("A man sleeps", "A person rests", ("entailment",))
    assert ex.source == f"{path}:2"


def test_pairs_with_empty_second_text(tmp_path):
    path = write(tmp_path, "d.csv", "text_a,text_b,label\na,b,yes\nc,,no\n")
    assert located(read_error(path)) == [(str(path), 3, "empty 'text_b'")]


def test_quoted_fields_with_commas_and_newlines_keep_line_numbers(tmp_path):
    content = (
        "text,label\n"  # 1
        '"Hello, world",greet\n'  # 2
        '"first line\n'  # 3
        'second, line\n'  # 4
        'third line",multi\n'  # 5
        "after,x\n"  # 6
        "broken,\n"  # 7
        '"again\n'  # 8
        'two lines",\n'  # 9
    )
    path = write(tmp_path, "d.csv", content)
    err = read_error(path)
    assert located(err) == [(str(path), 7, "empty label in 'label'"), (str(path), 8, "empty label in 'label'")]
    fixed = write(tmp_path, "fixed.csv", content.replace("broken,\n", "broken,y\n").replace('lines",\n', 'lines",z\n'))
    data = read_file(fixed)
    assert [(ex.text, ex.source) for ex in data.examples] == [
        ("Hello, world", f"{fixed}:2"),
        ("first line\nsecond, line\nthird line", f"{fixed}:3"),
        ("after", f"{fixed}:6"),
        ("broken", f"{fixed}:7"),
        ("again\ntwo lines", f"{fixed}:8"),
    ]


def test_crlf_line_endings(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\r\nok,pos\r\nbad,\r\n")
    assert located(read_error(path)) == [(str(path), 3, "empty label in 'label'")]


def test_bom_at_file_start(tmp_path):
    path = write(tmp_path, "d.csv", "\ufefftext,label\nhello,greet\n,bye\n")
    assert located(read_error(path)) == [(str(path), 3, "empty 'text'")]
    ok = write(tmp_path, "ok.csv", "\ufefftext,label\nhello,greet\n")
    assert [(ex.text, ex.labels, ex.source) for ex in read_file(ok).examples] == [("hello", ("greet",), f"{ok}:2")]


def test_bom_in_jsonl(tmp_path):
    path = write(tmp_path, "d.jsonl", '\ufeff{"text": "hi", "label": "greet"}\n')
    assert [(ex.text, ex.labels) for ex in read_file(path).examples] == [("hi", ("greet",))]


# --- JSONL ----------------------------------------------------------------------------------------------------


def test_invalid_json_line(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "a", "label": }\nnot json\n')
    err = read_error(path)
    assert located(err) == [
        (str(path), 2, "invalid JSON: Expecting value (column 24)"),
        (str(path), 3, "invalid JSON: Expecting value (column 1)"),
    ]
    assert f"{path}:2: invalid JSON: Expecting value (column 24)" in str(err)


@pytest.mark.parametrize(("line", "type_name"), [('["a", "b"]', "list"), ('"text"', "str"), ("42", "int"),
                                                 ("null", "NoneType")])
def test_json_line_that_is_not_an_object(tmp_path, line, type_name):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n\n' + line + "\n")
    err = read_error(path)
    assert located(err) == [(str(path), 3, f"expected a JSON object, got {type_name}")]


def test_jsonl_missing_column_at_first_record(tmp_path):
    path = write(tmp_path, "d.jsonl", '\n{"utterance": "a", "label": "x"}\n')
    err = read_error(path)
    assert located(err) == [(str(path), 2, "missing column(s) ['text']; columns found: label, utterance")]


def test_jsonl_missing_label_in_a_later_record(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n{"label": "y"}\n')
    err = read_error(path)
    assert located(err) == [(str(path), 2, "missing 'label'"), (str(path), 3, "empty 'text'")]


def test_jsonl_labels(tmp_path):
    lines = [
        '{"text": "a", "label": 1}',
        '{"text": "b", "label": 0}',
        '{"text": "c", "label": "true"}',
        '{"text": "d", "label": " spaced "}',
    ]
    data = read_file(write(tmp_path, "d.jsonl", "\n".join(lines) + "\n"))
    assert [ex.labels for ex in data.examples] == [("1",), ("0",), ("true",), ("spaced",)]
    assert data.multi_label is False


def test_jsonl_whole_numbers_are_one_label_however_written(tmp_path):
    values = ["1", "1.0", "1e0", "-2.0", "0.5", "2.50", "1e20"]
    lines = [f'{{"text": "t{i}", "label": {v}}}' for i, v in enumerate(values)]
    data = read_file(write(tmp_path, "d.jsonl", "\n".join(lines) + "\n"))
    assert [ex.labels for ex in data.examples] == [
        ("1",), ("1",), ("1",), ("-2",), ("0.5",), ("2.5",), ("100000000000000000000",)]
    listed = read_file(write(tmp_path, "m.jsonl", '{"text": "a", "label": [1.0, 2, 0.25]}\n'))
    assert listed.examples[0].labels == ("1", "2", "0.25")


def test_csv_cells_are_taken_as_written(tmp_path):
    data = read_file(write(tmp_path, "d.csv", 'text,label\na,1.0\nb,1\nc,"[1.0, 2]"\n'), ReadOptions(multi_label=True))
    assert [ex.labels for ex in data.examples] == [("1.0",), ("1",), ("1", "2")]  # JSON list items are JSON numbers


NOT_A_LABEL = "label must be a string or a number, got"


@pytest.mark.parametrize(("label", "reason"), [
    ('{"x": 1}', f"""{NOT_A_LABEL} an object ({{"x": 1}}) in 'label'"""),
    ("true", f"""{NOT_A_LABEL} a boolean (true) in 'label'; quote it ("true") if it is a class name"""),
    ("false", f"""{NOT_A_LABEL} a boolean (false) in 'label'; quote it ("false") if it is a class name"""),
    ("NaN", f"{NOT_A_LABEL} a number that is not finite (NaN) in 'label'"),
    ("-Infinity", f"{NOT_A_LABEL} a number that is not finite (-Infinity) in 'label'"),
])
def test_jsonl_label_that_is_not_a_string_or_number(tmp_path, label, reason):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": ' + label + "}\n")
    err = read_error(path)
    assert located(err) == [(str(path), 2, reason)]
    assert f"{path}:2: {reason}" in str(err)


@pytest.mark.parametrize(("labels", "reason"), [
    ('["a", {"x": 1}]', f"""{NOT_A_LABEL} an object ({{"x": 1}}) as item 2 of the list in 'label'"""),
    ('["a", ["b"]]', f"""{NOT_A_LABEL} a list (["b"]) as item 2 of the list in 'label'"""),
    ('[true, "a"]', f"""{NOT_A_LABEL} a boolean (true) as item 1 of the list in 'label'; quote it ("true") if it \
is a class name"""),
    ('["a", null]', f"{NOT_A_LABEL} null as item 2 of the list in 'label'"),
])
def test_jsonl_multi_label_item_that_is_not_a_string_or_number(tmp_path, labels, reason):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": ["x"]}\n{"text": "b", "label": ' + labels + "}\n")
    assert located(read_error(path)) == [(str(path), 2, reason)]


def test_every_bad_label_is_reported_and_none_becomes_a_label(tmp_path):
    lines = [
        '{"text": "a", "label": ["x", "y"]}',
        '{"text": "b", "label": {"x": 1, "y": [1, 2, 3], "z": "a long value that is shortened in the message"}}',
        '{"text": "c", "label": ["x", false, {}]}',
        '{"text": "d", "label": "y"}',
        '{"text": "e", "label": [["x"]]}',
    ]
    err = read_error(write(tmp_path, "d.jsonl", "\n".join(lines) + "\n"))
    assert [(issue.line, issue.reason) for issue in err.issues] == [
        (2, f"""{NOT_A_LABEL} an object ({{"x": 1, "y": [1, 2, 3], "z": "a long value that is short...) in 'label'"""),
        (3, f"""{NOT_A_LABEL} a boolean (false) as item 2 of the list in 'label'; quote it ("false") if it is a \
class name"""),
        (3, f"{NOT_A_LABEL} an object ({{}}) as item 3 of the list in 'label'"),
        (5, f"""{NOT_A_LABEL} a list (["x"]) as item 1 of the list in 'label'"""),
    ]


def test_csv_json_list_cell_with_an_object(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\na,"[""x""]"\nb,"[""x"", {""y"": 2}]"\n')
    assert located(read_error(path)) == [(str(path), 3, f"""{NOT_A_LABEL} an object ({{"y": 2}}) as item 2 of \
the list in 'label'""")]


# --- the label column: "label", or "labels" when a file has only that --------------------------------------------


@pytest.mark.parametrize(("name", "content"), [
    ("d.jsonl", '{"text": "a", "labels": ["x", "y"]}\n{"text": "b", "labels": ["y"]}\n'),
    ("d.csv", 'text,labels\na,x|y\nb,"[""y""]"\n'),
    ("d.tsv", "labels\ttext\nx|y\ta\ny\tb\n"),
])
def test_a_labels_column_is_read_and_said(tmp_path, caplog, name, content):
    path = write(tmp_path, name, content)
    with caplog.at_level("INFO", logger="goldmine.data.readers"):
        data = read_file(path)
    assert [(ex.text, ex.labels) for ex in data.examples] == [("a", ("x", "y")), ("b", ("y",))]
    assert data.multi_label is True
    assert caplog.messages == [
        f"{path}: labels read from column 'labels' (no 'label' column; data.label_column names another)"]


def test_a_label_column_is_read_without_a_word(tmp_path, caplog):
    with caplog.at_level("INFO", logger="goldmine.data.readers"):
        read_file(write(tmp_path, "d.csv", "text,label\na,x\n"))
    assert caplog.messages == []


@pytest.mark.parametrize(("name", "content", "line"), [
    ("d.jsonl", '{"text": "a", "label": "x", "labels": ["x", "y"]}\n', 1),
    ("d.csv", "\ntext,label,labels\na,x,x|y\n", 2),
])
def test_label_and_labels_columns_together_are_refused_with_the_flag(tmp_path, name, content, line):
    path = write(tmp_path, name, content)
    reason = ("columns 'label' and 'labels' both found: say which holds the labels with data.label_column "
              "(--set data.label_column=NAME; `goldmine data check --label-column NAME`)")
    assert located(read_error(path)) == [(str(path), line, reason)]
    data = read_file(path, ReadOptions(label_column="labels"))  # named: no question
    assert data.examples[0].labels == ("x", "y")


def test_a_named_label_column_is_read_exactly(tmp_path):
    path = write(tmp_path, "d.csv", "text,labels\na,x\n")
    reason = "missing column(s) ['label']; columns found: labels, text"
    assert located(read_error(path, ReadOptions(label_column="label"))) == [(str(path), 1, reason)]


def test_no_label_column_names_the_setting(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "intent": "x"}\n')
    reason = ("missing column(s) ['label']; columns found: intent, text (data.label_column names the label column; "
              "'label' or 'labels' are found without it)")
    assert located(read_error(path)) == [(str(path), 1, reason)]


@pytest.mark.parametrize("label", ["null", "[]", '["a", ""]', '""'])
def test_jsonl_empty_labels(tmp_path, label):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": ' + label + "}\n")
    assert located(read_error(path)) == [(str(path), 2, "empty label in 'label'")]


def test_jsonl_multi_label_list(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": ["z"]}\n')
    data = read_file(path)
    assert data.multi_label is True
    assert [ex.labels for ex in data.examples] == [("x", "y"), ("z",)]


def test_jsonl_int_labels_in_list(tmp_path):
    data = read_file(write(tmp_path, "d.jsonl", '{"text": "a", "label": [3, 1]}\n'))
    assert data.examples[0].labels == ("3", "1")


def test_jsonl_pairs(tmp_path):
    path = write(tmp_path, "d.ndjson", '{"text_a": "q", "text_b": "a", "label": "yes"}\n')
    data = read_file(path)
    assert data.kind is DataKind.PAIR
    assert [(ex.text, ex.text_b, ex.labels) for ex in data.examples] == [("q", "a", ("yes",))]


def test_jsonl_several_errors_reported_together(tmp_path):
    lines = [
        '{"text": "fine", "label": "a"}',  # 1
        '{"text": "", "label": "a"}',  # 2 empty text
        "{broken",  # 3 invalid JSON
        '{"text": "fine again", "label": "b"}',  # 4
        "[1]",  # 5 not an object
        '{"text": "no label", "label": null}',  # 6 empty label
    ]
    path = write(tmp_path, "d.jsonl", "\n".join(lines) + "\n")
    err = read_error(path)
    assert sorted((issue.line, issue.reason.split(":")[0]) for issue in err.issues) == [
        (2, "empty 'text'"),
        (3, "invalid JSON"),
        (5, "expected a JSON object, got list"),
        (6, "empty label in 'label'"),
    ]
    assert len(err.issues) + 2 == len(lines)


# --- CoNLL ----------------------------------------------------------------------------------------------------


CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def test_conll_2003_takes_first_and_last_column_and_counts_documents(tmp_path):
    path = write(tmp_path, "train.txt", CONLL_2003)
    data = read_file(path)
    assert data.kind is DataKind.TOKENS
    assert [(ex.tokens, ex.tags, ex.document, ex.source) for ex in data.examples] == [
        (("EU", "rejects", "German", "call"), ("B-ORG", "O", "B-MISC", "O"), 0, f"{path}:3"),
        (("Peter", "Blackburn"), ("B-PER", "I-PER"), 0, f"{path}:8"),
        (("BRUSSELS",), ("B-LOC",), 1, f"{path}:13"),
    ]
    assert all("-DOCSTART-" not in ex.tokens for ex in data.examples)


def test_docstart_without_blank_lines_still_separates(tmp_path):
    content = "-DOCSTART- O\na B-X\n-DOCSTART- O\nb B-X\nc I-X\n-DOCSTART- O\n-DOCSTART- O\nd O\n"
    path = write(tmp_path, "d.conll", content)
    data = read_file(path)
    assert [(ex.tokens, ex.document) for ex in data.examples] == [(("a",), 0), (("b", "c"), 1), (("d",), 3)]


def test_sentences_before_the_first_docstart_are_their_own_document(tmp_path):
    path = write(tmp_path, "d.conll", "a O\n\nb O\n\n-DOCSTART- O\n\nc O\n")
    data = read_file(path)
    assert [(ex.tokens, ex.document) for ex in data.examples] == [(("a",), 0), (("b",), 0), (("c",), 1)]


def test_conll_without_docstart_is_document_zero(tmp_path):
    data = read_file(write(tmp_path, "d.conll", "a O\n\nb O\n"))
    assert [ex.document for ex in data.examples] == [0, 0]


def test_conll_tab_separated(tmp_path):
    data = read_file(write(tmp_path, "d.bio", "New\tB-LOC\nYork\tI-LOC\n"))
    assert [(ex.tokens, ex.tags) for ex in data.examples] == [(("New", "York"), ("B-LOC", "I-LOC"))]


@pytest.mark.parametrize("tag", ["PER", "X-PER", "B-", "b-per"])
def test_tag_not_in_the_scheme(tmp_path, tag):
    path = write(tmp_path, "d.conll", f"John B-PER\n\nMary {tag}\nsaid O\n")
    err = read_error(path)
    assert located(err) == [(str(path), 3, f"tag {tag!r} is not in the IOB/BIOES scheme (O, B-X, I-X, E-X, S-X)")]
    assert f"{path}:3: tag {tag!r} is not in the IOB/BIOES scheme" in str(err)


def test_conll_line_with_one_column(tmp_path):
    path = write(tmp_path, "d.conll", "John B-PER\nsmiles\n")
    err = read_error(path)
    assert located(err) == [(str(path), 2, "expected 'token tag', got 'smiles'")]


def test_strict_iob2_rejects_inside_tag_without_begin(tmp_path):
    path = write(tmp_path, "d.conll", "John B-PER\nSmith I-PER\n\nin O\nNew I-LOC\nYork I-LOC\nand O\nme I-PER\n")
    err = read_error(path, ReadOptions(scheme=Scheme.IOB2, strict=True))
    assert located(err) == [
        (str(path), 5, "tag 'I-LOC' continues no entity (no B- before it)"),
        (str(path), 8, "tag 'I-PER' continues no entity (no B- before it)"),
    ]
    assert f"{path}:5: tag 'I-LOC' continues no entity" in str(err)


def test_strict_with_auto_scheme_rejects_instead_of_repairing(tmp_path):
    # Dangling I- tags make a file look like IOB1; strict mode must not quietly convert it.
    path = write(tmp_path, "d.conll", "in O\nNew I-LOC\nYork I-LOC\n")
    err = read_error(path, ReadOptions(strict=True))
    assert located(err) == [(str(path), 2, "tag 'I-LOC' continues no entity (no B- before it)")]


def test_strict_accepts_a_file_declared_iob1(tmp_path):
    path = write(tmp_path, "d.conll", "in O\nNew I-LOC\nYork I-LOC\n")
    data = read_file(path, ReadOptions(scheme=Scheme.IOB1, strict=True))
    assert data.examples[0].tags == ("O", "B-LOC", "I-LOC")


def test_strict_line_numbers_stay_right_next_to_other_errors(tmp_path):
    path = write(tmp_path, "d.conll", "a O\nbroken\nb I-PER\nc PER\nd I-LOC\n")
    err = read_error(path, ReadOptions(scheme=Scheme.IOB2, strict=True))
    assert sorted((issue.line, issue.reason) for issue in err.issues) == [
        (2, "expected 'token tag', got 'broken'"),
        (3, "tag 'I-PER' continues no entity (no B- before it)"),
        (4, "tag 'PER' is not in the IOB/BIOES scheme (O, B-X, I-X, E-X, S-X)"),
        (5, "tag 'I-LOC' continues no entity (no B- before it)"),
    ]


def test_lenient_iob2_repairs_inside_tag_without_begin(tmp_path):
    path = write(tmp_path, "d.conll", "John B-PER\n\nNew I-LOC\nYork I-LOC\n")
    data = read_file(path, ReadOptions(scheme=Scheme.IOB2))
    assert [ex.tags for ex in data.examples] == [("B-PER",), ("B-LOC", "I-LOC")]


def test_iob1_input_is_normalised_to_iob2(tmp_path):
    path = write(tmp_path, "d.conll", "Peter I-PER\nBlackburn I-PER\nin O\nBonn I-LOC\n\nA I-ORG\nB B-ORG\n")
    expected = [("B-PER", "I-PER", "O", "B-LOC"), ("B-ORG", "B-ORG")]
    assert [ex.tags for ex in read_file(path).examples] == expected
    assert [ex.tags for ex in read_file(path, ReadOptions(scheme=Scheme.IOB1)).examples] == expected


def test_bioes_input_is_normalised_to_iob2(tmp_path):
    content = "New B-LOC\nYork E-LOC\nis O\nbig O\n\nAnna S-PER\nvon B-PER\nAlt I-PER\nBerg E-PER\n"
    path = write(tmp_path, "d.conll", content)
    expected = [("B-LOC", "I-LOC", "O", "O"), ("B-PER", "B-PER", "I-PER", "I-PER")]
    assert [ex.tags for ex in read_file(path).examples] == expected
    assert [ex.tags for ex in read_file(path, ReadOptions(scheme=Scheme.BIOES)).examples] == expected


def test_conll_several_errors_reported_together(tmp_path):
    content = "a O\nb X-PER\n\nc\n\nd B-LOC\ne O\n\nf PER\n"
    path = write(tmp_path, "d.conll", content)
    err = read_error(path)
    assert [issue.line for issue in err.issues] == [2, 4, 9]
    assert "3 problem(s)" in str(err)


def test_conll_undecodable_line(tmp_path):
    path = write(tmp_path, "d.conll", b"a O\n\xff\xfe B-PER\n")
    assert located(read_error(path)) == [(str(path), 2, "undecodable bytes (not UTF-8) at byte 0")]


# --- format detection -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.csv", "csv"), ("a.CSV", "csv"), ("a.tsv", "tsv"), ("a.jsonl", "jsonl"), ("a.json", "jsonl"),
     ("a.ndjson", "jsonl"), ("a.txt", "conll"), ("a.conll", "conll"), ("a.bio", "conll"), ("a.iob", "conll"),
     ("noext", "conll"), ("a.csv.txt", "conll")],
)
def test_detect_format(name, fmt):
    assert detect_format(Path(name)) == fmt


def test_explicit_format_overrides_the_suffix(tmp_path):
    path = write(tmp_path, "d.txt", "text\tlabel\nhi\tgreet\n")
    data = read_file(path, fmt="tsv")
    assert [(ex.text, ex.labels) for ex in data.examples] == [("hi", ("greet",))]


def test_unknown_format_name(tmp_path):
    path = write(tmp_path, "d.txt", "a O\n")
    with pytest.raises(ConfigError, match=r"unknown reader 'cvs'; choose one of \['conll', 'csv', 'jsonl', 'tsv'\] "
                                          r"\(did you mean 'csv'\?\)"):
        read_file(path, fmt="cvs")
