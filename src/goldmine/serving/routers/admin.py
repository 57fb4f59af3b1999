"""Admin: promote and roll back aliases of any tenant's model, swapped in without dropping in-flight requests.

The order is what makes the swap safe: load the target version, move the alias in the database (new calls now
resolve to it), then retire versions no alias uses; their batchers answer what is queued before they stop.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, Field

from goldmine.serving import gate, registry
from goldmine.serving.db import ModelAlias
from goldmine.serving.deps import AdminKey, Services, ServicesDep
from goldmine.serving.errors import error_responses

NAME_PATTERN = registry.NAME.pattern

router = APIRouter(prefix="/v1/admin/models", tags=["admin"])


class PromoteIn(BaseModel):
    target: str = Field(max_length=128, pattern=NAME_PATTERN, description="A version id or another alias (staging).")
    alias: str = Field("production", max_length=128, pattern=NAME_PATTERN, description="The alias to move.")
    force: bool = Field(False, description="Promote the live alias even if the candidate fails the regression gate "
                        "(the report is stored either way).")


class RollbackIn(BaseModel):
    alias: str = Field("production", max_length=128, pattern=NAME_PATTERN, description="The alias to move back.")


class AliasOut(BaseModel):
    model: str
    alias: str
    previous: str | None
    current: str


def _target(services: Services, name: str, target: str) -> tuple[str, str]:
    with services.db.session() as session:
        row = registry.resolve(session, name, target)
        return row.version, row.path


def _alias_versions(services: Services, name: str) -> set[str]:
    with services.db.session() as session:
        return {a.version for a in session.query(ModelAlias).filter(ModelAlias.model_name == name)}


@router.post("/{name}/promote", response_model=AliasOut,
             responses=error_responses(401, 403, 404, 409, 413, 422))
async def promote(name: str, body: PromoteIn, key: AdminKey, services: ServicesDep) -> AliasOut:
    """Point an alias at a version (loaded before the switch, so no call waits for the load). Moving the live alias
    runs the regression gate first (`GET /v1/models/{name}/gate` shows its report): a failing candidate is a 409
    unless `force`."""
    version, path = await asyncio.to_thread(_target, services, name, body.target)
    await asyncio.to_thread(gate.require_pass, services.db, services.settings, name, version, body.alias, None,
                            body.force)
    await services.pool.get(name, version, path)  # loaded before the switch: no call waits for the load
    move = await asyncio.to_thread(registry.promote, services.db, name, version, body.alias)
    services.versions.invalidate()  # this server's calls follow at once, not after alias_cache_seconds
    services.pool.retire(name, await asyncio.to_thread(_alias_versions, services, name))
    return AliasOut(**move.__dict__)


@router.post("/{name}/rollback", response_model=AliasOut,
             responses=error_responses(401, 403, 404, 409, 413, 422))
async def rollback(name: str, key: AdminKey, services: ServicesDep, body: RollbackIn | None = None) -> AliasOut:
    """Move an alias back to where it pointed before its latest promotion."""
    alias = body.alias if body else "production"
    target = await asyncio.to_thread(registry.rollback_target, services.db, name, alias)
    version, path = await asyncio.to_thread(_target, services, name, target)
    await services.pool.get(name, version, path)
    move = await asyncio.to_thread(registry.rollback, services.db, name, alias)
    services.versions.invalidate()
    services.pool.retire(name, await asyncio.to_thread(_alias_versions, services, name))
    return AliasOut(**move.__dict__)
