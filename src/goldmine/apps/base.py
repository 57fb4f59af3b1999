"""What every app shares: its spec in the `APPS` registry, and its config, one YAML file per app and tenant.

An app config names the models (and indexes) the app uses by their serving-registry name and a version id or an
alias, never by a path: a customer swaps in their own fine-tuned model by registering it and editing one line
(or by promoting the alias the config names, with no edit at all). The file is validated on load (pydantic: every
problem as `file:line: field: what is wrong`), and `resolve_models` checks each reference against the registry,
so a version that does not exist is an error that names the config line, not a failed request later.

    app: monitor                 # which app (goldmine app list)
    tenant: acme                 # whose registered models it uses; that tenant's keys call it over HTTP
    models:
      sentiment: {name: fin-sentiment, version: production}
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from goldmine.errors import ConfigError


class ModelRef(BaseModel):
    """A model of the serving registry, by name and version or alias."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Model name in the serving registry (`goldmine "
                      "models list`), owned by the config's tenant.")
    version: str = Field("production", min_length=1, max_length=64, description="A version id (content hash) or "
                         "an alias such as production or staging; an alias follows promotions without an edit.")


class IndexRef(ModelRef):
    """A search index built over a registered model version (`goldmine index build`, then register the model)."""

    index: str = Field(min_length=1, max_length=128, description="Index name inside that model version.")


class AppConfig(BaseModel):
    """The fields every app config has; each app subclasses it with its own (its models, rules, sinks...)."""

    model_config = ConfigDict(extra="forbid")
    app_name: ClassVar[str] = ""  # set by each subclass: the `app:` value its files carry

    app: str = Field(description="The app this file configures (`goldmine app list`).")
    tenant: str = Field(min_length=1, max_length=64, description="The tenant whose registered models the app uses; "
                        "over HTTP this tenant's keys call the app (its own config: another tenant has its own file).")
    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> str:
        """The file this config was read from (for messages), or `<inline>`."""
        return str(self._source) if self._source else "<inline>"

    def path(self, value: str | Path) -> Path:
        """A path written in the config, relative to the config file's directory."""
        value = Path(value)
        if value.is_absolute() or self._source is None:
            return value
        return self._source.parent / value

    def model_refs(self) -> dict[str, ModelRef]:
        """Every model reference in the config by its dotted field name (`models.sentiment`); unset ones left out."""
        found: dict[str, ModelRef] = {}

        def walk(node: Any, prefix: str) -> None:
            if isinstance(node, ModelRef):
                found[prefix] = node
            elif isinstance(node, BaseModel):
                for name in type(node).model_fields:
                    walk(getattr(node, name), f"{prefix}.{name}" if prefix else name)
            elif isinstance(node, dict):
                for key, value in node.items():
                    walk(value, f"{prefix}.{key}")

        walk(self, "")
        return found

    def line_of(self, field: str) -> int | None:
        """The line of a dotted field in the config file, when there is a file."""
        return yaml_line(self._source, field.split(".")) if self._source else None

    def where(self, field: str) -> str:
        line = self.line_of(field)
        return f"{self.source}:{line}" if line else self.source


@dataclass(frozen=True)
class AppSpec:
    """An app as the registry knows it. The CLI, router and background task are named as `module:attribute` (or
    given as objects) and imported only when used, so listing apps or loading a config imports neither Typer
    commands nor FastAPI."""

    name: str
    summary: str
    config: type[AppConfig]
    cli: Any  # a typer.Typer: `goldmine app <name> ...`
    router: Any  # a fastapi.APIRouter with prefix /v1/apps/<name>
    background: Any = None  # async fn(services, configs) run by `goldmine serve` while it serves (or None)

    def load(self, what: str) -> Any:
        value = getattr(self, what)
        if not isinstance(value, str):
            return value
        module, _, attribute = value.partition(":")
        return getattr(import_module(module), attribute)


def get_app(name: str) -> AppSpec:
    """The registered app `name` (ConfigError naming the apps there are otherwise)."""
    from goldmine.apps import APPS

    return APPS.get(name)


