"""Items, interactions and the files they come from.

An item is described by text (title, categories, tags, an optional description) and becomes one text that the
encoder embeds (`Item.text`); a user is the items they interacted with, in time order. A rating at or above the
like threshold is a like; any other rating marks an item as seen (it is not recommended again, and does not shape
the user's taste). An interaction without a rating (a click, a purchase) is a like.

Files:

    items        JSONL, CSV or TSV: id, title, categories, tags, description (categories and tags: a JSON list or
                 a "|"-separated string)
    interactions JSONL, CSV or TSV: user_id, item_id, rating (optional), timestamp (optional: line order)
    MovieLens    a directory with movies.csv, ratings.csv and tags.csv (GroupLens's ml-latest-small format)

A bad line is located as `file:line` with what is wrong. By default every bad line of a file is gathered into one
`DataError` (nothing is half loaded); with `strict=False` the good lines are kept and each bad one becomes a
counted warning in `ReadReport.issues`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from goldmine.data.readers import decoded_text, jsonl_records
from goldmine.errors import DataError, DataIssue

MAX_TAGS = 10  # tags kept in an item's text, most applied first: more rarely fit the encoder's length anyway
NO_GENRES = "(no genres listed)"  # MovieLens's marker of an item without genres


@dataclass(frozen=True)
class Item:
    """One recommendable item. `id` is the caller's own identifier (kept as a string)."""

    id: str
    title: str
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""

    def text(self) -> str:
        """The one text the encoder reads: "Title. Categories: a, b. Tags: x, y. Description"."""
        parts = [self.title.strip().rstrip(".") + "."]
        if self.categories:
            parts.append("Categories: " + ", ".join(self.categories) + ".")
        if self.tags:
            parts.append("Tags: " + ", ".join(self.tags) + ".")
        if self.description.strip():
            parts.append(self.description.strip())
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "categories": list(self.categories), "tags": list(self.tags),
                "description": self.description}

    @classmethod
    def from_dict(cls, record: dict) -> Item:
        return cls(str(record["id"]), record["title"], tuple(record.get("categories") or ()),
                   tuple(record.get("tags") or ()), record.get("description") or "")


@dataclass(frozen=True)
class Interaction:
    """A user's rating of (or other interaction with) an item at a time (any increasing number: epoch seconds)."""

    user_id: str
    item_id: str
    rating: float | None = None
    timestamp: float = 0.0


@dataclass
class ReadReport:
    """What a reader kept and what it left out (`strict=False`): each left-out line as a warning."""

    kept: int = 0
    issues: list[DataIssue] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.issues)


def is_like(interaction: Interaction, like_threshold: float) -> bool:
    return interaction.rating is None or interaction.rating >= like_threshold


def _records(path: Path, issues: list[DataIssue], header: str) -> list[tuple[int, dict]]:
    """(line number, record) of a JSONL, CSV or TSV file (CRLF endings and a byte-order mark are fine)."""
    if not path.is_file():
        raise DataError([DataIssue(str(path), 0, "file not found")], header=header)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        text = decoded_text(path, header)
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        rows = []
        for number, row in enumerate(reader, start=2):
            if None in row:  # more cells than the header has columns
                issues.append(DataIssue(str(path), number, f"{len(reader.fieldnames or [])} columns in the header, "
                                                           f"more on this line (an unquoted comma?)"))
                continue
            rows.append((number, row))
        return rows
    return jsonl_records(path, issues)


def _words(value, path: Path, number: int, name: str, issues: list[DataIssue]) -> tuple[str, ...] | None:
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split("|") if part.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    issues.append(DataIssue(str(path), number, f"{name}: expected a list of strings or a '|'-separated string"))
    return None


def _finish(issues: list[DataIssue], strict: bool, header: str, kept: int) -> ReadReport:
    if issues and strict:
        raise DataError(sorted(issues, key=lambda i: i.line), header=header)
    return ReadReport(kept, [DataIssue(i.path, i.line, i.reason, "warning") for i in issues])


def read_items(path: str | Path, strict: bool = True) -> tuple[list[Item], ReadReport]:
    """The items of a file (see the module docstring) and what was left out. An item needs an id and a title; an
    id used twice is an error on its second line."""
    path = Path(path)
    header = f"{path}: items that cannot be read"
    issues: list[DataIssue] = []
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for number, record in _records(path, issues, header):
        item_id, title = record.get("id"), record.get("title")
        if item_id in (None, "") or isinstance(item_id, (dict, list, bool)):
            issues.append(DataIssue(str(path), number, "no item id (column 'id')"))
            continue
        if not isinstance(title, str) or not title.strip():
            issues.append(DataIssue(str(path), number, "no title (column 'title')"))
            continue
        item_id = str(item_id)
        if item_id in first_line:
            issues.append(DataIssue(str(path), number, f"item id {item_id!r} already used on line "
                                                       f"{first_line[item_id]}"))
            continue
        categories = _words(record.get("categories"), path, number, "categories", issues)
        tags = _words(record.get("tags"), path, number, "tags", issues)
        description = record.get("description") or ""
        if categories is None or tags is None:
            continue
        if not isinstance(description, str):
            issues.append(DataIssue(str(path), number, "description: expected a string"))
            continue
        first_line[item_id] = number
        items.append(Item(item_id, title.strip(), categories, tags, description))
    if not items and not issues:
        issues.append(DataIssue(str(path), 1, "no items in the file"))
    return items, _finish(issues, strict, header, len(items))


