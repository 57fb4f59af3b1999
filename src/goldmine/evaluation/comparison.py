"""The before-vs-after table every training run ends with, on the same test data."""

from __future__ import annotations

from rich.table import Table

from goldmine.evaluation.evaluate import headline


def before_after(rows: dict[str, dict]) -> dict[str, dict[str, float]]:
    """{row name: full metrics} -> {row name: headline metrics}, in the given order."""
    return {name: headline(metrics) for name, metrics in rows.items() if metrics is not None}


def as_table(table: dict[str, dict[str, float]], title: str) -> Table:
    columns = list(next(iter(table.values())))
    out = Table(title=title)
    out.add_column("model")
    for c in columns:
        out.add_column(c, justify="right")
    for name, values in table.items():
        out.add_row(name, *(f"{values[c]:.4f}" for c in columns))
    return out


def as_markdown(table: dict[str, dict[str, float]], title: str) -> str:
    columns = list(next(iter(table.values())))
    lines = [f"### {title}", "", "| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(f"{v[c]:.4f}" for c in columns) + " |" for name, v in table.items()]
    return "\n".join(lines) + "\n"
