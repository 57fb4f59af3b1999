"""Chat data for decoder fine-tuning: JSONL conversations, validated turn by turn.

Two forms, one per line (a file holds one form or the other):

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}, ...]}
    {"prompt": "...", "response": "...", "system": "..."}          # system optional

The rules are those chat templates assume, checked here so that a bad conversation is reported with its file,
line and message number instead of failing inside a template or, worse, training on a prompt with no reply:
roles are system, user or assistant; a system message may only come first; after it, turns alternate user,
assistant, user, ... starting with the user; every content is a non-empty string; and the conversation ends with
the assistant (the reply to learn). Prompt length in tokens is checked where a tokenizer exists (the causal LM
task), with the same file:line.
"""

from __future__ import annotations

from goldmine.data.schema import ChatExample

ROLES = ("system", "user", "assistant")
MESSAGES, PROMPT, RESPONSE, SYSTEM = "messages", "prompt", "response", "system"


def is_chat_record(record: dict) -> bool:
    """Whether a JSONL record is a conversation (either form) rather than a labeled text."""
    return MESSAGES in record or (PROMPT in record and RESPONSE in record)


def chat_example(record: dict, source: str) -> tuple[ChatExample | None, list[str]]:
    """A record as a `ChatExample`, or None with every reason it is not a valid conversation."""
    if MESSAGES in record:
        turns, problems = _messages(record[MESSAGES])
    else:
        turns, problems = _prompt_response(record)
    if problems:
        return None, problems
    return ChatExample(tuple(turns), source), []


def _prompt_response(record: dict) -> tuple[list[tuple[str, str]], list[str]]:
    turns, problems = [], []
    for key, role in ((SYSTEM, "system"), (PROMPT, "user"), (RESPONSE, "assistant")):
        if key == SYSTEM and key not in record:
            continue
        value = record.get(key)
        if not isinstance(value, str):
            problems.append(f"'{key}' must be a string, got {_kind(value)}")
        elif not value.strip():
            problems.append(f"empty '{key}'")
        else:
            turns.append((role, value))
    return turns, problems


def _messages(value) -> tuple[list[tuple[str, str]], list[str]]:
    if not isinstance(value, list) or not value:
        shown = "an empty list" if isinstance(value, list) else _kind(value)
        return [], [f"'messages' must be a non-empty list of {{\"role\", \"content\"}} objects, got {shown}"]
    turns: list[tuple[str, str]] = []
    problems: list[str] = []
    for number, message in enumerate(value, start=1):
        where = f"message {number}"
        if not isinstance(message, dict):
            problems.append(f"{where}: expected an object with 'role' and 'content', got {_kind(message)}")
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            problems.append(f"{where}: unknown role {role!r} (roles: {', '.join(ROLES)})")
            continue
        if not isinstance(content, str):
            problems.append(f"{where}: 'content' must be a string, got {_kind(content)}")
            continue
        if not content.strip():
            problems.append(f"{where}: empty {role} turn")
            continue
        turns.append((role, content))
    if problems:
        return [], problems
    return turns, _order_problems(turns)


def _order_problems(turns: list[tuple[str, str]]) -> list[str]:
    """System first (if at all), then user and assistant alternating from the user, ending with the assistant."""
    problems = []
    start = 1 if turns[0][0] == "system" else 0
    expected = "user"
    for number, (role, _) in enumerate(turns[start:], start=start + 1):
        if role == "system":
            problems.append(f"message {number}: a system message may only come first")
            continue  # the turn order goes on as if it were not there
        elif role != expected:
            if number == start + 1:
                after = "after the system message" if start else "to open the conversation"
                problems.append(f"message {number}: expected a user turn {after}, got {role}")
            else:
                article = "an" if expected == "assistant" else "a"
                problems.append(f"message {number}: expected {article} {expected} turn, got {role} (turns alternate "
                                "user, assistant)")
        expected = "assistant" if role == "user" else "user"
    if not problems:
        if len(turns) == start:
            problems.append("no user or assistant turn: only a system message")
        elif turns[-1][0] != "assistant":
            problems.append("the conversation must end with the assistant's reply (the reply to learn); "
                            f"the last message is the {turns[-1][0]}'s")
    return problems


def _kind(value) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            str: "a string"}.get(type(value), "null")
