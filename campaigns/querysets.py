"""Chainable single-model filters for campaigns and their events."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone


class CampaignQuerySet(models.QuerySet):
    def running(self, *, now: datetime | None = None) -> CampaignQuerySet:
        """Live and within their dates."""
        now = now or timezone.now()
        return self.filter(status="live").filter(
            models.Q(starts_at__isnull=True) | models.Q(starts_at__lte=now),
            models.Q(ends_at__isnull=True) | models.Q(ends_at__gt=now),
        )


class CampaignEventQuerySet(models.QuerySet):
    def of_kind(self, kind: str) -> CampaignEventQuerySet:
        return self.filter(kind=kind)

    def for_campaign(self, campaign_id: int) -> CampaignEventQuerySet:
        return self.filter(campaign_id=campaign_id)
