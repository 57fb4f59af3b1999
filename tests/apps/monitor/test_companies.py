"""Companies from the alias table (tickers, cashtags, names as whole words) and NER entities; the table alone works."""

from __future__ import annotations

import pytest

from goldmine.apps.monitor.companies import CompanyMatcher, read_alias_file
from goldmine.apps.monitor.config import Company
from goldmine.errors import ConfigError, DataError

TABLE = {"Acme Bank": Company(tickers=["ACB"], aliases=["Acme"]), "Acme Bank Holdings": Company(),
         "Apple": Company(tickers=["AAPL"], aliases=["Apple Inc"])}


def test_tickers_cashtags_and_names():
    match = CompanyMatcher(TABLE).companies
    assert match("Acme Bank Holdings raises dividend; Apple flat", ("acb",)) == [
        "Acme Bank", "Acme Bank Holdings", "Apple"]  # the ticker first, then the longest name that fits
    assert match("$AAPL and $TSLA up, pineapple down, ACME reports") == ["Apple", "TSLA", "Acme Bank"]
    assert match("Acmes and snapple", ()) == []  # whole words only
    assert CompanyMatcher(TABLE, unknown_tickers="drop").companies("$TSLA up", ("XYZ",)) == []


def test_ner_entities_join_the_table():
    match = CompanyMatcher(TABLE).companies
    assert match("results", (), ["apple inc", "Globex Corp.", "  "]) == ["Apple", "Globex Corp"]
    assert CompanyMatcher(TABLE, ner_unknown="drop").companies("results", (), ["Globex"]) == []


def test_alias_files(tmp_path):
    csv_file = tmp_path / "aliases.csv"
    csv_file.write_text("company,alias,ticker\nAgilent Technologies,Agilent,A\nAlcoa,,AA\n,Orphan,\n")
    with pytest.raises(DataError, match=r"aliases.csv:4: no company name"):
        read_alias_file(csv_file)
    csv_file.write_text("company,alias,ticker\nAgilent Technologies,Agilent,A\nAlcoa,,AA\nAgilent Technologies,,AGL\n")
    table = read_alias_file(csv_file)
    assert table["Agilent Technologies"] == Company(tickers=["A", "AGL"], aliases=["Agilent"])
    yaml_file = tmp_path / "aliases.yaml"
    yaml_file.write_text("Alcoa: {tickers: [AA]}\nBarrick: {aliases: [Barrick Gold]}\n")
    assert read_alias_file(yaml_file)["Barrick"].aliases == ["Barrick Gold"]
    (tmp_path / "bad.csv").write_text("name,alias\nx,y\n")
    with pytest.raises(ConfigError, match="bad.csv:1: the header needs a `company` column"):
        read_alias_file(tmp_path / "bad.csv")
