"""Leases on embedding batches: a batch whose worker died is embedded again within a lease, not after the
broker's visibility timeout.

Each ``embed_images`` task queued by ``services.queue_image_embedding`` carries the id of an
``EmbeddingBatch`` row. The task claims the batch (status "running", a lease of ``BATCH_LEASE_S`` owned by
this process) and a thread renews the lease every third of it while the batch runs; the batch is marked done
when it ends. A worker killed mid-batch stops renewing, and ``requeue_expired_batches`` (Celery beat, every
``LOOKALIKE_SWEEP_INTERVAL_S``) queues it again. Whichever message arrives (the sweeper's, or the broker's
redelivery of the original) takes over a batch whose lease has expired and skips one that is done or held:
each batch is finished once, and the vectors themselves are upserts, so nothing is stored twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from recommendations.conf import app_setting
from recommendations.models import EmbeddingBatch

logger = logging.getLogger(__name__)

Status = EmbeddingBatch.Status


def _lease_s() -> float:
    return float(app_setting("BATCH_LEASE_S"))


def claim_batch(batch_id: int) -> str | None:
    """Take the batch for this process; returns the lease token, or None when there is nothing to do (done,
    failed, deleted, or running under another worker's live lease)."""
    now = timezone.now()
    with transaction.atomic():
        batch = EmbeddingBatch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.status in (Status.DONE, Status.FAILED):
            return None
        if batch.status == Status.RUNNING and batch.lease_expires_at and batch.lease_expires_at > now:
            return None  # a redelivered message while the first worker is still at it
        if batch.attempts >= int(app_setting("BATCH_MAX_ATTEMPTS")):
            _fail(batch)
            return None
        if batch.status == Status.RUNNING:
            logger.warning("Taking over %s from %s, whose lease expired", batch, batch.lease_owner)
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        batch.status, batch.lease_owner = Status.RUNNING, token
        batch.lease_expires_at = now + timedelta(seconds=_lease_s())
        batch.attempts += 1
        batch.save(update_fields=["status", "lease_owner", "lease_expires_at", "attempts"])
    return token


def renew_batch(batch_id: int, token: str) -> bool:
    """Extend the lease; False when this process no longer holds it."""
    expires = timezone.now() + timedelta(seconds=_lease_s())
    return bool(
        EmbeddingBatch.objects.filter(pk=batch_id, lease_owner=token, status=Status.RUNNING).update(
            lease_expires_at=expires
        )
    )


def finish_batch(batch_id: int, token: str) -> None:
    EmbeddingBatch.objects.filter(pk=batch_id, lease_owner=token).update(
        status=Status.DONE, lease_expires_at=None, finished_at=timezone.now()
    )


def expire_batch(batch_id: int, token: str) -> None:
    """The run raised: let the lease lapse now, so the batch is retried (and counted against
    BATCH_MAX_ATTEMPTS) as if its worker had died."""
    EmbeddingBatch.objects.filter(pk=batch_id, lease_owner=token, status=Status.RUNNING).update(
        lease_expires_at=timezone.now()
    )


@contextlib.contextmanager
def held_batch(batch_id: int | None) -> Iterator[bool]:
    """Run the body under the batch's lease; yields False (skip the work) when the batch is not ours to
    run. ``batch_id`` None (a task queued without a batch row) runs without a lease."""
    if batch_id is None:
        yield True
        return
    token = claim_batch(batch_id)
    if token is None:
        yield False
        return
    with renewing(lambda: renew_batch(batch_id, token), every_s=_lease_s() / 3):
        try:
            yield True
        except BaseException:
            expire_batch(batch_id, token)
            raise
    finish_batch(batch_id, token)


@contextlib.contextmanager
def renewing(renew: Callable[[], bool], *, every_s: float) -> Iterator[None]:
    """Call ``renew`` every ``every_s`` seconds in a thread while the body runs (a long model batch or a
    slow storage read does not let the lease lapse); the thread dies with the process, and so does the
    lease."""
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(every_s):
                try:
                    if not renew():
                        logger.warning("Lost a lease while still working on it")
                        return
                except Exception:  # the database may be restarting: try again at the next tick
                    logger.exception("Could not renew a lease")
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=loop, name="lease-renewer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def requeue_expired_batches() -> int:
    """Queue again every batch whose lease has expired (its worker died, or the message the sweeper sent
    last time was not picked up within a lease); returns how many were queued. Also forgets batches done
    longer ago than BATCH_KEEP_S."""
    from recommendations.tasks import embed_images_task

    now = timezone.now()
    requeued: list[EmbeddingBatch] = []
    with transaction.atomic():
        expired = EmbeddingBatch.objects.select_for_update(skip_locked=True).filter(
            lease_expires_at__lt=now, status__in=[Status.RUNNING, Status.QUEUED]
        )
        for batch in expired:
            if batch.attempts >= int(app_setting("BATCH_MAX_ATTEMPTS")):
                _fail(batch)
                continue
            logger.warning("Requeueing %s: the lease of %s expired", batch, batch.lease_owner or "the queue")
            # Queued with a lease: if no worker claims it within one, the next sweep sends it again.
            batch.status, batch.lease_owner = Status.QUEUED, ""
            batch.lease_expires_at = now + timedelta(seconds=_lease_s())
            batch.save(update_fields=["status", "lease_owner", "lease_expires_at"])
            requeued.append(batch)

        def send() -> None:
            for batch in requeued:
                embed_images_task.delay(
                    list(batch.image_ids),
                    space_id=batch.space_id,
                    weights=batch.weights or None,
                    force=batch.force,
                    batch_id=batch.pk,
                )

        transaction.on_commit(send)
    keep_after = now - timedelta(seconds=float(app_setting("BATCH_KEEP_S")))
    EmbeddingBatch.objects.filter(status=Status.DONE, finished_at__lt=keep_after).delete()
    return len(requeued)


def _fail(batch: EmbeddingBatch) -> None:
    logger.error("Giving up %s after %s attempts", batch, batch.attempts)
    batch.status, batch.lease_expires_at, batch.finished_at = Status.FAILED, None, timezone.now()
    batch.save(update_fields=["status", "lease_expires_at", "finished_at"])
