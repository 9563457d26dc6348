"""Chainable single-model filters for the recommendation models."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone


class EmbeddingSpaceQuerySet(models.QuerySet):
    def active(self) -> EmbeddingSpaceQuerySet:
        return self.filter(state="active")


class InteractionQuerySet(models.QuerySet):
    def for_shopper(
        self, *, session_key: str | None = None, user_id: int | None = None
    ) -> InteractionQuerySet:
        if user_id is not None:
            return self.filter(models.Q(user_id=user_id) | models.Q(session_key=session_key or "\0"))
        return self.filter(session_key=session_key or "\0")

    def recent(self, *, max_age_s: float) -> InteractionQuerySet:
        return self.filter(created_at__gte=timezone.now() - timedelta(seconds=max_age_s))
