"""``manage.py compute_neighbours [--k 20]``: store every product's exact top-K similar products."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace
from recommendations.neighbours import compute_neighbours


class Command(BaseCommand):
    help = (
        "Compute the exact top-K similar products of every product in the active embedding space "
        "(or --space) by blocked matrix multiplication, and replace the stored neighbours of that space."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--k", type=int, default=None, help="neighbours per product (default NEIGHBOURS_K)"
        )
        parser.add_argument(
            "--space", type=int, default=None, help="embedding space id (default: the active one)"
        )
        parser.add_argument(
            "--block-rows",
            type=int,
            default=None,
            help="rows per matrix-multiplication block (default: 2048 on CPU, 8192 on CUDA)",
        )
        parser.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options) -> None:
        space = None
        if options["space"] is not None:
            space = EmbeddingSpace.objects.filter(pk=options["space"]).first()
            if space is None:
                raise CommandError(f"No embedding space with id {options['space']}.")
        k = options["k"] or app_setting("NEIGHBOURS_K")
        if k < 1:
            raise CommandError("--k must be at least 1.")

        bar = tqdm(total=0, unit="block", desc="top-k", disable=options["no_progress"], file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            report = compute_neighbours(
                space=space,
                k=k,
                block_rows=options["block_rows"],
                device=options["device"],
                progress=progress,
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        finally:
            bar.close()
        self.stdout.write(
            self.style.SUCCESS(
                f"Space {report.space_id}: {report.products:,} products, top-{report.k}: "
                f"{report.rows_written:,} neighbours stored "
                f"(read {report.load_s:.1f} s, compute {report.compute_s:.1f} s, "
                f"write {report.write_s:.1f} s)."
            )
        )
