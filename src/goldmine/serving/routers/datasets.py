"""`/v1/datasets`: upload a data file (the raw bytes as the body, its file name in `?name=`), list, read, delete.

The body is streamed to disk (`goldmine.serving.datasets.Upload`), never held in memory, so this route is
exempt from the middleware's `limits.max_body_bytes` and has its own limits (`jobs.max_upload_bytes`, the
tenant's `jobs.max_storage_bytes`). Example: `curl -H "Authorization: Bearer $KEY" --data-binary @train.csv
"$URL/v1/datasets?name=train.csv"`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from goldmine.serving.datasets import (
    FILE_NAME,
    Upload,
    delete_dataset,
    get_dataset,
    list_datasets,
    store,
    upload_limit,
)
from goldmine.serving.deps import ServicesDep, TrainKey
from goldmine.serving.errors import PayloadTooLarge, error_responses

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
PATH = "/v1/datasets"  # the upload route: its body is streamed, not buffered by the middleware


class DatasetOut(BaseModel):
    id: str
    name: str
    size_bytes: int
    kind: str
    examples: int
    created_at: str
    report: dict[str, Any] | None = None


class DatasetList(BaseModel):
    datasets: list[DatasetOut]


@router.post("", response_model=DatasetOut, status_code=201,
             responses=error_responses(401, 403, 413, 415, 422),
             openapi_extra={"requestBody": {"required": True, "description": "The file's bytes (UTF-8 text).",
                                            "content": {"application/octet-stream": {
                                                "schema": {"type": "string", "format": "binary"}}}}})
async def upload_dataset(request: Request, response: Response, key: TrainKey, services: ServicesDep,
                         name: Annotated[str, Query(pattern=FILE_NAME.pattern, description="The file's name, e.g. "
                                                    "train.csv: its suffix says the format.")]) -> DatasetOut:
    """Upload one file (CSV/TSV/JSONL/CoNLL/chat JSONL) as the request body. It is validated as `goldmine data
    check` validates a file: every problem as `name:line: reason` in a 422's `issues`. 201 with the quality
    report when new, 200 when this tenant has the same bytes already."""
    settings, db = services.settings, services.db
    limit = await asyncio.to_thread(upload_limit, db, settings, key.tenant)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the dataset is over {limit} bytes (the per-file limit, or what is left of this "
                              "tenant's storage)")
    upload = await asyncio.to_thread(Upload, settings, key.tenant, name, limit)
    try:
        async for chunk in request.stream():
            upload.write(chunk)
    except BaseException:
        upload.discard()
        raise
    info, created = await asyncio.to_thread(store, db, settings, key.tenant, upload)
    response.status_code = 201 if created else 200
    return DatasetOut(**info.to_dict())


@router.get("", response_model=DatasetList, responses=error_responses(401, 403))
async def get_datasets(key: TrainKey, services: ServicesDep) -> DatasetList:
    """This tenant's datasets (without their reports)."""
    infos = await asyncio.to_thread(list_datasets, services.db, key.tenant)
    return DatasetList(datasets=[DatasetOut(**info.to_dict()) for info in infos])


@router.get("/{dataset_id}", response_model=DatasetOut, responses=error_responses(401, 403, 404))
async def get_one(dataset_id: str, key: TrainKey, services: ServicesDep) -> DatasetOut:
    """One dataset with its quality report."""
    return DatasetOut(**(await asyncio.to_thread(get_dataset, services.db, key.tenant, dataset_id)).to_dict())


@router.delete("/{dataset_id}", status_code=204, responses=error_responses(401, 403, 404, 409))
async def delete(dataset_id: str, key: TrainKey, services: ServicesDep) -> Response:
    """Delete the dataset and its file (409 while a queued or running job uses it)."""
    await asyncio.to_thread(delete_dataset, services.db, key.tenant, dataset_id)
    return Response(status_code=204)
