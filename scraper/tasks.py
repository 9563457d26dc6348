"""Celery tasks of the catalog import; all routed to the ``scrape`` queue (``scraper.*``).

Thin and idempotent: ids in, a service call inside. A redelivered ``scraper.import_catalog`` either
finds the job finished (nothing to do), still running on another worker under a live lease (nothing to
do), or takes it over and starts it over (upserts make that safe); see ``scraper.leases``.
"""

from __future__ import annotations

import contextlib
import random

from celery import shared_task

from scraper import leases
from scraper.catalog import ImageWork
from scraper.conf import app_setting
from scraper.models import ImportJob
from scraper.services import RetryLater, fetch_images, retry_failed_rows, run_import

# An import walks a whole store; the global soft limit (30 min) suits short tasks, not this one.
IMPORT_TIME_LIMIT_S = 12 * 3600


@shared_task(
    name="scraper.import_catalog",
    bind=True,
    acks_late=True,
    max_retries=None,  # counted against SCRAPER["IMPORT_TASK_RETRIES"] below
    soft_time_limit=IMPORT_TIME_LIMIT_S,
    time_limit=IMPORT_TIME_LIMIT_S + 60,
)
def import_catalog_task(self, job_id: int) -> None:
    job = ImportJob.objects.select_related("store").filter(pk=job_id).first()
    if job is None:
        return
    can_retry = self.request.retries < int(app_setting("IMPORT_TASK_RETRIES"))
    try:
        run_import(job, images="queue", can_retry_later=can_retry)
    except RetryLater as later:
        raise self.retry(countdown=later.countdown_s) from None


@shared_task(name="scraper.fetch_images", acks_late=True)
def fetch_images_task(job_id: int, items: list[list], attempt: int = 0, run: str = "") -> None:
    """Download one chunk of image URLs for one run of the job; retryable failures (timeouts, 5xx, 429)
    come back later as a new task with the failed items only, up to ``SCRAPER["IMAGE_TASK_RETRIES"]``
    times."""
    work = [ImageWork.from_list(item) for item in items]
    outcome = fetch_images(job_id=job_id, work=work, attempt=attempt, run=run)
    if outcome is not None and outcome.deferred:
        backoff_s = 30.0 * 2**attempt
        countdown_s = max(outcome.defer_s, backoff_s / 2 + random.uniform(0, backoff_s / 2))
        leases.expect_back(job_id, run, after_s=countdown_s)
        fetch_images_task.apply_async(
            (job_id, [item.as_list() for item in outcome.deferred], attempt + 1, run), countdown=countdown_s
        )


@shared_task(name="scraper.requeue_stale_jobs")
def requeue_stale_jobs_task() -> int:
    """The sweeper (Celery beat): start over the import jobs whose worker went silent."""
    return leases.requeue_stale_jobs()


@shared_task(name="scraper.retry_failed_rows", acks_late=True, soft_time_limit=IMPORT_TIME_LIMIT_S)
def retry_failed_rows_task(job_id: int) -> None:
    job = ImportJob.objects.select_related("store").filter(pk=job_id).first()
    if job is not None and job.is_finished:
        with contextlib.suppress(ValueError):  # asked twice: the first task is already at it
            retry_failed_rows(job, images="queue")