def _number(value, name: str, path: Path, number: int, issues: list[DataIssue], default=None) -> float | None:
    if value in (None, ""):
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        issues.append(DataIssue(str(path), number, f"{name}: {value!r} is not a number"))
        return math.nan
    if not math.isfinite(result) or isinstance(value, bool):
        issues.append(DataIssue(str(path), number, f"{name}: {value!r} is not a finite number"))
        return math.nan
    return result


def read_interactions(path: str | Path, strict: bool = True, user_column: str = "user_id",
                      item_column: str = "item_id") -> tuple[list[Interaction], ReadReport]:
    """The interactions of a file (see the module docstring), in file order, and what was left out. Without a
    timestamp a line's number stands in, so the file's order is the time order. Items unknown to the catalog are
    not checked here: `Recommender.build` counts and skips them."""
    path = Path(path)
    header = f"{path}: interactions that cannot be read"
    issues: list[DataIssue] = []
    interactions: list[Interaction] = []
    for number, record in _records(path, issues, header):
        user, item = record.get(user_column), record.get(item_column)
        if user in (None, "") or item in (None, ""):
            missing = user_column if user in (None, "") else item_column
            issues.append(DataIssue(str(path), number, f"no {missing}"))
            continue
        before = len(issues)
        rating = _number(record.get("rating"), "rating", path, number, issues)
        timestamp = _number(record.get("timestamp"), "timestamp", path, number, issues, default=float(number))
        if len(issues) > before:
            continue
        interactions.append(Interaction(str(user), str(item), rating, timestamp))
    if not interactions and not issues:
        issues.append(DataIssue(str(path), 1, "no interactions in the file"))
    return interactions, _finish(issues, strict, header, len(interactions))


def read_movielens(directory: str | Path, strict: bool = True) -> tuple[list[Item], list[Interaction], ReadReport]:
    """Items (title, genres as categories, the most applied tags) and ratings of a MovieLens directory
    (ml-latest-small's movies.csv, ratings.csv and, if present, tags.csv).

    Two movies with the same title keep their own ids (and get the same text unless their tags differ). Tags are
    free text applied by users; they are taken as the item's description, as a catalog's keywords would be."""
    directory = Path(directory)
    issues: list[DataIssue] = []
    movies_path, ratings_path, tags_path = directory / "movies.csv", directory / "ratings.csv", directory / "tags.csv"
    tag_counts: dict[str, dict[str, int]] = {}
    if tags_path.is_file():
        for number, row in _records(tags_path, issues, f"{tags_path}: tags that cannot be read"):
            movie, tag = (row.get("movieId") or "").strip(), (row.get("tag") or "").strip().lower()
            if not movie or not tag:
                issues.append(DataIssue(str(tags_path), number, "no movieId or tag"))
                continue
            counts = tag_counts.setdefault(movie, {})
            counts[tag] = counts.get(tag, 0) + 1
    items: list[Item] = []
    seen: dict[str, int] = {}
    for number, row in _records(movies_path, issues, f"{movies_path}: movies that cannot be read"):
        movie, title = (row.get("movieId") or "").strip(), (row.get("title") or "").strip()
        if not movie or not title:
            issues.append(DataIssue(str(movies_path), number, "no movieId or title"))
            continue
        if movie in seen:
            issues.append(DataIssue(str(movies_path), number, f"movieId {movie} already used on line {seen[movie]}"))
            continue
        seen[movie] = number
        genres = tuple(g for g in (row.get("genres") or "").split("|") if g and g != NO_GENRES)
        counts = tag_counts.get(movie, {})
        tags = tuple(sorted(counts, key=lambda t: (-counts[t], t))[:MAX_TAGS])
        items.append(Item(movie, title, genres, tags))
    interactions: list[Interaction] = []
    for number, row in _records(ratings_path, issues, f"{ratings_path}: ratings that cannot be read"):
        user, movie = (row.get("userId") or "").strip(), (row.get("movieId") or "").strip()
        if not user or not movie:
            issues.append(DataIssue(str(ratings_path), number, "no userId or movieId"))
            continue
        before = len(issues)
        rating = _number(row.get("rating"), "rating", ratings_path, number, issues)
        timestamp = _number(row.get("timestamp"), "timestamp", ratings_path, number, issues, default=float(number))
        if len(issues) > before or rating is None:
            if rating is None:
                issues.append(DataIssue(str(ratings_path), number, "no rating"))
            continue
        interactions.append(Interaction(user, movie, rating, timestamp))
    report = _finish(issues, strict, f"{directory}: MovieLens files that cannot be read", len(interactions))
    return items, interactions, report


def time_ordered(interactions: Iterable[Interaction]) -> dict[str, list[Interaction]]:
    """Each user's interactions, oldest first (ties keep the given order)."""
    users: dict[str, list[Interaction]] = {}
    for interaction in interactions:
        users.setdefault(interaction.user_id, []).append(interaction)
    return {user: sorted(rows, key=lambda i: i.timestamp) for user, rows in users.items()}
