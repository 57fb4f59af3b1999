"""The small exception hierarchy every layer raises; the CLI (and later the HTTP layer) maps it in one place."""

from __future__ import annotations

from dataclasses import dataclass


class GoldmineError(Exception):
    """Base class: a problem the user can act on. The message says where and what to do."""


class ConfigError(GoldmineError):
    """A configuration value is invalid; the message names the field."""


class ModelError(GoldmineError):
    """A model directory or base model cannot be loaded or is incomplete."""


class InputError(GoldmineError):
    """Inputs that do not fit the model they were given to (e.g. text pairs to a single-text model)."""


@dataclass(frozen=True)
class DataIssue:
    """One problem found in an input file, located as `file:line`."""

    path: str
    line: int
    reason: str
    severity: str = "error"  # "error" stops the run; "warning" is counted and shown

    @classmethod
    def at(cls, source: str, reason: str, offset: int = 0, severity: str = "error") -> DataIssue:
        """An issue at a record's `source` ("path:line"), `offset` lines further down."""
        path, _, line = source.rpartition(":")
        return cls(path or source, (int(line) if line.isdigit() else 0) + offset, reason, severity)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class DataError(GoldmineError):
    """One or more input rows are invalid. Carries every issue found, not just the first."""

    def __init__(self, issues: list[DataIssue], header: str = "invalid input data"):
        self.issues = list(issues)
        shown = "\n".join(f"  {issue}" for issue in self.issues[:50])
        more = f"\n  ... and {len(self.issues) - 50} more" if len(self.issues) > 50 else ""
        super().__init__(f"{header}: {len(self.issues)} problem(s)\n{shown}{more}")
