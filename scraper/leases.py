"""Leases on import jobs: a job whose worker died is started over within ``STALE_JOB_S``, not left
"running" until the broker's visibility timeout (or forever).

A run owns its job while ``heartbeat_at`` is fresh: a thread in the worker renews it every third of
``STALE_JOB_S`` while the walk runs and while an image task of the job downloads. Each run is told apart by
``started_at`` (set when a run claims the job): a run whose job was taken over finds its updates refused and
stops, and image tasks of an earlier run do nothing. ``requeue_stale_jobs`` (Celery beat, every
``LOOKALIKE_SWEEP_INTERVAL_S``) queues the import again for every unfinished job whose heartbeat is older
than ``STALE_JOB_S``; the redelivered task takes the job over (``services._claim``) and starts it over,
which upserts make safe: images already stored are reused, not downloaded again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from scraper.conf import app_setting
from scraper.models import ImportJob

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the job over (this run was silent longer than STALE_JOB_S): stop, write nothing."""


def lease_s() -> float:
    return float(app_setting("STALE_JOB_S"))


def run_token(job: ImportJob) -> str:
    """What tells this run of the job from a later one (``started_at`` is set by each claim)."""
    return job.started_at.isoformat() if job.started_at else ""


def this_run(job_id: int, token: str) -> dict[str, object]:
    """Filter kwargs matching the job only while the run ``token`` still owns it."""
    if not token:
        return {"pk": job_id}
    return {"pk": job_id, "started_at": datetime.fromisoformat(token)}


@contextlib.contextmanager
def heartbeat(job_id: int, token: str) -> Iterator[None]:
    """Keep the job's lease while the body runs."""

    def renew() -> bool:
        return bool(
            ImportJob.objects.filter(**this_run(job_id, token), finished_at__isnull=True).update(
                heartbeat_at=timezone.now()
            )
        )

    with renewing(renew, every_s=lease_s() / 3):
        yield


def expect_back(job_id: int, token: str, *, after_s: float) -> None:
    """Hold the lease through a planned pause (images retried later): nothing renews it meanwhile."""
    back_at = timezone.now() + timedelta(seconds=after_s)
    ImportJob.objects.filter(**this_run(job_id, token), finished_at__isnull=True).update(
        heartbeat_at=Greatest(F("heartbeat_at"), back_at)
    )


@contextlib.contextmanager
def renewing(renew: Callable[[], bool], *, every_s: float) -> Iterator[None]:
    """Call ``renew`` every ``every_s`` seconds in a thread while the body runs; the thread dies with the
    process, and so does the lease."""
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(every_s):
                try:
                    if not renew():
                        return  # finished, or taken over: the run notices at its next write
                except Exception:  # the database may be restarting: try again at the next tick
                    logger.exception("Could not renew an import job's heartbeat")
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=loop, name="job-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def requeue_stale_jobs() -> int:
    """Queue the import again for every unfinished job whose worker went silent; returns how many."""
    from scraper.tasks import import_catalog_task

    now = timezone.now()
    requeued: list[int] = []
    with transaction.atomic():
        # Jobs queued for the first time have no heartbeat: they wait for a worker, however long.
        stale = ImportJob.objects.select_for_update(skip_locked=True).filter(
            status__in=[ImportJob.Status.RUNNING, ImportJob.Status.QUEUED],
            finished_at__isnull=True,
            heartbeat_at__lt=now - timedelta(seconds=lease_s()),
        )
        for job in stale:
            if job.cancel_requested:
                job.status, job.finished_at = ImportJob.Status.CANCELLED, now
                job.walk_finished_at = job.walk_finished_at or now
                job.save(update_fields=["status", "finished_at", "walk_finished_at"])
                continue
            logger.warning("Import job %s: its worker went silent; queueing it again", job.pk)
            # The new heartbeat is the requeued message's lease: unclaimed within one, it is sent again.
            job.status, job.heartbeat_at = ImportJob.Status.QUEUED, now
            job.message = "The worker running this import stopped; it was started over."
            job.save(update_fields=["status", "heartbeat_at", "message"])
            requeued.append(job.pk)
        transaction.on_commit(lambda: [import_catalog_task.delay(job_id) for job_id in requeued])
    return len(requeued)
