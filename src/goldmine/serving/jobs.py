"""Fine-tuning jobs: created from a goldmine training config and dataset ids, run by workers, watched, cancelled,
billed.

A job's life: `queued` (a row here and a message on the queue, see `goldmine.serving.worker`) -> `running` (a
worker holds its lease, renewed by heartbeats) -> `succeeded` | `failed` | `cancelled`. A running job whose
worker dies goes back to `queued` when its lease expires and the next worker resumes it from its last checkpoint.

The config takes the fields of a goldmine training config (nested or dotted, e.g. `{"training": {"max_steps":
100}}` or `{"training.max_steps": 100}`), validated by the same `TrainConfig` that `goldmine train` loads, so an
invalid field is refused with its name. What would point at the server's files is not the client's to set: the
data paths come from the dataset ids, the output directory is the job's own, label files are refused, and
`model.name` must be one of the settings' `jobs.base_models`.

Billing rule (CPU-seconds, `per_cpu_hour_minor` of the tenant's plan): a job is billed for the CPU time its
worker processes spent on it, whatever its end: a cancelled or failed job pays for what it used up to its end.
The one exception is work lost with a worker that died: a lost attempt is billed only up to its last checkpoint
(what the next attempt resumes from), since the steps after it are run again and billed then. A job appears on
the invoice of the month it ended in (`finished_at`), on its own line beside the API usage.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from goldmine.config import TrainConfig, load_config
from goldmine.data.check import check_files
from goldmine.errors import ConfigError
from goldmine.serving.datasets import dataset_path, tenant_root
from goldmine.serving.db import Database, Job, RegisteredModel, utcnow
from goldmine.serving.errors import InvalidRequest, NotFound, RateLimited
from goldmine.serving.registry import NAME, check_name, ensure_tenant
from goldmine.serving.settings import ServingSettings

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
SERVER_FIELDS = ("output_dir", "data.train", "data.dev", "data.test", "tuning.zeroshot.labels",
                 "tuning.fewshot.labels", "tuning.label_likelihood.labels")  # paths on the server: not a client's
LOG_LINES = 50  # log lines a job keeps


class JobRequest(BaseModel):
    """The body of `POST /v1/jobs`."""

    # the schema says what the route checks: a train job (the default kind) names its training dataset
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"kind": {"const": "retrain"}}, "required": ["kind"]},
        "then": {"properties": {name: {"type": "null"} for name in ("train", "dev", "test", "export")}},
        "else": {"required": ["train"], "properties": {"train": {"type": "string"}}}})

    kind: Literal["train", "retrain"] = Field("train", description="train: fine-tune on the datasets given. "
                                              "retrain: the live version of `model` retrained on its training data "
                                              "plus the feedback it has had (`goldmine retrain`); no datasets, and "
                                              "`config` changes fields of the live version's config.")
    model: str = Field(pattern=NAME.pattern, description="Registry model name the trained run is registered "
                       "under (a new version with alias `candidate`); created for this tenant when new.")
    train: str | None = Field(None, description="Dataset id of the training file (kind train).")
    dev: str | None = Field(None, description="Dataset id of the dev file (split off train when absent).")
    test: str | None = Field(None, description="Dataset id of the test file (split off train when absent).")
    config: dict[str, Any] = Field(default_factory=dict, description="goldmine training config fields, nested or "
                                   "dotted (task, model, tuning, training, data options, out_of_scope, ...).")
    export: Literal["onnx", "onnx-int8"] | None = Field(None, description="Also export the run for fast serving "
                                                        "behind the parity gate (`goldmine export`); its parity "
                                                        "report is then part of the job's report.")


class JobInfo(BaseModel):
    """A job as its tenant sees it: the body of the /v1/jobs routes and what `goldmine jobs` prints."""

    id: str
    model: str = Field(description="The registry model the run is registered under (alias `candidate`).")
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    step: int = Field(description="Optimizer steps done (of the attempt that is running, or the last one).")
    total_steps: int | None
    eta_seconds: float | None = Field(description="Estimated seconds to the end of training, while running.")
    phase: str | None = Field(description="What the worker is doing: training, evaluation, export, ...")
    dev_metrics: dict | None = Field(description="The last dev evaluation, when the config evaluates on dev.")
    log: list[str] = Field(description="The last log lines, with times.")
    attempts: int = Field(description="Times the job was started: more than 1 after a worker was lost.")
    cpu_seconds: float = Field(description="CPU time billed so far (see the plans' per_cpu_hour_minor).")
    datasets: dict[str, str] = Field(description="Dataset ids by split (train, dev, test).")
    version: str | None = Field(description="The registered model version, once the job has succeeded.")
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    kind: str = Field("train", description="train (on the datasets given) | retrain (the live version's data plus "
                      "its feedback).")

    def to_dict(self) -> dict:
        return self.model_dump()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment else None


def info(row: Job) -> JobInfo:
    return JobInfo(id=row.id, model=row.model_name, status=row.status, step=row.step, total_steps=row.total_steps,
                   eta_seconds=row.eta_seconds if row.status == "running" else None, phase=row.phase,
                   dev_metrics=json.loads(row.dev_metrics_json) if row.dev_metrics_json else None,
                   log=json.loads(row.log_json), attempts=row.attempts, cpu_seconds=row.cpu_ms / 1000,
                   datasets=json.loads(row.datasets_json), version=row.version, error=row.error,
                   created_at=_iso(row.created_at), started_at=_iso(row.started_at),
                   finished_at=_iso(row.finished_at), kind=row.kind or "train")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"training": {"max_steps": 5}}` -> `{"training.max_steps": 5}` (dotted keys pass through)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def job_dir(settings: ServingSettings, tenant: str, job_id: str) -> Path:
    return tenant_root(settings, tenant) / "jobs" / job_id


def build_config(settings: ServingSettings, config: dict[str, Any], paths: dict[str, Path],
                 output_dir: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The validated training config of a job, and the dotted overrides it was built from (what the worker loads).

    Raises InvalidRequest naming the field: a server-side field the client set, a base model not offered, or any
    field `TrainConfig` refuses.
    """
    overrides = flatten(config)
    for name in overrides:
        if name in SERVER_FIELDS or any(name.startswith(f"{field}.") for field in SERVER_FIELDS):
            raise InvalidRequest(f"config.{name}: set by the server (datasets are given by id in train/dev/test)")
    overrides.update({f"data.{split}": str(path) for split, path in paths.items()})
    overrides["output_dir"] = str(output_dir)
    try:
        config = load_config(None, overrides)
    except ConfigError as err:
        raise InvalidRequest(f"config: {err}") from None
    if config.model.name not in settings.jobs.base_models:
        raise InvalidRequest(f"config.model.name: {config.model.name!r} is not offered here; choose one of "
                             f"{settings.jobs.base_models}")
    return config, overrides


