"""``manage.py rename_creative_files``: once after upgrading, name stored creatives after their content."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from campaigns.services import rename_creative_files


class Command(BaseCommand):
    help = (
        "Store every creative file whose extension does not match its decoded image as "
        "<sha256>.<jpg|png|webp|gif> (or .bin), and delete the old file."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        renamed = rename_creative_files()
        for old_name, new_name in renamed:
            self.stdout.write(f"{old_name} -> {new_name}")
        self.stdout.write(f"{len(renamed)} creative file(s) renamed.")
