"""Uploaded datasets: streamed to disk under a size limit, validated as `goldmine data check` validates a file,
stored per tenant and content-addressed.

An upload is written to a temporary file inside the tenant's folder while its sha256 is computed, so a file of any
size costs a few kilobytes of memory and the limit (`jobs.max_upload_bytes`, and what is left of the tenant's
`jobs.max_storage_bytes`) is enforced on the bytes received, not on a declared length. The file keeps the name it
was uploaded as, which decides its format (.csv, .tsv, .jsonl, .conll, ...) and is what every problem names
(`train.csv:17: ...`). A name is one plain file name: a path, `..` or a hidden name is refused, and every path is
checked to lie under the storage root before anything is written there.

The id of a dataset is the sha256 of its bytes, so the same file uploaded twice is one dataset; each tenant has its
own copy and row, and another tenant's id is simply not found.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, select

from goldmine.data.check import check_files, report_of
from goldmine.errors import DataError, DataIssue
from goldmine.serving.db import Database, Dataset, Job, utcnow
from goldmine.serving.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from goldmine.serving.registry import check_name, ensure_tenant
from goldmine.serving.settings import ServingSettings

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson", ".conll", ".bio", ".iob", ".txt")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}$")
DATASET_ID = re.compile(r"^[0-9a-f]{64}$")
ACTIVE = ("queued", "running")


@dataclass
class DatasetInfo:
    id: str
    name: str
    size_bytes: int
    kind: str
    examples: int
    created_at: str
    report: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def check_file_name(name: str) -> str:
    """`name` if it is one plain file name of a supported type; InvalidRequest (path traversal) or
    UnsupportedMediaType (an unknown suffix) otherwise."""
    if not name or "/" in name or "\\" in name or ".." in name or not FILE_NAME.match(name):
        raise InvalidRequest(f"name: {name!r} is not a plain file name (letters, digits, '.', '_', '-', ' '; no "
                             "path, no '..', not hidden)")
    if not name.lower().endswith(SUFFIXES):
        raise UnsupportedMediaType(f"name: {name!r}: a dataset is one of {', '.join(SUFFIXES)}")
    return name


def tenant_root(settings: ServingSettings, tenant: str) -> Path:
    """The tenant's folder under the storage root (tenant ids are checked names, so they are plain folder names)."""
    root = storage_root(settings)
    folder = (root / check_name(tenant, "tenant")).resolve()
    if folder.parent != root:
        raise InvalidRequest("tenant: not a plain name")
    return folder


def storage_root(settings: ServingSettings) -> Path:
    assert settings.jobs.storage_dir is not None  # set by the settings' validator
    root = settings.jobs.storage_dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def used_bytes(db: Database, tenant: str) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.coalesce(func.sum(Dataset.size_bytes), 0))
                                  .where(Dataset.tenant_id == tenant)) or 0)


def upload_limit(db: Database, settings: ServingSettings, tenant: str) -> int:
    """The most bytes the next upload of `tenant` may have: the per-file limit or what storage is left."""
    return max(0, min(settings.jobs.max_upload_bytes, settings.jobs.max_storage_bytes - used_bytes(db, tenant)))


class Upload:
    """A file being received: `write(chunk)` as chunks come, then `store(...)`; `discard()` on any failure."""

    def __init__(self, settings: ServingSettings, tenant: str, name: str, limit: int):
        self.name = check_file_name(name)
        self.limit = limit
        self.folder = tenant_root(settings, tenant) / "tmp" / uuid.uuid4().hex
        self.folder.mkdir(parents=True)
        self.path = self.folder / self.name
        self._file = self.path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"the dataset is over {self.limit} bytes (the per-file limit, or what is left of "
                                  "this tenant's storage: delete datasets to make room)")
        if b"\x00" in chunk:
            raise UnsupportedMediaType("the file holds NUL bytes: a dataset is a UTF-8 text file")
        self._hash.update(chunk)
        self._file.write(chunk)

    def close(self) -> str:
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def store(db: Database, settings: ServingSettings, tenant: str, upload: Upload) -> tuple[DatasetInfo, bool]:
    """Validate the received file and keep it (or find it kept already). Returns (dataset, created).

    Raises `DataError` with every problem as `name:line: reason`, as `goldmine data check` reports them.
    """
    try:
        digest = upload.close()
        if upload.size == 0:
            raise InvalidRequest("the body is empty: send the file's bytes as the request body")
        with db.session() as session:
            row = session.get(Dataset, (tenant, digest))
            if row is not None:
                return _info(row), False
        try:
            splits = check_files(upload.path)
        except DataError as err:
            issues = [DataIssue(upload.name, i.line, i.reason, i.severity) for i in err.issues]
            raise DataError(issues, header=f"{upload.name} is not a valid dataset") from None
        report = report_of(splits).to_dict()
        report_text = json.dumps(report).replace(str(upload.folder) + "/", "")
        target_dir = tenant_root(settings, tenant) / "datasets" / digest
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / upload.name
        upload.path.replace(target)
        data = splits["train"]
        with db.session() as session:
            ensure_tenant(session, tenant)
            row = session.get(Dataset, (tenant, digest))
            if row is not None:  # the same file, stored meanwhile by a concurrent upload
                return _info(row), False
            row = Dataset(tenant_id=tenant, id=digest, name=upload.name, path=str(target), size_bytes=upload.size,
                          kind=data.kind.value, examples=len(data), report_json=report_text, created_at=utcnow())
            session.add(row)
            session.flush()
            return _info(row, with_report=True), True
    finally:
        upload.discard()


def _info(row: Dataset, with_report: bool = False) -> DatasetInfo:
    return DatasetInfo(row.id, row.name, row.size_bytes, row.kind, row.examples, row.created_at.isoformat() + "Z",
                       json.loads(row.report_json) if with_report else None)


def _row(session, tenant: str, dataset_id: str) -> Dataset:
    row = session.get(Dataset, (tenant, dataset_id)) if DATASET_ID.match(dataset_id or "") else None
    if row is None:
        raise NotFound(f"no dataset {dataset_id!r}")
    return row


def get_dataset(db: Database, tenant: str, dataset_id: str) -> DatasetInfo:
    """The dataset with its quality report; another tenant's id is NotFound."""
    with db.session() as session:
        return _info(_row(session, tenant, dataset_id), with_report=True)


def dataset_path(db: Database, tenant: str, dataset_id: str) -> Path:
    with db.session() as session:
        return Path(_row(session, tenant, dataset_id).path)


def list_datasets(db: Database, tenant: str) -> list[DatasetInfo]:
    with db.session() as session:
        rows = session.scalars(select(Dataset).where(Dataset.tenant_id == tenant).order_by(Dataset.created_at))
        return [_info(row) for row in rows]


def delete_dataset(db: Database, tenant: str, dataset_id: str) -> None:
    """Forget the dataset and delete its file. A dataset a queued or running job trains on is a Conflict."""
    with db.session() as session:
        row = _row(session, tenant, dataset_id)
        active = session.scalars(select(Job.datasets_json).where(Job.tenant_id == tenant, Job.status.in_(ACTIVE)))
        if any(dataset_id in json.loads(used).values() for used in active):
            raise Conflict(f"dataset {dataset_id!r} is used by a queued or running job; cancel it first")
        path = Path(row.path)
        session.delete(row)
    shutil.rmtree(path.parent, ignore_errors=True)