def create_job(db: Database, settings: ServingSettings, tenant: str, request: JobRequest) -> JobInfo:
    """Validate the request (datasets checked together as `goldmine data check --dev --test` checks them) and
    store the job as queued. The caller puts it on the queue (`worker.enqueue`)."""
    check_name(request.model)
    job_id = f"job_{secrets.token_hex(12)}"
    if request.kind == "retrain":
        ids: dict[str, str] = {}
        overrides = retrain_overrides(db, settings, tenant, request)
    else:
        if request.train is None:
            raise InvalidRequest("train: a dataset id is required (kind train)")
        ids = {split: getattr(request, split) for split in ("train", "dev", "test")
               if split == "train" or getattr(request, split) is not None}
        paths = {split: dataset_path(db, tenant, dataset_id) for split, dataset_id in ids.items()}
        check_files(paths["train"], paths.get("dev"), paths.get("test"))
        _, overrides = build_config(settings, request.config, paths, job_dir(settings, tenant, job_id) / "run")
    with db.session() as session:
        ensure_tenant(session, tenant)
        owner = session.get(RegisteredModel, request.model)
        if owner is not None and owner.tenant_id != tenant:
            raise InvalidRequest(f"model: {request.model!r} belongs to another tenant; choose another name")
        active = session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant,
                                                                           Job.status.in_(ACTIVE)))
        if active >= settings.jobs.max_concurrent_jobs:
            raise RateLimited(f"{active} jobs are queued or running, the most this tenant may have at once; wait "
                              "for one to finish or cancel one", headers={"Retry-After": "60"})
        row = Job(id=job_id, tenant_id=tenant, kind=request.kind, model_name=request.model,
                  config_json=json.dumps(overrides),
                  datasets_json=json.dumps(ids), export=request.export, status="queued", cancel_requested=False,
                  attempts=0, step=0, log_json="[]", cpu_ms=0, created_at=utcnow())
        session.add(row)
        session.flush()
        return info(row)


