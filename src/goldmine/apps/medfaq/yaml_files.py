"""YAML files a customer edits beside the app config (the urgent rule list), validated with pydantic and reported as
`file:line: field: what is wrong`, so that a typo in rule 14 of 30 is found without reading a traceback (the app
config itself goes through `goldmine.apps.base.load_app_config`, which reports the same way).

pydantic knows where an error is in the data (`rules.13.patterns.2`), not in the file; the YAML node tree does. The
file is composed once for the line numbers and loaded once for the values, and each error's location is walked
down the node tree to the deepest node that exists (a missing field is reported at its parent mapping's line).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from goldmine.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: str | Path, model: type[M], what: str) -> M:
    """`model` validated from the YAML file at `path`; every problem in one `ConfigError`, each as
    `path:line: location: message`. `what` names the file in messages ("urgent rules", "medfaq config")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{path}:{line}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: {what} must be a YAML mapping (key: value lines), got "
                          f"{type(data).__name__ if data is not None else 'an empty file'}")
    try:
        return model.model_validate(data, context={"path": str(path)})
    except ValidationError as err:
        lines = []
        for error in err.errors():
            location = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{path}:{_line(node, error['loc'])}: {location}: {message}")
        raise ConfigError(f"invalid {what} ({len(lines)} problem(s)):\n  " + "\n  ".join(lines)) from None


def _line(node: yaml.Node | None, location: tuple) -> int:
    """The 1-based line of the deepest node along `location` (mapping keys and sequence indexes)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in location:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if getattr(key, "value", None) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line
