"""ID scan jobs: created by POST, run in the background, held in memory.

Jobs live only in this process, as the API reference specifies. A finished job
expires `job_ttl_s` after it finished. A namespace keeps at most
`max_jobs_per_namespace` jobs: creating one more first drops the oldest
finished job, or fails with 429 when every job is still running.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.api import JobError, JobStatus, ScanJobView, ServedBy, Source
from service.engine import IdsOutcome
from service.errors import ApiError, NotFound, TooManyJobs
from service.progress import Progress

logger = logging.getLogger(__name__)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ScanJob:
    """One ID scan job and, once completed, its sorted ids."""

    id: str
    namespace: str
    source: Source
    effective_source: ServedBy
    filters: Any
    created_at: str = field(default_factory=_utc_now)
    status: JobStatus = "running"
    progress: Progress = field(default_factory=Progress)
    completed_at: str | None = None
    finished_monotonic: float | None = None
    outcome: IdsOutcome | None = None
    error: JobError | None = None
    task: asyncio.Task[None] | None = None

    def view(self) -> ScanJobView:
        view = ScanJobView(
            id=self.id,
            namespace=self.namespace,
            source=self.source,
            effective_source=self.effective_source,
            status=self.status,
            progress=round(self.progress.fraction, 4),
            documents_scanned=self.progress.documents_scanned,
            created_at=self.created_at,
            completed_at=self.completed_at,
            filters=self.filters,
            error=self.error,
        )
        if self.outcome is not None:
            view.total = len(self.outcome.ids)
            if self.effective_source == "cache":
                view.stable_as_of = self.outcome.stable_as_of
            else:
                view.watermark_ms = self.outcome.watermark_ms
        return view


ScanRunner = Callable[[ScanJob], Awaitable[IdsOutcome]]


class JobRegistry:
    """All ID scan jobs of this process, per namespace, oldest first."""

    def __init__(self, ttl_s: float, max_per_namespace: int) -> None:
        self._ttl_s = ttl_s
        self._max_per_namespace = max_per_namespace
        self._jobs: dict[str, OrderedDict[str, ScanJob]] = {}

    def create(
        self,
        namespace: str,
        source: Source,
        effective_source: ServedBy,
        filters: Any,
        runner: ScanRunner,
    ) -> ScanJob:
        """Register a job and start running it."""
        self.expire()
        jobs = self._jobs.setdefault(namespace, OrderedDict())
        if len(jobs) >= self._max_per_namespace:
            self._evict_oldest_finished(namespace, jobs)
        job = ScanJob(
            id=str(uuid.uuid4()),
            namespace=namespace,
            source=source,
            effective_source=effective_source,
            filters=filters,
        )
        jobs[job.id] = job
        job.task = asyncio.create_task(self._run(job, runner), name=f"scan-{job.id}")
        logger.info(
            "scan job %s started on %s from %s", job.id, namespace, effective_source
        )
        return job

    def _evict_oldest_finished(self, namespace: str, jobs: OrderedDict[str, ScanJob]) -> None:
        for job_id, job in jobs.items():
            if job.status != "running":
                del jobs[job_id]
                logger.info("scan job %s dropped to make room in %s", job_id, namespace)
                return
        raise TooManyJobs(
            f"namespace {namespace!r} already runs {len(jobs)} scan jobs, the "
            "maximum; wait for one to finish or DELETE one"
        )

    async def _run(self, job: ScanJob, runner: ScanRunner) -> None:
        started = time.perf_counter()
        try:
            job.outcome = await runner(job)
            job.status = "completed"
        except asyncio.CancelledError:
            job.progress.cancel.set()
            job.status = "cancelled"
            raise
        except ApiError as exc:
            job.status = "failed"
            job.error = JobError(error=exc.code, message=exc.message)
        except TimeoutError as exc:
            job.status = "failed"
            job.error = JobError(error="timed_out", message=str(exc))
        except Exception as exc:
            logger.exception("scan job %s on %s failed", job.id, job.namespace)
            job.status = "failed"
            job.error = JobError(
                error="internal_error", message=f"scan failed: {exc!r}"
            )
        finally:
            job.completed_at = _utc_now()
            job.finished_monotonic = time.monotonic()
            logger.info(
                "scan job %s on %s %s in %.3fs, %d documents scanned%s",
                job.id,
                job.namespace,
                job.status,
                time.perf_counter() - started,
                job.progress.documents_scanned,
                f": {job.error.message}" if job.error else "",
            )

    def get(self, namespace: str, job_id: str) -> ScanJob:
        self.expire()
        job = self._jobs.get(namespace, {}).get(job_id)
        if job is None:
            raise NotFound(
                f"scan job {job_id!r} not found in namespace {namespace!r}; it may "
                f"have expired ({self._ttl_s:g}s after finishing) or been deleted"
            )
        return job

    def list(self, namespace: str) -> list[ScanJob]:
        self.expire()
        return list(self._jobs.get(namespace, {}).values())

    async def delete(self, namespace: str, job_id: str) -> ScanJob:
        """Drop a job, cancelling it first when it still runs."""
        job = self.get(namespace, job_id)
        del self._jobs[namespace][job_id]
        if job.task is not None and not job.task.done():
            job.progress.cancel.set()
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)
        logger.info("scan job %s on %s deleted", job_id, namespace)
        return job

    def expire(self) -> None:
        """Drop finished jobs older than the TTL."""
        horizon = time.monotonic() - self._ttl_s
        for namespace, jobs in self._jobs.items():
            expired = [
                job_id
                for job_id, job in jobs.items()
                if job.finished_monotonic is not None and job.finished_monotonic < horizon
            ]
            for job_id in expired:
                del jobs[job_id]
                logger.info("scan job %s on %s expired", job_id, namespace)

    async def close(self) -> None:
        """Cancel every running job (server shutdown)."""
        tasks = [
            job.task
            for jobs in self._jobs.values()
            for job in jobs.values()
            if job.task is not None and not job.task.done()
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