def app_names() -> list[str]:
    from goldmine.apps import APPS

    return APPS.names()


def yaml_line(path: Path | None, loc: list | tuple) -> int | None:
    """The 1-based line of the YAML node at `loc` (keys and list indexes) in `path`: the deepest one found (for a
    mapping entry, the line of its key)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: app config file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: an app config is a mapping (app: ..., tenant: ..., models: ...)")
    return tree


def load_app_config(path: str | Path, app: str | None = None) -> AppConfig:
    """Read and validate an app config; `app` (if given) is the app it must configure.

    Every problem is reported at once as `file:line: field: message`. Model references are not checked here
    (that needs the database): `resolve_models` does it.
    """
    path = Path(path)
    tree = _read_yaml(path)
    name = tree.get("app")
    if not isinstance(name, str):
        raise ConfigError(f"{path}:{yaml_line(path, []) or 1}: app: missing; name the app this file configures "
                          f"(one of {app_names()})")
    try:
        spec = get_app(name)
    except ConfigError as err:
        raise ConfigError(f"{path}:{yaml_line(path, ['app'])}: app: {err}") from None
    if app is not None and name != app:
        raise ConfigError(f"{path}:{yaml_line(path, ['app'])}: app: this file configures {name!r}, not {app!r}")
    try:
        config = spec.config.model_validate(tree)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            line = yaml_line(path, loc)
            field = ".".join(str(p) for p in loc) or "config"
            problems.append(f"{path}:{line}: {field}: {e['msg']}" if line else f"{path}: {field}: {e['msg']}")
        raise ConfigError(f"invalid {name} app config:\n  " + "\n  ".join(problems)) from None
    config._source = path
    return config


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference as the registry resolves it now."""

    field: str  # dotted config field, e.g. models.sentiment
    name: str
    version: str  # the version id the reference points to now
    path: str  # its immutable registry copy


def resolve_models(config: AppConfig, db) -> dict[str, ResolvedModel]:
    """Resolve every model reference of `config` under its tenant; a reference to a model, version or alias the
    registry does not have raises one ConfigError naming the config line and what does exist."""
    from goldmine.serving.errors import NotFound
    from goldmine.serving.registry import resolve

    resolved, problems = {}, []
    with db.session() as session:
        for field, ref in config.model_refs().items():
            try:
                row = resolve(session, ref.name, ref.version, config.tenant)
            except NotFound as err:
                problems.append(f"{config.where(field)}: {field}: {err}{_choices(session, ref.name, config.tenant)}")
                continue
            resolved[field] = ResolvedModel(field, ref.name, row.version, row.path)
    if problems:
        raise ConfigError(f"{config.app} app config names models the registry does not have:\n  "
                          + "\n  ".join(problems))
    return resolved


def load_models(config: AppConfig, db) -> tuple[dict[str, ResolvedModel], dict[str, Any]]:
    """`resolve_models`, then every set model reference loaded from its registry copy, by dotted field name: two
    fields naming the same version share one loaded model. Returns (resolved, loaded)."""
    from goldmine.inference.model import Model

    resolved = resolve_models(config, db)
    by_path: dict[str, Any] = {}
    for item in resolved.values():
        if item.path not in by_path:
            by_path[item.path] = Model.load(item.path)
    return resolved, {field: by_path[item.path] for field, item in resolved.items()}


def _choices(session, name: str, tenant: str) -> str:
    """What the registry has for `name` (its versions and aliases), or how to register a model."""
    from sqlalchemy import select

    from goldmine.serving.db import ModelAlias, ModelVersion, RegisteredModel

    model = session.get(RegisteredModel, name)
    if model is None or model.tenant_id != tenant:
        return f" of tenant {tenant!r}: register one with `goldmine models register {name} RUN_DIR --tenant {tenant}`"
    versions = session.scalars(select(ModelVersion.version).where(ModelVersion.model_name == name)).all()
    aliases = session.scalars(select(ModelAlias.alias).where(ModelAlias.model_name == name)).all()
    return f" (versions: {', '.join(versions) or 'none'}; aliases: {', '.join(sorted(aliases)) or 'none'})"
