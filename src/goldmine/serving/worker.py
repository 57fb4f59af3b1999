"""Workers: processes that take fine-tuning jobs off a huey queue and train them, outside the API process.

Why huey: the same code runs on a SQLite file (one machine, zero setup: `goldmine serve` starts one worker
beside the API) and on Redis (`jobs.queue_url: redis://...`: workers on as many machines as share the Redis, the
database and the storage root). It is one small pure-Python package with no broker to run for the default case;
Celery needs a broker even locally and RQ needs Redis everywhere.

huey carries the messages ("run job X"); the job's state lives in the serving database, which is what makes a
job survive its worker. A worker claims a queued job with a conditional update (one worker wins), then renews
a lease on it (`heartbeat_at`) every `jobs.heartbeat_seconds` from a side thread, so a long evaluation does not
look like a dead worker. Every worker, between jobs, looks for running jobs whose lease is older than
`jobs.lease_seconds`: such a job lost its worker (killed, machine gone), so it is put back to `queued` and on the
queue, and the next worker resumes it from its last checkpoint (`goldmine.train(..., resume=True)`), reaching the
same final step count. Every write of a worker is conditional on it still holding the job, so a worker that was
presumed dead and comes back cannot overwrite its successor's progress.

One job runs at a time per worker process: training uses every core it is given, so a second job on the same
cores would only slow both down. Run more `goldmine worker` processes (or machines) for more jobs at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from goldmine.errors import GoldmineError
from goldmine.serving.db import Database, Job, open_database, utcnow
from goldmine.serving.jobs import LOG_LINES
from goldmine.serving.settings import ServingSettings
from goldmine.training.callbacks import PhaseCallback

log = logging.getLogger(__name__)

TASK_NAME = "goldmine.run_job"
_SPEED = ("runtime", "samples_per_second", "steps_per_second")


class JobCancelled(Exception):
    """Raised inside the training loop when the job's cancellation was asked for."""


class LeaseLost(Exception):
    """Raised inside the training loop when another worker was given this job (this one was presumed dead)."""


class JobQueue:
    """The huey queue of "run job X" messages: RedisHuey for a `redis://` `jobs.queue_url`, else SqliteHuey on a
    file (`jobs.queue_url` as sqlite:///path, or <data_dir>/queue.db)."""

    def __init__(self, settings: ServingSettings):
        from huey import RedisHuey, SqliteHuey

        url = settings.jobs.queue_url
        if url and url.startswith(("redis://", "rediss://", "unix://")):
            self.huey = RedisHuey("goldmine-jobs", url=url, results=False)
        else:
            path = Path(url.removeprefix("sqlite:///")) if url else settings.data_dir / "queue.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.huey = SqliteHuey("goldmine-jobs", filename=str(path), results=False)
        self._run_job = self.huey.task(name=TASK_NAME)(_run_task)

    def enqueue(self, job_id: str) -> None:
        """Put "run job `job_id`" on the queue (the job row must say `queued`)."""
        self.huey.enqueue(self._run_job.s(job_id))

    def pending(self) -> int:
        return self.huey.pending_count()

    def pending_jobs(self) -> set[str]:
        """The job ids of the messages waiting on the queue."""
        return {task.args[0] for task in self.huey.pending() if task.args}


_current: Worker | None = None  # the worker of this process: what the huey task runs on


def _run_task(job_id: str) -> None:
    assert _current is not None, "jobs run inside Worker.run_once"
    _current.run_job(job_id)