def retrain_overrides(db: Database, settings: ServingSettings, tenant: str, request: JobRequest) -> dict[str, Any]:
    """The dotted overrides of a retrain job, checked against the live version's config it will change. The model
    must be this tenant's (404 otherwise) and have a live version; no datasets are taken (the data is the live
    version's plus the feedback)."""
    from goldmine.serving.registry import get_model, resolve

    for split in ("train", "dev", "test"):
        if getattr(request, split) is not None:
            raise InvalidRequest(f"{split}: a retrain takes no datasets (it trains the live version's data plus the "
                                 "feedback)")
    if request.export is not None:
        raise InvalidRequest("export: not offered for a retrain (export the candidate with `goldmine export` once "
                             "it is promoted)")
    overrides = flatten(request.config)
    for name in overrides:
        if name in SERVER_FIELDS or name.startswith("data.") or name == "task":
            raise InvalidRequest(f"config.{name}: set by the live version's run (a retrain keeps its data and task)")
    with db.session() as session:
        get_model(session, request.model, tenant)
        live = resolve(session, request.model, settings.default_alias, tenant)
    try:
        config = load_config(Path(live.path) / "config.yaml", overrides)
    except ConfigError as err:
        raise InvalidRequest(f"config: {err}") from None
    if "model.name" in overrides and config.model.name not in settings.jobs.base_models:
        raise InvalidRequest(f"config.model.name: {config.model.name!r} is not offered here; choose one of "
                             f"{settings.jobs.base_models}")
    return overrides


def _row(session, tenant: str | None, job_id: str) -> Job:
    row = session.get(Job, job_id)
    if row is None or (tenant is not None and row.tenant_id != tenant):
        raise NotFound(f"no job {job_id!r}")
    return row


def get_job(db: Database, tenant: str | None, job_id: str) -> JobInfo:
    """The job as `tenant` may see it (None: any tenant, for operators); another tenant's job is NotFound."""
    with db.session() as session:
        return info(_row(session, tenant, job_id))


def list_jobs(db: Database, tenant: str | None = None, limit: int = 100) -> list[JobInfo]:
    with db.session() as session:
        query = select(Job).order_by(Job.created_at.desc()).limit(limit)
        if tenant is not None:
            query = query.where(Job.tenant_id == tenant)
        return [info(row) for row in session.scalars(query)]


def cancel_job(db: Database, tenant: str | None, job_id: str) -> JobInfo:
    """A queued job is cancelled at once; a running one at its worker's next step or heartbeat. A finished job is
    left as it is (cancelling it again is not an error)."""
    with db.session() as session:
        row = _row(session, tenant, job_id)
        if row.status == "queued":
            row.status, row.finished_at = "cancelled", utcnow()
            row.log_json = json.dumps([*json.loads(row.log_json), "cancelled before it started"][-LOG_LINES:])
        elif row.status == "running":
            row.cancel_requested = True
        session.flush()
        return info(row)


def job_cpu_ms(db: Database, tenant: str, start: datetime, end: datetime) -> tuple[int, int]:
    """(jobs, CPU milliseconds) of `tenant`'s jobs that ended in [start, end): what the invoice bills."""
    with db.session() as session:
        jobs, cpu = session.execute(select(func.count(), func.coalesce(func.sum(Job.cpu_ms), 0)).where(
            Job.tenant_id == tenant, Job.status.in_(TERMINAL), Job.finished_at >= start,
            Job.finished_at < end)).one()
        return int(jobs), int(cpu)
