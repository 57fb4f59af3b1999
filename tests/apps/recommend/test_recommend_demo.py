"""The demo with the bundled encoder on its 36-book shop: readers get books from their own shelves, explained by
books they liked, and a new book is recommended to the readers of its shelf from its text alone."""

from __future__ import annotations

from goldmine.apps.recommend.data import read_items
from goldmine.apps.recommend.demo import NEW_BOOK, run_demo


def test_the_demo_recommends_from_the_readers_shelves_and_a_new_book_to_its_readers(tmp_path):
    shown = run_demo(tmp_path, users=("u0", "u1", "u2"), k=5)
    items, _ = read_items(shown["files"]["items"])
    shelf = {i.id: i.categories[0] for i in items} | {NEW_BOOK.id: NEW_BOOK.categories[0]}
    for user, answers in shown["recommendations"].items():
        fond = {shelf[i] for i in shown["liked"][user]}
        assert len(answers) == 5
        assert sum(shelf[a["item_id"]] in fond for a in answers[:3]) >= 2, (user, fond, answers)
        for answer in answers:
            assert {c["item_id"] for c in answer["explanation"]["similar_to"]} <= set(shown["liked"][user])
    assert len(shown["after_new_item"]) == 3
    for user, answers in shown["after_new_item"].items():  # readers of the new book's shelf alone
        ranked = [a["item_id"] for a in answers]
        assert NEW_BOOK.id in ranked, (user, answers)
        # only books of its own shelf (that the reader has not read yet) come before it
        assert {shelf[i] for i in ranked[: ranked.index(NEW_BOOK.id)]} <= {NEW_BOOK.categories[0]}
