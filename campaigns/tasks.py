"""Celery tasks: thin wrappers around services (``campaigns.embed_*`` run on the ``embeddings`` queue)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from campaigns.services import embed_creative


@shared_task(
    name="campaigns.embed_creative",
    acks_late=True,
    autoretry_for=(OperationalError, OSError),
    retry_backoff=True,
    max_retries=5,
)
def embed_creative_task(creative_id: int) -> str:
    """Embed one creative with the active encoder; a second run changes nothing."""
    return embed_creative(creative_id=creative_id)
