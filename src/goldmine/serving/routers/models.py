"""`GET /v1/models`: the caller's models (an admin key: every tenant's) with versions and aliases."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel

from goldmine.serving.deps import CurrentKey, ServicesDep
from goldmine.serving.errors import error_responses
from goldmine.serving.registry import list_models

router = APIRouter(prefix="/v1/models", tags=["models"])


class ModelOut(BaseModel):
    name: str
    tenant: str
    task: str
    versions: list[dict[str, str]]
    aliases: dict[str, str]


class ModelList(BaseModel):
    models: list[ModelOut]


@router.get("", response_model=ModelList, responses=error_responses(401))
async def get_models(key: CurrentKey, services: ServicesDep) -> ModelList:
    """Models visible to this key: its tenant's, or all of them with the admin scope."""
    tenant = None if "admin" in key.scopes else key.tenant
    infos = await asyncio.to_thread(list_models, services.db, tenant)
    return ModelList(models=[ModelOut(**info.__dict__) for info in infos])
