"""``manage.py import_catalog SOURCE --store NAME [--kind ...] [--full-sync] [--sync] [--dry-run]``.

SOURCE is a URL (a Shopify store, a sitemap or a store's home page, a Merchant feed, a CSV) or a path
on this machine (a CSV or TSV file, a folder of photos, a ZIP of photos, a Merchant feed file).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from lookalike.catalog import has_field, store_field, store_model
from scraper.conf import build_client
from scraper.forms import clean_currency_code
from scraper.http import FetchError
from scraper.models import ImportJob
from scraper.selectors import preview_import
from scraper.services import run_import, start_import


class Command(BaseCommand):
    help = (
        "Import a catalog into a store: from a URL (Shopify, sitemap.xml, Google Merchant feed, CSV) or a "
        "local CSV/TSV file, folder of photos or ZIP. Products are matched by external id: running it "
        "again updates, never duplicates."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="a URL, or a path to a CSV/TSV file, a folder of photos or a ZIP")
        parser.add_argument(
            "--store", required=True, help="store id or name (a store with that name is created if missing)"
        )
        parser.add_argument(
            "--kind",
            default=ImportJob.Kind.AUTO,
            choices=[choice.value for choice in ImportJob.Kind],
            help="what the source is (default: detected)",
        )
        parser.add_argument(
            "--full-sync",
            action="store_true",
            help="mark the store's products that the source no longer lists as out of stock",
        )
        parser.add_argument(
            "--sync",
            action="store_true",
            help="import here and now, images included, with a progress bar (default: queue it for a worker)",
        )
        parser.add_argument("--collection", default="", help="Shopify: import one collection (its handle)")
        parser.add_argument(
            "--currency",
            default="",
            help="ISO code of prices the source gives without one (Shopify, CSV exports); also the "
            "currency of a store created by this command",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="read the source and show what would be imported; write nothing, download no photo",
        )
        parser.add_argument(
            "--json",
            default="",
            metavar="FILE",
            help="with --dry-run: write the products, variants, errors and warnings as JSON to FILE "
            "('-' for standard output)",
        )
        parser.add_argument("--user", default="", help="username recorded as the one who started it")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        source: str = options["source"]
        is_url = source.lower().startswith(("http://", "https://"))
        if is_url:
            with build_client() as client:
                try:
                    client.check_url(source)
                except FetchError as error:
                    raise CommandError(f"{source}: {error.reason}") from None
        elif not Path(source).exists():
            raise CommandError(f"{source} does not exist (give a URL or a path to a file or folder)")
        currency = clean_currency_code(options["currency"], error=CommandError)
        if options["json"] and not options["dry_run"]:
            raise CommandError("--json goes with --dry-run")
        if options["dry_run"]:
            store = self._store(
                options["store"], base_url=source if is_url else "", currency=currency, create=False
            )
            job = ImportJob(
                store=store,
                kind=options["kind"],
                source_url=source if is_url else "",
                source_path="" if is_url else str(Path(source).resolve()),
                options={
                    name: value
                    for name, value in (("collection", options["collection"]), ("currency", currency))
                    if value
                },
            )
            self._dry_run(preview_import(job), json_path=options["json"])
            return
        store = self._store(options["store"], base_url=source if is_url else "", currency=currency)
        # Other commands (embed_catalog, evaluate_similarity) take this name or id as --store.
        self.stdout.write(f"Store {store} (id {store.pk}).")
        user = None
        if options["user"]:
            user = get_user_model()._default_manager.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        job = start_import(
            store=store,
            kind=options["kind"],
            source_url=source if is_url else "",
            source_path="" if is_url else str(Path(source).resolve()),
            full_sync=options["full_sync"],
            options={
                name: value
                for name, value in (("collection", options["collection"]), ("currency", currency))
                if value
            },
            started_by=user,
            queue=not options["sync"],
        )
        if not options["sync"]:
            self.stdout.write(
                f"Import #{job.pk} into {store} is queued on the 'scrape' queue; follow it in the admin at "
                f"/admin/scraper/importjob/{job.pk}/change/ (a worker must be running)."
            )
            return
        job = self._run_with_progress(job, disabled=options["no_progress"])
        self._summarise(job)
        if job.status == ImportJob.Status.FAILED:
            raise CommandError(f"Import #{job.pk} failed: {job.message or 'see the errors above'}")

    def _dry_run(self, preview: dict[str, Any], *, json_path: str) -> None:
        if json_path:
            text = json.dumps(preview, ensure_ascii=False, indent=2)
            if json_path == "-":
                self.stdout.write(text)
                return
            Path(json_path).write_text(text + "\n", encoding="utf-8")
        products = preview["products"]
        variants = sum(len(product["variants"]) for product in products)
        self.stdout.write(
            f"Dry run ({preview['kind']}): {len(products):,} products with {variants:,} variants would "
            f"be imported; {len(preview['errors']):,} errors; {preview['skipped']:,} skipped. "
            "Nothing was written."
        )
        for product in products[:20]:
            price = (
                f"{product['price']} {product['currency']}" if product["price"] is not None else "no price"
            )
            self.stdout.write(
                f"  {product['external_id']}: {product['title']} — {price}"
                f"{' — ' + product['category'] if product['category'] else ''}"
                f" — {len(product['images'])} photo(s), {len(product['variants'])} variant(s)"
            )
        if len(products) > 20:
            self.stdout.write(f"  … and {len(products) - 20:,} more")
        for error in preview["errors"][:20]:
            self.stdout.write(self.style.ERROR(f"  {error['row']}: {error['reason']}"))
        for warning in preview["warnings"]:
            self.stdout.write(self.style.WARNING(f"Warning: {warning}"))

    def _store(self, value: str, *, base_url: str, currency: str = "", create: bool = True) -> Any:
        model = store_model()
        if value.isdigit():
            found = model._default_manager.filter(pk=int(value)).first()
            if found is not None:
                return found
        name_field, url_field = store_field("name"), store_field("base_url")
        if name_field is None or not has_field(model, name_field):
            raise CommandError(f"no store with id {value}")
        found = model._default_manager.filter(**{name_field: value}).order_by("pk").first()
        if found is not None:
            return found
        values: dict[str, Any] = {str(name_field): value}
        currency_field = store_field("currency")
        if currency and has_field(model, currency_field):
            values[str(currency_field)] = currency
        if not create:  # a dry run: the store it would create, unsaved
            return model(**values)
        if base_url and has_field(model, url_field):
            values[str(url_field)] = base_url.split("?", 1)[0]
        self.stdout.write(f"Creating the store {value!r}.")
        return model._default_manager.create(**values)

    def _run_with_progress(self, job: ImportJob, *, disabled: bool) -> ImportJob:
        bar = tqdm(desc=f"import #{job.pk}", unit=" products", disable=disabled, file=sys.stderr)

        def progress(current: ImportJob) -> None:
            bar.update(current.seen - bar.n)
            bar.set_postfix(
                created=current.created,
                updated=current.updated,
                unchanged=current.unchanged,
                failed=current.failed,
                images=f"{current.images_downloaded + current.images_reused}/{current.images_queued}",
                refresh=False,
            )

        try:
            return run_import(job, images="inline", on_progress=progress)
        finally:
            bar.close()

    def _summarise(self, job: ImportJob) -> None:
        styles: dict[str, Any] = {
            ImportJob.Status.SUCCEEDED: self.style.SUCCESS,
            ImportJob.Status.PARTIAL: self.style.WARNING,
        }
        style = styles.get(job.status, self.style.ERROR)
        self.stdout.write(
            style(
                f"Import #{job.pk} {job.get_status_display().lower()}: {job.seen:,} read, "
                f"{job.created:,} created, {job.updated:,} updated, {job.unchanged:,} unchanged, "
                f"{job.failed:,} failed, "
                f"{job.skipped:,} pages skipped; images: {job.images_downloaded:,} stored, "
                f"{job.images_reused:,} reused, {job.images_failed:,} failed"
                + (f"; {job.marked_out_of_stock:,} marked out of stock" if job.full_sync else "")
                + "."
            )
        )
        if job.message:
            self.stdout.write(self.style.WARNING(job.message))
        for warning in job.warnings:
            self.stdout.write(self.style.WARNING(f"Warning: {warning}"))
        reasons = Counter(job.errors.filter(retried=False).values_list("reason", flat=True))
        for reason, count in reasons.most_common(10):
            self.stdout.write(f"  {count:>6,} × {reason}")
        if len(reasons) > 10:
            self.stdout.write(f"  ... and {len(reasons) - 10} other reasons (see the admin)")