class Progress(PhaseCallback):
    """Writes a running job's step/total, ETA, phase, dev metrics and log lines to its row (at most every
    `interval` seconds, and at every evaluation), commits the CPU used at every checkpoint, and stops the loop when
    the job is cancelled or its lease was lost."""

    def __init__(self, worker: Worker, job_id: str, cpu_base_ms: int, interval: float = 0.5):
        self.worker, self.job_id, self.interval = worker, job_id, interval
        self.cpu_base_ms, self.cpu_start = cpu_base_ms, time.process_time()
        self.lines: list[str] = []
        self.dev: dict | None = None
        self.step, self.total, self.phase_name = 0, None, None
        self.first_step: tuple[float, int] | None = None
        self._written = 0.0

    def cpu_ms(self) -> int:
        return self.cpu_base_ms + int((time.process_time() - self.cpu_start) * 1000)

    def line(self, text: str) -> None:
        stamp = utcnow().strftime("%H:%M:%S")
        self.lines = [*self.lines, f"{stamp} {text}"][-LOG_LINES:]

    @contextmanager
    def phase(self, name: str, total: int | None = None):
        self.phase_name = name
        self.line(f"phase: {name}")
        self.flush(force=True)
        yield lambda: None

    def on_train_begin(self, args, state, control, **kwargs):
        self.total, self.step = state.max_steps, state.global_step
        self.first_step = (time.monotonic(), state.global_step)
        self.flush(force=True)

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        self.flush()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.dev = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items()
                    if isinstance(v, int | float) and math.isfinite(v) and not k.endswith(_SPEED)}
        shown = "  ".join(f"dev {k} {v:.4f}" for k, v in self.dev.items())
        self.line(f"step {state.global_step}/{state.max_steps}  {shown or 'dev evaluated'}")
        self.flush(force=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.line(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}")
        elif logs and "train_runtime" in logs:
            self.line(f"done: {state.global_step} steps in {logs['train_runtime']:.1f}s")

    def on_save(self, args, state, control, **kwargs):
        self.line(f"step {state.global_step}/{state.max_steps}  checkpoint saved")
        self.flush(force=True, cpu=True)

    def eta(self) -> float | None:
        if not self.first_step or not self.total or self.step <= self.first_step[1]:
            return None
        started, step0 = self.first_step
        per_step = (time.monotonic() - started) / (self.step - step0)
        return round(per_step * max(0, self.total - self.step), 1)

    def flush(self, force: bool = False, cpu: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < self.interval:
            return
        self._written = now
        values = dict(step=self.step, total_steps=self.total, phase=self.phase_name, eta_seconds=self.eta(),
                      log_json=json.dumps(self.lines), dev_metrics_json=json.dumps(self.dev) if self.dev else None)
        if cpu:
            values["cpu_ms"] = self.cpu_ms()
        self.worker.write(self.job_id, **values)
        if self.worker.cancelled.is_set():
            raise JobCancelled()
        if self.worker.lost.is_set():
            raise LeaseLost()


class Worker:
    """One worker process: `run()` takes jobs until stopped; `run_once()` does one round (tests, CLI)."""

    def __init__(self, settings: ServingSettings, db: Database | None = None, name: str | None = None):
        self.settings = settings
        self.db = db or open_database(settings)
        self.queue = JobQueue(settings)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self.stopping = threading.Event()

    # ---- the loop ----

    def run(self, max_jobs: int | None = None, parent_pid: int | None = None) -> None:
        """Take jobs until stopped, `max_jobs` messages were taken, or process `parent_pid` is gone."""
        global _current
        _current = self
        done = 0
        log.info("worker %s: waiting for jobs", self.name)
        while not self.stopping.is_set() and (max_jobs is None or done < max_jobs):
            if parent_pid is not None and os.getppid() != parent_pid:
                log.info("worker %s: the server is gone; stopping", self.name)
                return
            if self.run_once():
                done += 1
            else:
                self.stopping.wait(self.settings.jobs.poll_seconds)

    def run_once(self) -> bool:
        """Requeue lost jobs, then run one message off the queue if there is one. True when a message ran."""
        global _current
        _current = self
        requeue_lost(self.db, self.settings, self.queue)
        task = self.queue.huey.dequeue()
        if task is None:
            return False
        self.queue.huey.execute(task)
        return True

    # ---- one job ----

    def claim(self, job_id: str) -> Job | None:
        """Take a queued job (conditional update: one worker wins); None when it is not queued any more."""
        now = utcnow()
        with self.db.session() as session:
            row = session.get(Job, job_id)
            if row is None or row.status != "queued":
                return None
            if row.attempts >= self.settings.jobs.max_attempts:
                row.status, row.finished_at = "failed", now
                row.error = f"gave up after {row.attempts} attempts (each lost its worker)"
                return None
            claimed = session.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
                status="running", worker=self.name, heartbeat_at=now, attempts=Job.attempts + 1,
                started_at=row.started_at or now, eta_seconds=None)).rowcount
            if claimed != 1:
                return None
        with self.db.session() as session:
            return session.get(Job, job_id)

    def write(self, job_id: str, **values) -> bool:
        """Update the job if this worker still holds it; otherwise mark the lease lost."""
        with self.db.session() as session:
            done = session.execute(update(Job).where(Job.id == job_id, Job.worker == self.name,
                                                     Job.status == "running").values(**values)).rowcount
        if not done:
            self.lost.set()
        return bool(done)

    @contextmanager
    def heartbeat(self, job_id: str):
        """Renew the lease every `heartbeat_seconds` and notice a cancellation, from a side thread."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.settings.jobs.heartbeat_seconds):
                try:
                    with self.db.session() as session:
                        held = session.execute(update(Job).where(Job.id == job_id, Job.worker == self.name,
                                                                 Job.status == "running")
                                               .values(heartbeat_at=utcnow())).rowcount
                        cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
                    if not held:
                        self.lost.set()
                    if cancel:
                        self.cancelled.set()
                except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                    log.warning("heartbeat of %s failed", job_id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def run_job(self, job_id: str) -> None:
        """Claim, train (resuming from the last checkpoint if an earlier attempt left one), register the run as a
        `candidate` version, and record the end and the CPU used."""
        from goldmine.config import load_config
        from goldmine.training.trainer import last_checkpoint, train

        row = self.claim(job_id)
        if row is None:
            return
        self.cancelled.clear()
        self.lost.clear()
        progress = Progress(self, job_id, row.cpu_ms)
        retraining = row.kind == "retrain"  # its config is overrides of the live version's; it starts afresh
        config = None if retraining else load_config(None, json.loads(row.config_json))
        resume = config is not None and last_checkpoint(Path(config.output_dir)) is not None
        progress.lines = json.loads(row.log_json)
        progress.line(f"attempt {row.attempts} on {self.name}" + (": resuming from the last checkpoint"
                                                                   if resume else ""))
        log.info("job %s: attempt %d%s", job_id, row.attempts, " (resume)" if resume else "")
        values: dict = {}
        try:
            with self.heartbeat(job_id):
                if row.cancel_requested:
                    raise JobCancelled()
                if config is None:
                    version = self.retrain(row, progress)
                else:
                    result = train(config, resume=resume, callbacks=[progress])
                    if row.export:
                        self.export(row.export, Path(config.output_dir), progress)
                    progress.phase_name = "registering"
                    version = self.register(row, config.output_dir)
                    progress.step = result.global_step
            progress.line(f"registered {row.model_name} version {version} as candidate")
            values = dict(status="succeeded", version=version)
        except JobCancelled:
            progress.line("cancelled")
            values = dict(status="cancelled")
        except LeaseLost:
            log.warning("job %s: lease lost to another worker; stopping", job_id)
            return
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see `goldmine worker`): hand the job on at once
            self.release(job_id, progress)
            raise
        except GoldmineError as err:
            progress.line(f"failed: {err}")
            values = dict(status="failed", error=str(err))
        except Exception as err:  # noqa: BLE001 - any failure ends the job with its reason
            log.exception("job %s failed", job_id)
            progress.line(f"failed: {type(err).__name__}: {err}")
            values = dict(status="failed", error=f"{type(err).__name__}: {err}")
        self.write(job_id, step=progress.step, total_steps=progress.total, phase=None, eta_seconds=None,
                   log_json=json.dumps(progress.lines), cpu_ms=progress.cpu_ms(), finished_at=utcnow(),
                   dev_metrics_json=json.dumps(progress.dev) if progress.dev else None, **values)

    def retrain(self, row: Job, progress: Progress) -> str:
        """A retrain job (`goldmine.serving.retrain`): the live version's data plus the feedback, trained with the
        job's config overrides; the gate's verdict and the merge report go to the job's log."""
        from goldmine.serving.retrain import retrain

        result = retrain(self.db, self.settings, row.model_name, row.tenant_id, json.loads(row.config_json),
                         callbacks=[progress])
        progress.line(result.merge.summary())
        if result.gate is not None:
            failed = "; ".join(result.gate.failures())
            progress.line("gate passed" if result.gate.passed else f"gate failed: {failed}")
        elif result.gate_error:
            progress.line(f"gate not run: {result.gate_error}")
        if result.promoted:
            progress.line(f"promoted to {self.settings.default_alias} (feedback.auto_promote)")
        return result.version

    def export(self, kind: str, run_dir: Path, progress: Progress) -> None:
        """`goldmine export` of the run behind its parity gate. A rejected export leaves the run as it was (it is
        served by torch) and says why in the job's log; the job still succeeds."""
        from goldmine.export import ParityError
        from goldmine.export.exporter import export_model

        with progress.phase("export"):
            try:
                export_model(run_dir, "onnx", "int8" if kind == "onnx-int8" else None)
            except ParityError as err:
                progress.line(f"export rejected by the parity gate: {err}")
            else:
                progress.line(f"exported ({kind}); parity report in the job's report")

    def release(self, job_id: str, progress: Progress) -> None:
        """Give a job back to the queue now (this worker is stopping): the next worker resumes it from its last
        checkpoint without waiting for the lease to expire. The CPU billed stays at the last checkpoint's."""
        progress.line(f"worker {self.name} stopped; queued again")
        if self.write(job_id, status="queued", worker=None, eta_seconds=None, log_json=json.dumps(progress.lines)):
            self.queue.enqueue(job_id)

    def register(self, row: Job, run_dir: Path) -> str:
        """The run as a new version of the job's model, with alias `candidate` (never `production` by itself)."""
        from goldmine.serving.registry import promote, register

        registered = register(self.db, self.settings.registry_dir, row.model_name, run_dir, row.tenant_id,
                              first_alias=None)
        promote(self.db, row.model_name, registered.version, alias="candidate", tenant=row.tenant_id)
        return registered.version


