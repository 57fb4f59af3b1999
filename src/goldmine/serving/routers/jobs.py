"""`/v1/jobs`: start a fine-tuning job, watch it (a snapshot or a server-sent-events stream), cancel it, and read
what it produced (the before-vs-after table of the registered `candidate` version, and its parity report when the
run was exported). The work runs on workers (`goldmine.serving.worker`); this router only reads and writes rows
and puts messages on the queue."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from goldmine.serving.db import ModelVersion
from goldmine.serving.deps import ServicesDep, TrainKey
from goldmine.serving.errors import NotFound, error_responses
from goldmine.serving.jobs import TERMINAL, JobInfo, JobRequest, cancel_job, create_job, get_job, list_jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
EVENT_POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


class JobList(BaseModel):
    jobs: list[JobInfo]


class JobReport(BaseModel):
    job: str
    model: str
    version: str
    alias: str
    before_after: dict[str, Any]
    before_after_markdown: str | None
    parity: dict[str, Any] | None


@router.post("", response_model=JobInfo, status_code=201, responses=error_responses(401, 403, 404, 422, 429))
async def start_job(body: JobRequest, key: TrainKey, services: ServicesDep) -> JobInfo:
    """Queue a fine-tuning job on this tenant's datasets (or, `kind: retrain`, a retrain of a model's live version
    on its data plus its feedback); a worker picks it up."""
    job = await asyncio.to_thread(create_job, services.db, services.settings, key.tenant, body)
    await asyncio.to_thread(services.queue().enqueue, job.id)
    return job


@router.get("", response_model=JobList, responses=error_responses(401, 403))
async def get_jobs(key: TrainKey, services: ServicesDep) -> JobList:
    """This tenant's jobs, newest first."""
    jobs = await asyncio.to_thread(list_jobs, services.db, key.tenant)
    return JobList(jobs=[job for job in jobs])


@router.get("/{job_id}", response_model=JobInfo, responses=error_responses(401, 403, 404))
async def get_one(job_id: str, key: TrainKey, services: ServicesDep) -> JobInfo:
    """Status, step/total, ETA, the latest dev metrics and the last log lines."""
    return await asyncio.to_thread(get_job, services.db, key.tenant, job_id)


@router.get("/{job_id}/events", responses={**error_responses(401, 403, 404),
                                            200: {"content": {"text/event-stream": {}},
                                                  "description": "`event: progress` with the job as JSON at each "
                                                  "change, then `event: end` when it has finished."}})
async def job_events(job_id: str, request: Request, key: TrainKey, services: ServicesDep) -> StreamingResponse:
    """Server-sent events: the job (as `GET /v1/jobs/{id}` gives it) each time it changes, until it ends."""
    first = await asyncio.to_thread(get_job, services.db, key.tenant, job_id)  # 404 before the stream starts

    async def events():
        job, last, quiet = first, None, time.monotonic()
        while True:
            data = json.dumps(job.to_dict())
            if data != last:
                yield f"event: progress\ndata: {data}\n\n"
                last, quiet = data, time.monotonic()
            if job.status in TERMINAL:
                yield f"event: end\ndata: {data}\n\n"
                return
            if time.monotonic() - quiet > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_POLL_SECONDS)
            job = await asyncio.to_thread(get_job, services.db, key.tenant, job_id)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/{job_id}/cancel", response_model=JobInfo, responses=error_responses(401, 403, 404))
async def cancel(job_id: str, key: TrainKey, services: ServicesDep) -> JobInfo:
    """Cancel: a queued job at once, a running one at its next step (it is billed for the CPU it used)."""
    return await asyncio.to_thread(cancel_job, services.db, key.tenant, job_id)


@router.get("/{job_id}/report", response_model=JobReport, responses=error_responses(401, 403, 404))
async def report(job_id: str, key: TrainKey, services: ServicesDep) -> JobReport:
    """What a succeeded job produced: its before-vs-after table (metrics.json), and parity.json once exported."""
    return await asyncio.to_thread(_report, services, key.tenant, job_id)


def _report(services, tenant: str, job_id: str) -> JobReport:
    job = get_job(services.db, tenant, job_id)
    if job.status != "succeeded" or job.version is None:
        raise NotFound(f"job {job_id!r} has no result yet (status {job.status})")
    with services.db.session() as session:
        row = session.query(ModelVersion).filter_by(model_name=job.model, version=job.version).one_or_none()
        if row is None:
            raise NotFound(f"version {job.version} of {job.model!r} is no longer registered")
        path = Path(row.path)
    parity = next((p for p in (path / "parity.json", path / "onnx" / "parity.json") if p.is_file()), None)
    markdown = path / "before_after.md"
    return JobReport(job=job.id, model=job.model, version=job.version, alias="candidate",
                     before_after=json.loads((path / "metrics.json").read_text()),
                     before_after_markdown=markdown.read_text() if markdown.is_file() else None,
                     parity=json.loads(parity.read_text()) if parity else None)
