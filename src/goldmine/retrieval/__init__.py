"""Retrieval: search a corpus by meaning with a goldmine encoder (`goldmine.retrieval.index`)."""
