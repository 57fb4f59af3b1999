"""Reading a catalog and its interactions: one text per item, every bad line located as file:line, MovieLens's CRLF
files read as they are."""

from __future__ import annotations

import json

import pytest

from goldmine.apps.recommend.data import Interaction, Item, read_interactions, read_items, read_movielens
from goldmine.apps.recommend.demo import write_demo_data
from goldmine.errors import DataError


def test_an_item_becomes_one_text_with_its_fields():
    item = Item("1", "Heat (1995)", ("Action", "Crime"), ("heist", "al pacino"), "Two men, one city.")
    assert item.text() == "Heat (1995). Categories: Action, Crime. Tags: heist, al pacino. Two men, one city."
    assert Item("2", "Plain.").text() == "Plain."
    assert Item.from_dict(item.to_dict()) == item


def test_items_from_jsonl_and_csv_with_lists_or_pipe_separated_fields(tmp_path):
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(json.dumps({"id": 7, "title": "Heat", "categories": ["Crime"], "tags": "heist|city"}) + "\n")
    items, report = read_items(jsonl)
    assert items == [Item("7", "Heat", ("Crime",), ("heist", "city"))] and report.kept == 1 and not report.skipped
    csv = tmp_path / "items.csv"
    csv.write_bytes(b'id,title,categories,description\r\n1,"Heat, the film",Crime|Drama,Long.\r\n')
    [item], _ = read_items(csv)
    assert item == Item("1", "Heat, the film", ("Crime", "Drama"), (), "Long.")


def test_every_bad_item_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join([json.dumps({"id": "a", "title": "A"}), "{not json", json.dumps({"id": "b"}),
                               json.dumps({"id": "a", "title": "again"}), json.dumps({"id": "c", "title": "C",
                                                                                     "tags": [1, 2]})]) + "\n")
    with pytest.raises(DataError) as err:
        read_items(path)
    message = str(err.value)
    assert f"{path}:2: invalid JSON" in message
    assert f"{path}:3: no title" in message
    assert f"{path}:4: item id 'a' already used on line 1" in message
    assert f"{path}:5: tags: expected a list of strings" in message
    items, report = read_items(path, strict=False)  # the good lines kept, each bad one a counted warning
    assert [i.id for i in items] == ["a"] and report.skipped == 4
    assert {i.severity for i in report.issues} == {"warning"}


def test_interactions_with_bad_lines_and_without_timestamps(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user_id,item_id,rating\nu1,a,5\nu1,,4\nu2,b,high\nu2,c\nu3,d,4,extra\n")
    with pytest.raises(DataError) as err:
        read_interactions(path)
    message = str(err.value)
    assert f"{path}:3: no item_id" in message and f"{path}:4: rating: 'high' is not a number" in message
    assert f"{path}:6: 3 columns in the header" in message
    rows, report = read_interactions(path, strict=False)
    # no timestamp: the line number stands in, so the file order is the time order; no rating: a like
    assert rows == [Interaction("u1", "a", 5.0, 2.0), Interaction("u2", "c", None, 5.0)]
    assert report.skipped == 3
    with pytest.raises(DataError, match="file not found"):
        read_interactions(tmp_path / "missing.csv")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_interactions(tmp_path / "empty.jsonl")


def test_movielens_files_with_crlf_tags_and_a_bad_rating(tmp_path):
    (tmp_path / "movies.csv").write_bytes(b'movieId,title,genres\r\n1,Toy Story (1995),Animation|Children\r\n'
                                          b'2,"Heat, Again (1995)",(no genres listed)\r\n')
    (tmp_path / "tags.csv").write_bytes(b"userId,movieId,tag,timestamp\r\n1,1,Pixar,1\r\n2,1,pixar,2\r\n"
                                        b"2,1,fun,3\r\n")
    (tmp_path / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\r\n1,1,4.0,10\r\n1,2,x,11\r\n"
                                           b"2,2,3.5,12\r\n")
    with pytest.raises(DataError, match=r"ratings.csv:3: rating: 'x' is not a number"):
        read_movielens(tmp_path)
    items, interactions, report = read_movielens(tmp_path, strict=False)
    assert items == [Item("1", "Toy Story (1995)", ("Animation", "Children"), ("pixar", "fun")),
                     Item("2", "Heat, Again (1995)")]
    assert interactions == [Interaction("1", "1", 4.0, 10.0), Interaction("2", "2", 3.5, 12.0)]
    assert report.skipped == 1


def test_the_demo_writes_the_same_readable_files_for_a_seed(tmp_path):
    first = write_demo_data(tmp_path / "a")
    second = write_demo_data(tmp_path / "b")
    assert first.items.read_bytes() == second.items.read_bytes()
    assert first.interactions.read_bytes() == second.interactions.read_bytes()
    items, _ = read_items(first.items)
    interactions, _ = read_interactions(first.interactions)
    assert len(items) == 36 and all(i.description for i in items)
    assert len({i.user_id for i in interactions}) == 40
    assert {i.item_id for i in interactions} <= {i.id for i in items}