def requeue_lost(db: Database, settings: ServingSettings, queue: JobQueue) -> list[str]:
    """Put running jobs whose lease expired back on the queue; returns their ids. Billing: the CPU of the lost
    attempt after its last checkpoint is not billed (`cpu_ms` was last committed at that checkpoint)."""
    cutoff = utcnow() - timedelta(seconds=settings.jobs.lease_seconds)
    requeued = []
    with db.session() as session:
        stale = session.execute(select(Job.id, Job.heartbeat_at, Job.log_json).where(
            Job.status == "running", Job.heartbeat_at < cutoff)).all()
    for job_id, beat, lines in stale:
        note = f"worker lost (no heartbeat since {beat.isoformat()}Z); queued again"
        with db.session() as session:
            taken = session.execute(update(Job).where(Job.id == job_id, Job.status == "running",
                                                      Job.heartbeat_at == beat).values(
                status="queued", worker=None, eta_seconds=None,
                log_json=json.dumps([*json.loads(lines), note][-LOG_LINES:]))).rowcount
        if taken == 1:
            log.warning("job %s: %s", job_id, note)
            queue.enqueue(job_id)
            requeued.append(job_id)
    return requeued + resend_lost_messages(db, settings, queue)


def resend_lost_messages(db: Database, settings: ServingSettings, queue: JobQueue) -> list[str]:
    """Send the message of a queued job again when the queue has lost it: a Redis that restarted without its
    data, a queue file deleted, a worker that took the message and died before it could claim the job. Such a job
    is `queued` with no message on the queue, and would wait forever. Only jobs queued for longer than a lease are
    looked at (a worker claims a job within moments of taking its message); a message sent twice is harmless, as
    only one worker can claim a job (`Worker.claim`). Returns the ids sent again."""
    cutoff = utcnow() - timedelta(seconds=settings.jobs.lease_seconds)
    with db.session() as session:
        waiting = set(session.scalars(select(Job.id).where(Job.status == "queued", Job.created_at < cutoff)))
    if not waiting:
        return []
    lost = sorted(waiting - queue.pending_jobs())
    for job_id in lost:
        log.warning("job %s: queued without a message on the queue (lost); sent again", job_id)
        queue.enqueue(job_id)
    return lost
