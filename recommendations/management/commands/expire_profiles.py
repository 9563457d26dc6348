"""``manage.py expire_profiles [--max-age-s N]``: forget anonymous shoppers' old interactions."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from recommendations.interactions import expire_profiles


class Command(BaseCommand):
    help = (
        "Delete anonymous interactions and shown-product rows older than "
        "RECOMMENDATIONS['PROFILE_MAX_AGE_S'] (logged-in users' interactions are kept). "
        "Schedule it (cron, or Celery beat: recommendations.expire_profiles)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-age-s", type=float, default=None, help="Override PROFILE_MAX_AGE_S (seconds)."
        )

    def handle(self, *args: Any, max_age_s: float | None, **options: Any) -> None:
        report = expire_profiles(max_age_s=max_age_s)
        self.stdout.write(
            f"Deleted {report.interactions_deleted} interaction(s) and "
            f"{report.shown_deleted} shown-product row(s)."
        )
