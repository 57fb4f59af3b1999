"""Chat JSONL: conversations in either form are read; every broken one is reported as file:line: reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from goldmine.data.readers import read_file
from goldmine.data.schema import DataKind
from goldmine.errors import DataError


def jsonl(tmp_path: Path, records: list) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def issues(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(DataError) as info:
        read_file(path)
    return [(issue.line, issue.reason) for issue in info.value.issues]


def turn(role, content):
    return {"role": role, "content": content}


def test_both_forms_are_read_as_conversations(tmp_path):
    path = jsonl(tmp_path, [
        {"messages": [turn("system", "Be brief."), turn("user", "Where is my order?"),
                      turn("assistant", "It ships today."), turn("user", "Thanks"), turn("assistant", "Welcome!")]},
        {"prompt": "Cancel my order", "response": "Done: order cancelled.", "system": "You are support."},
        {"prompt": "Hi", "response": "Hello!"},
    ])
    data = read_file(path)
    assert data.kind is DataKind.CHAT and len(data) == 3
    first, second, third = data.examples
    assert [role for role, _ in first.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert first.text == "Thanks" and first.source == f"{path}:1"
    assert second.as_dicts() == [turn("system", "You are support."), turn("user", "Cancel my order"),
                                 turn("assistant", "Done: order cancelled.")]
    assert third.messages == (("user", "Hi"), ("assistant", "Hello!"))
    assert data.label_names() == [] and not data.label_counts()


def test_every_broken_conversation_is_reported_at_its_line(tmp_path):
    good = {"messages": [turn("user", "a"), turn("assistant", "b")]}
    path = jsonl(tmp_path, [
        good,
        {"messages": [turn("user", "a"), turn("bot", "b")]},
        {"messages": [turn("user", "   "), turn("assistant", "b")]},
        {"messages": [turn("user", "a"), turn("assistant", "b"), turn("user", "c")]},
        {"messages": [turn("assistant", "hello"), turn("user", "a"), turn("assistant", "b")]},
        {"messages": [turn("user", "a"), turn("system", "late"), turn("assistant", "b")]},
        {"messages": []},
        {"messages": [turn("system", "only")]},
        {"messages": [turn("user", "a"), {"role": "assistant", "content": ["b"]}]},
        {"prompt": "a", "response": ""},
        {"text": "a labeled row", "label": "x"},
        good,
    ])
    assert issues(path) == [
        (2, "message 2: unknown role 'bot' (roles: system, user, assistant)"),
        (3, "message 1: empty user turn"),
        (4, "the conversation must end with the assistant's reply (the reply to learn); the last message is the "
            "user's"),
        (5, "message 1: expected a user turn to open the conversation, got assistant"),
        (6, "message 2: a system message may only come first"),
        (7, "'messages' must be a non-empty list of {\"role\", \"content\"} objects, got an empty list"),
        (8, "no user or assistant turn: only a system message"),
        (9, "message 2: 'content' must be a string, got a list"),
        (10, "empty 'response'"),
        (11, "expected a conversation ('messages', or 'prompt' and 'response') like the file's first record, got "
             "keys ['label', 'text']"),
    ]


def test_a_system_message_must_be_followed_by_the_user(tmp_path):
    path = jsonl(tmp_path, [{"messages": [turn("system", "s"), turn("assistant", "b")]}])
    assert issues(path) == [(1, "message 2: expected a user turn after the system message, got assistant")]


def test_two_user_turns_in_a_row_are_refused(tmp_path):
    path = jsonl(tmp_path, [{"messages": [turn("user", "a"), turn("user", "b"), turn("assistant", "c")]}])
    assert issues(path) == [(1, "message 2: expected an assistant turn, got user (turns alternate user, assistant)")]
