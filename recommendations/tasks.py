"""Celery tasks of the embedding pipeline: ids in, one service call inside.

``recommendations.embed_*`` tasks are routed to the ``embeddings`` queue (config/settings.py), served by
workers that hold the model; ``finish_reembedding`` only queries and runs on the default queue.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from recommendations import cache, interactions, leases, services
from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace

# Worth a retry: the database restarting or unreachable, storage (disk, NFS, S3) failing to answer. Bad
# images are not errors (they are recorded as failed), and missing weights or an unknown encoder would
# fail the same way again.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, OSError)


@shared_task(
    name="recommendations.embed_images",
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=5,
)
def embed_images_task(
    image_ids: list[int],
    space_id: int | None = None,
    weights: str | None = None,
    force: bool = False,
    batch_id: int | None = None,
) -> dict[str, Any] | None:
    """Embed these images into one space (space_id) or every live one (None); a second run skips them all.

    With ``batch_id``, under that batch's lease: None when it is done or another worker holds it.
    """
    with leases.held_batch(batch_id) as ours:
        if not ours:
            return None
        space = None
        if space_id is not None:
            space = EmbeddingSpace.objects.filter(pk=space_id).first()
            if space is None:  # deleted since the task was queued
                return services.EmbedReport(unavailable=len(image_ids)).as_dict()
        report = services.embed_images(image_ids, space=space, weights=weights, force=force)
        if report.embedded or report.failed:
            cache.bump_catalog_version()  # new vectors change other products' similar items
        return report.as_dict()


@shared_task(name="recommendations.requeue_expired_batches")
def requeue_expired_batches_task() -> int:
    """The sweeper (Celery beat): queue again the embedding batches whose worker died."""
    return leases.requeue_expired_batches()


@shared_task(
    name="recommendations.embed_catalog",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def embed_catalog_task(
    space_id: int | None = None,
    store_id: int | None = None,
    weights: str | None = None,
    limit: int | None = None,
) -> int:
    """Fan the catalog (or one store's part) out in chunks of TASK_CHUNK_SIZE images; returns how many.

    space_id None: the space of the configured ENCODER and WEIGHTS (created if needed).
    """
    if space_id is None:
        weights = str(weights or app_setting("WEIGHTS"))
        space = services.prepare_space(app_setting("ENCODER"), weights)
    else:
        found = EmbeddingSpace.objects.filter(pk=space_id).first()
        if found is None:
            return 0
        space = found
    return services.queue_catalog_embedding(space, store_id=store_id, limit=limit, weights=weights)


@shared_task(
    name="recommendations.finish_reembedding",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def finish_reembedding_task(
    space_id: int, weights: str | None = None, previous_missing: int | None = None, stalled_polls: int = 0
) -> str:
    """Activate the building space once every image is in it; until then check again every REEMBED_POLL_S."""
    space = EmbeddingSpace.objects.filter(pk=space_id).first()
    if space is None:
        return "deleted"
    check = services.check_reembedding(
        space, weights=weights, previous_missing=previous_missing, stalled_polls=stalled_polls
    )
    if check.done:
        return "active"
    if not check.building:
        return space.state
    finish_reembedding_task.apply_async(
        kwargs={
            "space_id": space_id,
            "weights": weights,
            "previous_missing": check.missing,
            "stalled_polls": check.stalled_polls,
        },
        countdown=app_setting("REEMBED_POLL_S"),
    )
    return f"building: {check.missing} images missing"


@shared_task(name="recommendations.expire_profiles", acks_late=True)
def expire_profiles_task() -> dict[str, int]:
    """For Celery beat (``CELERY_BEAT_SCHEDULE`` in config/settings.py runs it every six hours)."""
    report = interactions.expire_profiles()
    return {"interactions_deleted": report.interactions_deleted, "shown_deleted": report.shown_deleted}


@shared_task(
    name="recommendations.adapt_embeddings",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def adapt_embeddings_task(adaptation_id: int) -> str:
    """Run one recorded adaptation; a redelivered message for a finished one does nothing."""
    from recommendations import adaptation as adaptation_service
    from recommendations.models import Adaptation

    adaptation = Adaptation.objects.filter(pk=adaptation_id).select_related("base_space").first()
    if adaptation is None or adaptation.status in (
        Adaptation.Status.ACTIVATED,
        Adaptation.Status.KEPT_BASE,
        Adaptation.Status.FAILED,
    ):
        return adaptation.status if adaptation is not None else "missing"
    try:
        adaptation_service.run_adaptation(adaptation)
    except (OperationalError, InterfaceError):
        raise  # retried
    except Exception as error:
        adaptation_service.record_failure(adaptation_id, error)
        return Adaptation.Status.FAILED
    return adaptation.status
