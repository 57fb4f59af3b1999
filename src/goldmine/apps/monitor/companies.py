"""Which companies an item mentions: the alias table the user provides, plus an NER model's entities when one is
configured. The alias table alone works.

Sources of a mention, in this order: the item's own tickers (its source tagged it), `$CASHTAGS` in the text, the
table's names and aliases as whole words (ignoring case), and NER entities of the configured types. A ticker or
an entity the table knows becomes the table's company; one it does not know stays a company of its own name
(upper-case for tickers), unless the config says to drop it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import yaml

from goldmine.apps.monitor.config import Company, MonitorConfig
from goldmine.errors import ConfigError, DataError, DataIssue

CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9.]{0,9})\b")


def read_alias_file(path: Path) -> dict[str, Company]:
    """An alias table from CSV (company,alias[,ticker]: one row per alias or ticker) or YAML (company -> {tickers,
    aliases}). Bad rows are reported together as file:line."""
    if not path.is_file():
        raise ConfigError(f"{path}: alias file not found")
    if path.suffix.lower() in (".yaml", ".yml"):
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of company -> {{tickers, aliases}}")
        try:
            return {str(name): Company.model_validate(entry or {}) for name, entry in tree.items()}
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from None
    table: dict[str, Company] = {}
    issues = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "company" not in reader.fieldnames:
            raise ConfigError(f"{path}:1: the header needs a `company` column (and `alias` and/or `ticker`)")
        for row in reader:
            name = (row.get("company") or "").strip()
            if not name:
                issues.append(DataIssue(str(path), reader.line_num, "no company name"))
                continue
            entry = table.setdefault(name, Company())
            if (alias := (row.get("alias") or "").strip()):
                entry.aliases.append(alias)
            if (ticker := (row.get("ticker") or "").strip()):
                entry.tickers.append(ticker)
    if issues:
        raise DataError(issues, f"invalid alias file {path}")
    return table


class CompanyMatcher:
    """Finds the companies of a text (and its tickers, and NER entities) with one compiled pattern."""

    def __init__(self, table: dict[str, Company], unknown_tickers: str = "keep", ner_unknown: str = "keep"):
        self.unknown_tickers = unknown_tickers
        self.ner_unknown = ner_unknown
        self.by_ticker: dict[str, str] = {}
        self.by_name: dict[str, str] = {}
        for company, entry in table.items():
            for ticker in entry.tickers:
                self.by_ticker[ticker.strip().lstrip("$").upper()] = company
            for name in [company, *entry.aliases]:
                if name.strip():
                    self.by_name[name.strip().casefold()] = company
        names = sorted(self.by_name, key=len, reverse=True)  # longest first: "Acme Bank" before "Acme"
        self.pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE) \
            if names else None

    @classmethod
    def from_config(cls, config: MonitorConfig) -> CompanyMatcher:
        table = dict(config.companies)
        if config.aliases_file:
            for name, entry in read_alias_file(config.path(config.aliases_file)).items():
                known = table.setdefault(name, Company())
                known.tickers += entry.tickers
                known.aliases += entry.aliases
        return cls(table, config.unknown_tickers, config.ner_unknown)

    def _ticker(self, ticker: str) -> str | None:
        ticker = ticker.upper()
        return self.by_ticker.get(ticker) or (ticker if self.unknown_tickers == "keep" else None)

    def companies(self, text: str, tickers: tuple[str, ...] = (), entities: list[str] | None = None) -> list[str]:
        """The companies mentioned, each once, in the order found."""
        found: list[str | None] = [self._ticker(t) for t in tickers]
        found += [self._ticker(m.group(1)) for m in CASHTAG.finditer(text)]
        if self.pattern is not None:
            found += [self.by_name[m.group(1).casefold()] for m in self.pattern.finditer(text)]
        for entity in entities or []:
            name = " ".join(entity.split()).strip(" .,;:'\"()")
            if not name:
                continue
            known = self.by_name.get(name.casefold()) or self.by_ticker.get(name.upper())
            found.append(known or (name if self.ner_unknown == "keep" else None))
        return [c for c in dict.fromkeys(found) if c]
