"""The model registry: names owned by tenants, immutable content-addressed versions, aliases with rollback.

`register(name, model_dir)` hashes the directory's content (training leftovers `checkpoints/` and `logs/`
excluded; an ensemble's members included) and copies it to `<registry_dir>/<version>/`, so a version never
changes under a running server; the copies are owner-only (0700 directories, 0600 files: a tenant's
weights). Registering identical content again returns the same version. The first version of a model becomes
its `production` alias; later ones are promoted explicitly. Every promotion is kept in `alias_history`;
`rollback` undoes the latest promotion not yet undone, so repeated rollbacks walk back through the history
like a stack.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from goldmine.errors import ConfigError
from goldmine.inference.model import META_FILE, RunMeta
from goldmine.serving.db import AliasChange, Database, ModelAlias, ModelVersion, RegisteredModel, Tenant, utcnow
from goldmine.serving.errors import Conflict, NotFound
from goldmine.serving.private import private_dir, private_tree

SKIPPED_DIRS = {"checkpoints", "logs", "__pycache__"}
# search indexes built over a model (goldmine.retrieval.index) are served with it but are not part of its version:
# adding entries to an index does not make a new model
UNHASHED_DIRS = SKIPPED_DIRS | {"indexes"}
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
VERSION_CHARS = 16  # hex digits of sha256 kept as the version: 64 bits, no collision in any real registry


@dataclass
class VersionInfo:
    model: str
    version: str
    path: str
    task: str
    created: bool  # False when identical content was registered before


@dataclass
class ModelInfo:
    name: str
    tenant: str
    task: str
    versions: list[dict] = field(default_factory=list)  # [{"version", "created_at"}], oldest first
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass
class AliasMove:
    model: str
    alias: str
    previous: str | None
    current: str


def check_name(value: str, what: str = "model name") -> str:
    if not NAME.match(value):
        raise ConfigError(f"{what} {value!r} must be lowercase letters, digits, '.', '_' or '-' (max 128)")
    return value


def _files(directory: Path, members: list[Path]) -> list[Path]:
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not path.is_file() or UNHASHED_DIRS.intersection(rel.parts[:-1]):
            continue
        if any(path.resolve().is_relative_to(m) for m in members):
            continue  # an ensemble member inside the directory: hashed as a member
        out.append(path)
    return out


def content_hash(model_dir: str | Path) -> str:
    """sha256 over relative paths and bytes of the files that make the model (ensemble members included)."""
    directory = Path(model_dir)
    meta = RunMeta.load(directory)
    members = [(directory / m).resolve() for m in meta.members]
    digest = hashlib.sha256()
    for path in _files(directory, members):
        if path.name == META_FILE and meta.members:
            continue  # member paths are local detail; the members' own content is hashed below
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    if meta.members:
        digest.update(json.dumps({k: v for k, v in meta.__dict__.items() if k != "members"}, sort_keys=True).encode())
        for member in meta.members:
            digest.update(b"member:" + content_hash(directory / member).encode())
    return digest.hexdigest()[:VERSION_CHARS]


def _copy_model(source: Path, target: Path) -> None:
    """Copy a model directory without training leftovers; ensemble members become `member-<i>/` inside it."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*SKIPPED_DIRS))
    meta = RunMeta.load(source)
    if meta.members:
        for i, member in enumerate(meta.members):
            _copy_model(source / member, target / f"member-{i}")
        meta.members = [f"member-{i}" for i in range(len(meta.members))]
        meta.save(target)


def _store(registry_dir: Path, model_dir: Path, version: str) -> Path:
    target = registry_dir / version
    if not target.is_dir():
        private_dir(registry_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=registry_dir))  # 0700: private while it fills
        _copy_model(model_dir, staging / "model")
        private_tree(staging / "model")  # copytree kept the source's modes (often world-readable)
        try:
            (staging / "model").rename(target)  # atomic: a version directory is complete or absent
        except OSError:
            if not target.is_dir():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        _refresh_indexes(model_dir, target)
    return target.resolve()


def _refresh_indexes(model_dir: Path, target: Path) -> None:
    """Registering a model version again brings its indexes up to date (each replaced whole, by renames)."""
    source = model_dir / "indexes"
    if not source.is_dir():
        return
    (target / "indexes").mkdir(exist_ok=True)
    for index in sorted(p for p in source.iterdir() if p.is_dir()):
        staging = Path(tempfile.mkdtemp(prefix=f".{index.name}-", dir=target / "indexes"))
        shutil.copytree(index, staging / "new")
        private_tree(staging / "new")
        current = target / "indexes" / index.name
        if current.is_dir():
            current.rename(staging / "old")
        (staging / "new").rename(current)
        shutil.rmtree(staging, ignore_errors=True)


def ensure_tenant(session: Session, tenant: str, plan: str | None = None) -> Tenant:
    """The tenant row, created on first use (on the `default` plan unless `plan` is given)."""
    check_name(tenant, "tenant")
    row = session.get(Tenant, tenant)
    if row is None:
        row = Tenant(id=tenant, plan=plan or "default", created_at=utcnow())
        session.add(row)
        session.flush()
    elif plan is not None:
        row.plan = plan
    return row


def register(db: Database, registry_dir: str | Path, name: str, model_dir: str | Path, tenant: str,
             first_alias: str | None = "production") -> VersionInfo:
    """Register `model_dir` as a version of `name` owned by `tenant`; the first version becomes `first_alias`
    (`production`; None: no alias, as for the versions fine-tuning jobs register)."""
    check_name(name)
    model_dir = Path(model_dir)
    meta = RunMeta.load(model_dir)
    version = content_hash(model_dir)
    path = _store(Path(registry_dir), model_dir, version)  # before the transaction: no lock held while copying
    with db.session() as session:
        ensure_tenant(session, tenant)
        model = session.get(RegisteredModel, name)
        if model is None:
            model = RegisteredModel(name=name, tenant_id=tenant, created_at=utcnow())
            session.add(model)
            session.flush()
        elif model.tenant_id != tenant:
            raise Conflict(f"model {name!r} belongs to another tenant; choose another name")
        existing = session.scalar(select(ModelVersion).where(ModelVersion.model_name == name,
                                                             ModelVersion.version == version))
        if existing is not None:
            return VersionInfo(name, version, existing.path, existing.task, created=False)
        session.add(ModelVersion(model_name=name, version=version, path=str(path), task=meta.task,
                                 created_at=utcnow()))
        session.flush()
        if first_alias is not None and session.get(ModelAlias, (name, first_alias)) is None:
            _move_alias(session, name, first_alias, version)
    return VersionInfo(name, version, str(path), meta.task, created=True)


def _move_alias(session: Session, name: str, alias: str, version: str) -> str | None:
    row = session.get(ModelAlias, (name, alias))
    previous = row.version if row else None
    now = utcnow()
    if row is None:
        session.add(ModelAlias(model_name=name, alias=alias, version=version, updated_at=now))
    else:
        row.version, row.updated_at = version, now
    session.add(AliasChange(model_name=name, alias=alias, version=version, previous_version=previous, created_at=now))
    return previous


def get_model(session: Session, name: str, tenant: str | None) -> RegisteredModel:
    """The model `name` as `tenant` may see it (None: any tenant, for operators). Unknown or foreign: NotFound."""
    model = session.get(RegisteredModel, name)
    if model is None or (tenant is not None and model.tenant_id != tenant):
        raise NotFound(f"no model named {name!r}")
    return model


def resolve(session: Session, name: str, ref: str, tenant: str | None = None) -> ModelVersion:
    """The version an alias or a version id of model `name` points to."""
    get_model(session, name, tenant)
    alias = session.get(ModelAlias, (name, ref))
    version = alias.version if alias else ref
    row = session.scalar(select(ModelVersion).where(ModelVersion.model_name == name, ModelVersion.version == version))
    if row is None:
        raise NotFound(f"model {name!r} has no alias or version {ref!r}")
    return row


def promote(db: Database, name: str, target: str, alias: str = "production", tenant: str | None = None) -> AliasMove:
    """Point `alias` of `name` at `target` (a version, or another alias such as `staging`)."""
    check_name(alias, "alias")
    with db.session() as session:
        version = resolve(session, name, target, tenant).version
        current = session.get(ModelAlias, (name, alias))
        if current is not None and current.version == version:
            return AliasMove(name, alias, version, version)
        previous = _move_alias(session, name, alias, version)
    return AliasMove(name, alias, previous, version)


def _last_promotion(session: Session, name: str, alias: str) -> AliasChange:
    last = session.scalar(
        select(AliasChange)
        .where(AliasChange.model_name == name, AliasChange.alias == alias, AliasChange.rolled_back_at.is_(None))
        .order_by(AliasChange.id.desc())
        .limit(1)
    )
    if last is None or last.previous_version is None:
        raise Conflict(f"alias {alias!r} of model {name!r} has no earlier version to roll back to")
    return last


def rollback_target(db: Database, name: str, alias: str = "production", tenant: str | None = None) -> str:
    """The version `rollback` would move `alias` to (nothing moves): lets a server load it first."""
    with db.session() as session:
        get_model(session, name, tenant)
        return _last_promotion(session, name, alias).previous_version or ""


def rollback(db: Database, name: str, alias: str = "production", tenant: str | None = None) -> AliasMove:
    """Undo the latest promotion of `alias`: it points again where it pointed before."""
    with db.session() as session:
        get_model(session, name, tenant)
        last = _last_promotion(session, name, alias)
        row = session.get(ModelAlias, (name, alias))
        assert row is not None  # a promotion row exists, so the alias does
        current = row.version
        row.version, row.updated_at = last.previous_version, utcnow()
        last.rolled_back_at = utcnow()
    return AliasMove(name, alias, current, last.previous_version or "")


def list_models(db: Database, tenant: str | None = None) -> list[ModelInfo]:
    """Models (of `tenant`, or all) with their versions and aliases."""
    with db.session() as session:
        query = select(RegisteredModel).order_by(RegisteredModel.name)
        if tenant is not None:
            query = query.where(RegisteredModel.tenant_id == tenant)
        out = []
        for model in session.scalars(query):
            versions = session.scalars(select(ModelVersion).where(ModelVersion.model_name == model.name)
                                       .order_by(ModelVersion.id)).all()
            aliases = session.scalars(select(ModelAlias).where(ModelAlias.model_name == model.name)
                                      .order_by(ModelAlias.alias)).all()
            out.append(ModelInfo(
                name=model.name, tenant=model.tenant_id, task=versions[-1].task if versions else "",
                versions=[{"version": v.version, "created_at": _iso(v.created_at)} for v in versions],
                aliases={a.alias: a.version for a in aliases},
            ))
    return out


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z"
