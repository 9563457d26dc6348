"""Writes: catalog imports from start to finish.

``start_import`` creates a job (and queues it); ``run_import`` reads the source and upserts products by
(store, external id): a second run of the same import changes nothing and counts every product as
unchanged. Image URLs are downloaded through the guarded client, by ``scraper.fetch_images`` tasks
(``images="queue"``) or in this process (``images="inline"``, the command's ``--sync``); an image is
stored once per sha256 and never downloaded again for a product that has it. Embedding is not called
from here: the recommendation app's receiver queues it when an image row with a file is saved.

Stopping points: cancellation is checked after every batch (a page, or ``BATCH_SIZE`` rows); a worker
that dies loses at most one batch, and the redelivered task starts the job over (upserts make that
safe). A full re-sync marks products the source no longer lists as out of stock, never deletes them,
and only when the whole source was read.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from django.core.files import File
from django.db import DatabaseError, connections, models, transaction
from django.db.models import F
from django.utils import timezone

from lookalike.catalog import store_value
from scraper import leases
from scraper.catalog import CatalogWriter, ImageWork, Outcome, catalog_writer, sha256_hex
from scraper.conf import app_setting, build_client
from scraper.downloads import DownloadOutcome, download_images
from scraper.http import FetchError, FetchResult, GuardedClient
from scraper.models import ImportJob, ImportRowError
from scraper.parsers import (
    FeedError,
    ImageRejected,
    ScrapedProduct,
    detect_feed_format,
    inspect_image,
    parse_shopify_products,
)
from scraper.sources import (
    PAGE_END,
    CatalogSource,
    CatalogZipSource,
    CsvSource,
    Failure,
    ImageArchiveSource,
    ImageFolderSource,
    Limits,
    MerchantFeedSource,
    ShopifySource,
    SitemapSource,
    Skipped,
    SourceItem,
    Warned,
    shopify_page_number,
    zip_holds_catalog,
)

logger = logging.getLogger(__name__)

ImageMode = Literal["inline", "queue"]
Kind = ImportJob.Kind
COUNTERS = (
    "seen", "created", "updated", "unchanged", "failed", "skipped", "marked_out_of_stock",
    "images_queued", "images_downloaded", "images_reused", "images_failed",
)  # fmt: skip


class SourceUnusable(ValueError):
    """The source cannot be imported at all (unknown format, a kind that needs a URL, ...)."""


class ImportCancelled(Exception):
    pass


class RetryLater(Exception):
    """The source itself answered with a retryable failure before anything was imported."""

    def __init__(self, reason: str, *, countdown_s: float) -> None:
        self.reason = reason
        self.countdown_s = countdown_s
        super().__init__(reason)


# --- Jobs ------------------------------------------------------------------------------------------------


def start_import(
    *,
    store: models.Model,
    kind: str = Kind.AUTO,
    source_url: str = "",
    source_file: File | None = None,
    source_path: str = "",
    full_sync: bool = False,
    options: dict[str, Any] | None = None,
    started_by: Any = None,
    queue: bool = True,
) -> ImportJob:
    """Create an import job from exactly one of ``source_url``, ``source_file`` (an upload) or
    ``source_path`` (a file or folder on this machine); with ``queue`` it runs on a worker."""
    if sum(bool(value) for value in (source_url, source_file, source_path)) != 1:
        raise ValueError("give exactly one of source_url, source_file and source_path")
    job = ImportJob(
        store=store,  # type: ignore[misc]  # the configured store model (LOOKALIKE["STORE_MODEL"])
        kind=kind,
        source_url=source_url,
        source_path=source_path,
        full_sync=full_sync,
        options=options or {},
        started_by=started_by,
    )
    if source_file is not None:
        job.source_file.save(Path(source_file.name or "catalog").name, source_file, save=False)
    job.save()
    if queue:
        from scraper.tasks import import_catalog_task

        job_id = job.pk
        transaction.on_commit(lambda: import_catalog_task.delay(job_id))
    return job


def run_import(
    job: ImportJob,
    *,
    images: ImageMode = "queue",
    on_progress: Callable[[ImportJob], None] | None = None,
    can_retry_later: bool = False,
) -> ImportJob:
    """Import the job's source. Returns the job as it stands when the source is read (with
    ``images="queue"`` image tasks may still be running; the last one finishes the job).

    Raises ``RetryLater`` (with ``can_retry_later``) when the source answered 5xx/429/timeout before
    anything was imported, so the Celery task can retry it later.
    """
    started = _claim(job.pk)
    if started is None or started.is_finished:
        return started or ImportJob.objects.get(pk=job.pk)
    run = _ImportRun(started, images=images, on_progress=on_progress)
    try:
        with (
            leases.heartbeat(started.pk, run.token),
            build_client() as client,
            contextlib.ExitStack() as resources,
        ):
            run.client = client
            resources.callback(run.wait_for_downloads)  # before the client closes, on every path
            source = open_source(started, client=client, limits=run.limits, resources=resources)
            run.consume(source.iter_records())
            run.source_read(full_sync=started.full_sync)
    except ImportCancelled:
        run.stop()
    except leases.LeaseLost:
        logger.warning("import job %s was taken over by another worker; this run stops", started.pk)
        return ImportJob.objects.get(pk=started.pk)
    except FetchError as error:
        if can_retry_later and error.retryable and run.nothing_done:
            countdown_s = float(getattr(error, "retry_after_s", None) or 60.0)
            run.requeue(
                f"{error.url or 'the source'}: {error.reason}; trying again in {countdown_s:.0f} s",
                countdown_s=countdown_s,
            )
            raise RetryLater(error.reason, countdown_s=countdown_s) from None
        run.fail_source(Failure.from_fetch_error(error, error.url or started.source_url))
    except FeedError as error:
        run.fail_source(
            Failure(
                source_ref=started.source_label,
                reason=str(error),
                stage="fetch",
                retry_url=started.source_url,
                hides_products=True,
            )
        )
    except SourceUnusable as error:
        run.fail_source(Failure(source_ref=started.source_label, reason=str(error), stage="fetch"))
    except Exception as error:
        logger.exception("import job %s failed", started.pk)
        run.fail_source(
            Failure(source_ref=started.source_label, reason=f"internal error: {error!r}", stage="fetch")
        )
        raise
    return finish_if_done(started.pk)


def retry_failed_rows(
    job: ImportJob, *, images: ImageMode = "queue", on_progress: Callable[[ImportJob], None] | None = None
) -> ImportJob:
    """Fetch again what failed and can be fetched again: pages and feeds by URL, and images.

    Rows of an uploaded file fail the same way every time; they stay in the log (fix the file and
    import it again: products are matched by external id, so nothing is duplicated).
    Returns the job; ``ValueError`` while the job is still running.
    """
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if not job.is_finished:
            raise ValueError("the import is still running")
        errors = list(
            job.errors.filter(retried=False).exclude(retry_url="", image_id__isnull=True).order_by("pk")
        )
        if not errors:
            return job
        job.errors.filter(pk__in=[error.pk for error in errors]).update(retried=True)
        image_errors = [error for error in errors if error.stage == ImportRowError.Stage.IMAGE]
        other_errors = [error for error in errors if error.stage != ImportRowError.Stage.IMAGE]
        job.failed -= len(other_errors)
        job.seen -= sum(1 for error in other_errors if error.stage == ImportRowError.Stage.ROW)
        job.images_failed -= len(image_errors)
        job.images_queued -= len(image_errors)
        job.status = ImportJob.Status.RUNNING
        job.message, job.cancel_requested = "", False
        job.walk_finished_at = job.finished_at = None
        job.heartbeat_at = timezone.now()
        job.save()
    run = _ImportRun(job, images=images, on_progress=on_progress)
    try:
        with (
            leases.heartbeat(job.pk, run.token),
            build_client() as client,
            contextlib.ExitStack() as resources,
        ):
            run.client = client
            resources.callback(run.wait_for_downloads)
            for source in _retry_sources(job, other_errors, client=client, limits=run.limits):
                run.consume(source.iter_records())
            run.handle_images(_image_work_for_errors(run.writer, image_errors))
            run.retry_read()
    except ImportCancelled:
        run.stop()
    except leases.LeaseLost:
        return ImportJob.objects.get(pk=job.pk)
    except (FetchError, FeedError) as error:
        run.fail_source(
            Failure(source_ref=job.source_label, reason=getattr(error, "reason", str(error)), stage="fetch")
        )
    return finish_if_done(job.pk)


def request_cancel(job: ImportJob) -> ImportJob:
    """Ask a job to stop. A queued job, a job that only waits for images, and a job whose worker went
    silent (``STALE_JOB_S``) are cancelled at once; a running one stops after its current batch."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            return job
        job.cancel_requested = True
        stale_before = timezone.now() - timedelta(seconds=float(app_setting("STALE_JOB_S")))
        if (
            job.status == ImportJob.Status.QUEUED
            or job.walk_finished_at is not None
            or (job.heartbeat_at or job.created_at) < stale_before
        ):
            job.status = ImportJob.Status.CANCELLED
            job.finished_at = job.walk_finished_at = job.walk_finished_at or timezone.now()
        job.save()
    return job


def finish_if_done(job_id: int) -> ImportJob:
    """Give the job its final status once the source is read and every queued image is done."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.finished_at is not None or job.walk_finished_at is None:
            return job
        if not job.cancel_requested and job.images_done < job.images_queued:
            return job
        job.status = final_status(job)
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "finished_at"])
    return job


def final_status(job: ImportJob) -> str:
    if job.cancel_requested:
        return ImportJob.Status.CANCELLED
    if job.written == 0 and (job.failed or job.message):
        return ImportJob.Status.FAILED
    if job.failed or job.images_failed or job.message or not job.source_complete:
        return ImportJob.Status.PARTIAL
    return ImportJob.Status.SUCCEEDED


def _claim(job_id: int) -> ImportJob | None:
    """Mark the job running and start its counters over; ``None`` when another worker runs it now."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.is_finished:
            return job
        if job.cancel_requested:
            job.status, job.finished_at = ImportJob.Status.CANCELLED, timezone.now()
            job.walk_finished_at = job.walk_finished_at or job.finished_at
            job.save()
            return job
        fresh_after = timezone.now() - timedelta(seconds=float(app_setting("STALE_JOB_S")))
        if job.status == ImportJob.Status.RUNNING and job.heartbeat_at and job.heartbeat_at > fresh_after:
            return None  # a redelivered message while the first worker is still at it
        job.errors.all().delete()  # a job started over (a worker died) logs its errors again
        for name in COUNTERS:
            setattr(job, name, 0)
        job.status, job.message, job.source_complete = ImportJob.Status.RUNNING, "", False
        job.warnings = []
        job.started_at = job.heartbeat_at = timezone.now()
        job.walk_finished_at = job.finished_at = None
        job.save()
    return job


# --- Opening sources -------------------------------------------------------------------------------------

_FORMAT_KINDS = {"csv": Kind.CSV, "image_zip": Kind.IMAGE_FOLDER, "merchant": Kind.MERCHANT_FEED}


def limits_from_settings() -> Limits:
    return Limits(
        shopify_page_size=int(app_setting("SHOPIFY_PAGE_SIZE")),
        max_shopify_pages=int(app_setting("MAX_SHOPIFY_PAGES")),
        max_sitemap_depth=int(app_setting("MAX_SITEMAP_DEPTH")),
        max_sitemaps=int(app_setting("MAX_SITEMAPS")),
        max_product_pages=int(app_setting("MAX_PRODUCT_PAGES")),
        max_feed_bytes=int(app_setting("MAX_FEED_BYTES")),
        max_image_bytes=int(app_setting("MAX_IMAGE_BYTES")),
        max_image_pixels=int(app_setting("MAX_IMAGE_PIXELS")),
        zip_max_files=int(app_setting("ZIP_MAX_FILES")),
        zip_max_total_bytes=int(app_setting("ZIP_MAX_TOTAL_BYTES")),
        concurrency=int(app_setting("DOMAIN_MAX_CONCURRENCY")),
        chunk_records=int(app_setting("BATCH_SIZE")),
    )


def open_source(
    job: ImportJob, *, client: GuardedClient, limits: Limits, resources: contextlib.ExitStack
) -> CatalogSource:
    """The source that reads the job's file, folder or URL; an ``auto`` kind is resolved and saved."""
    base_url = str(store_value(job.store, "base_url", ""))
    if job.source_url:
        kind, prefetched = _resolve_url_kind(job, client)
        _save_kind(job, kind)
        return _url_source(job, kind, client=client, limits=limits, prefetched=prefetched)
    if job.source_path:
        path = Path(job.source_path)
        if path.is_dir():
            if job.kind not in (Kind.AUTO, Kind.IMAGE_FOLDER):
                raise SourceUnusable(f"{path} is a folder: only a folder of photos can be imported from it")
            _save_kind(job, Kind.IMAGE_FOLDER)
            return ImageFolderSource(path=path, limits=limits)
        if not path.is_file():
            raise SourceUnusable(f"{path} does not exist")
        stream: IO[bytes] = resources.enter_context(path.open("rb"))
        base_dir: Path | None = path.parent
    elif job.source_file:
        stream = resources.enter_context(job.source_file.open("rb"))
        base_dir = None
    else:
        raise SourceUnusable("the job has no source")
    head = stream.read(65536)
    stream.seek(0)
    kind = job.kind
    if kind == Kind.AUTO:
        detected = detect_feed_format(head)
        if detected not in _FORMAT_KINDS:
            raise SourceUnusable(
                "the file is not a CSV/TSV, a ZIP of photos or a Merchant feed"
                + (f" (it looks like a {detected.replace('_', ' ')}; import it by URL)" if detected else "")
            )
        kind = _FORMAT_KINDS[detected]
    if head.startswith(b"PK\x03\x04") and kind in (Kind.IMAGE_FOLDER, Kind.CSV) and zip_holds_catalog(stream):
        # A CSV with its photos: image cells are paths inside the archive.
        _save_kind(job, Kind.CSV)
        return CatalogZipSource(file=stream, base_url=base_url, limits=limits)
    _save_kind(job, kind)
    if kind == Kind.IMAGE_FOLDER:
        return ImageArchiveSource(file=stream, limits=limits)
    max_upload_bytes = int(app_setting("MAX_UPLOAD_BYTES"))
    data = stream.read(max_upload_bytes + 1)
    if len(data) > max_upload_bytes:
        raise SourceUnusable(
            f"the file is larger than {max_upload_bytes:,} bytes (SCRAPER['MAX_UPLOAD_BYTES'])"
        )
    if kind == Kind.CSV:
        return CsvSource(data=data, base_url=base_url, base_dir=base_dir, limits=limits)
    if kind == Kind.MERCHANT_FEED:
        return MerchantFeedSource(data=data, base_url=base_url, limits=limits)
    raise SourceUnusable(f"a {job.get_kind_display()} is imported from its URL, not from a file")


def job_currency(job: ImportJob) -> str:
    """The currency chosen for the import (``--currency``, the form's Currency field), or ""."""
    return str((job.options or {}).get("currency") or "").strip().upper()


def _save_kind(job: ImportJob, kind: str) -> None:
    if job.kind != kind:
        job.kind = kind
        ImportJob.objects.filter(pk=job.pk).update(kind=kind)


def _resolve_url_kind(job: ImportJob, client: GuardedClient) -> tuple[str, FetchResult | None]:
    """What an ``auto`` URL is: Shopify and sitemap URLs by their path, a store's home page by asking
    for ``/products.json`` (Shopify) else its sitemap, anything else by its content."""
    if job.kind != Kind.AUTO:
        return job.kind, None
    parts = urlsplit(job.source_url)
    path = parts.path.lower()
    if path.endswith("/products.json") or path.startswith("/collections/"):
        return Kind.SHOPIFY, None
    if path in ("", "/"):
        return _shopify_or_sitemap(client, f"{parts.scheme}://{parts.netloc}"), None
    result = client.get(job.source_url, kind="feed")
    detected = detect_feed_format(result.content)
    if detected == "shopify":
        return Kind.SHOPIFY, None
    if detected == "sitemap":
        return Kind.SITEMAP, None
    if detected in ("csv", "merchant"):
        return _FORMAT_KINDS[detected], result
    if detected == "product_page":
        return Kind.SITEMAP, None  # a product page: the sitemap source imports that page alone
    raise SourceUnusable("the URL serves neither a feed, a sitemap, a Shopify store nor a web page")


def _shopify_or_sitemap(client: GuardedClient, origin: str) -> str:
    try:
        probe = client.get(f"{origin}/products.json?limit=1", kind="feed")
        parse_shopify_products(probe.content, base_url=origin)
    except (FetchError, FeedError):
        return Kind.SITEMAP
    return Kind.SHOPIFY


def _url_source(
    job: ImportJob, kind: str, *, client: GuardedClient, limits: Limits, prefetched: FetchResult | None
) -> CatalogSource:
    url = job.source_url
    data = prefetched.content if prefetched is not None else None
    if kind == Kind.SHOPIFY:
        currency = job_currency(job)  # else the store's own, read from the shop (or guessed later)
        collection = job.options.get("collection") or None
        return ShopifySource(client=client, url=url, currency=currency, collection=collection, limits=limits)
    if kind == Kind.SITEMAP:
        return SitemapSource(client=client, url=url, limits=limits)
    if kind == Kind.MERCHANT_FEED:
        return MerchantFeedSource(data=data, url=url, client=client, limits=limits)
    if kind == Kind.CSV:
        return CsvSource(data=data, url=url, client=client, limits=limits)
    raise SourceUnusable("a folder or ZIP of photos is uploaded, not imported from a URL")


def _retry_sources(
    job: ImportJob, errors: list[ImportRowError], *, client: GuardedClient, limits: Limits
) -> Iterator[CatalogSource]:
    urls = list(dict.fromkeys(error.retry_url for error in errors if error.retry_url))
    if not urls:
        return
    if job.kind == Kind.SHOPIFY:
        currency = job_currency(job)
        collection = job.options.get("collection") or None
        # A page that could not be fetched stopped the walk: resume there. Products that failed on a
        # page that was read: read that page again.
        resume_pages = sorted(
            shopify_page_number(e.retry_url) for e in errors if e.stage == "fetch" and e.retry_url
        )
        resume_from = resume_pages[0] if resume_pages else None
        single_pages = sorted({shopify_page_number(url) for url in urls} - set(resume_pages))
        for page in single_pages:
            if resume_from is None or page < resume_from:
                yield ShopifySource(
                    client=client, url=job.source_url, currency=currency, collection=collection,
                    first_page=page, single_page=True, limits=limits,
                )  # fmt: skip
        if resume_from is not None:
            yield ShopifySource(
                client=client, url=job.source_url, currency=currency, collection=collection,
                first_page=resume_from, limits=limits,
            )  # fmt: skip
    elif job.kind == Kind.SITEMAP:
        yield SitemapSource(client=client, page_urls=urls, limits=limits)
    elif job.kind == Kind.MERCHANT_FEED:
        yield MerchantFeedSource(url=job.source_url or urls[0], client=client, limits=limits)
    elif job.kind == Kind.CSV:
        yield CsvSource(url=job.source_url or urls[0], client=client, limits=limits)
    elif job.kind == Kind.AUTO and job.source_url:  # the source never answered: import it again
        kind, prefetched = _resolve_url_kind(job, client)
        _save_kind(job, kind)
        yield _url_source(job, kind, client=client, limits=limits, prefetched=prefetched)


def _image_work_for_errors(writer: CatalogWriter, errors: list[ImportRowError]) -> list[ImageWork]:
    rows = writer.image_model._default_manager.in_bulk([error.image_id for error in errors if error.image_id])
    work = []
    for error in errors:
        row = rows.get(error.image_id)
        if row is None or writer.image_is_stored(row):
            continue
        work.append(
            ImageWork(
                product_id=getattr(row, writer.i["product"].attname),
                url=error.retry_url or str(writer.image_value(row, "source_url") or ""),
                position=writer.image_position(row),
                external_id=error.external_id,
                image_id=row.pk,
            )
        )
    return [item for item in work if item.url]


# --- One run over a source -------------------------------------------------------------------------------


@dataclass
class _Tally:
    """What writing one batch did; merged into the run only when the batch's transaction commits."""

    delta: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[Failure, str]] = field(default_factory=list)
    work: list[ImageWork] = field(default_factory=list)
    files: dict[str, models.Model] = field(default_factory=dict)  # sha256 → a row storing that file


# Inline imports hand photos to their download thread in groups of at least this many (see _download).
INLINE_PHOTOS_PER_HANDOVER = 500


class _ImportRun:
    """The state of one pass over a source: the batch being built, counters not yet saved, the ids seen."""

    def __init__(
        self, job: ImportJob, *, images: ImageMode, on_progress: Callable[[ImportJob], None] | None
    ) -> None:
        self.job = job
        self.token = leases.run_token(job)
        self.images = images
        self.on_progress = on_progress
        self.writer = catalog_writer(store=job.store)
        self.limits = limits_from_settings()
        self.client: GuardedClient | None = None
        self.batch: list[ScrapedProduct] = []
        self.failures: list[tuple[Failure, str]] = []  # (failure, ImportRowError stage)
        self.delta: Counter[str] = Counter()
        self.seen_ids: set[str] = set()
        self.files: dict[str, models.Model] = {}  # sha256 → a stored image row, for local images
        self.products_hidden = False  # something unread may list products: no out-of-stock marking
        self.nothing_done = True
        self.batch_size = int(app_setting("BATCH_SIZE"))
        self.warnings: dict[str, None] = dict.fromkeys(job.warnings or [])
        self.warnings_changed = False
        self.currency = job_currency(job)
        self.guessed_currency = 0  # priced records whose currency the source did not give
        # Inline images: photos download in a thread of their own, a few hundred at a time, while the next
        # products are read and written (see _download).
        self._download_thread: ThreadPoolExecutor | None = None
        self._downloading: Future[DownloadOutcome] | None = None
        self._photo_backlog: list[ImageWork] = []

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings[text] = None
            self.warnings_changed = True

    def fill_currency(self, record: ScrapedProduct) -> None:
        """The source's currency wins; then the one chosen for the import; then the store's, counted as
        a guess (the job says so: a US store's $1,075 must not pass silently as EUR 1,075)."""
        if record.currency:
            return
        if self.currency:
            record.currency = self.currency
        elif record.price is not None and self.writer.default_currency:
            record.currency = self.writer.default_currency.upper()
            self.guessed_currency += 1

    def consume(self, items: Iterable[SourceItem]) -> None:
        try:
            for item in items:
                if item is PAGE_END:
                    self.flush()
                elif isinstance(item, ScrapedProduct):
                    self.fill_currency(item)
                    self.add_image_errors(item)
                    self.batch.append(item)
                    self.delta["seen"] += 1
                    self.seen_ids.add(item.external_id)
                    if len(self.batch) >= self.batch_size:
                        self.flush()
                elif isinstance(item, Failure):
                    self.add_failure(item)
                elif isinstance(item, Skipped):
                    self.delta["skipped"] += 1
                elif isinstance(item, Warned):
                    self.warn(item.text)
        finally:
            # Records read before a broken feed or a cancellation are valid: write them.
            with contextlib.suppress(ImportCancelled):
                self.flush()

    def add_image_errors(self, record: ScrapedProduct) -> None:
        """Photos the source named but the parser could not read: each is that photo's failure."""
        for error in record.image_errors:
            self.failures.append(
                (
                    Failure(source_ref=error.source_ref, reason=error.reason, external_id=record.external_id),
                    ImportRowError.Stage.IMAGE,
                )
            )
            self.delta["images_queued"] += 1
            self.delta["images_failed"] += 1

    def add_failure(self, failure: Failure, *, counted_as_seen: bool = False) -> None:
        self.failures.append((failure, failure.stage))
        self.delta["failed"] += 1
        if failure.stage == "row" and not counted_as_seen:
            self.delta["seen"] += 1
        if failure.external_id:
            self.seen_ids.add(failure.external_id)
        if failure.hides_products:
            self.products_hidden = True

    def flush(self) -> None:
        work: list[ImageWork] = []
        if self.batch:
            batch, self.batch = self.batch, []
            with transaction.atomic():
                work = self._write_batch(batch)
                self._save_failures()
                if self.images == "queue":
                    self._queue_images(work)
            if self.images == "inline":
                self._download(work)
        self._save_failures()
        self._save_progress()

    def handle_images(self, work: list[ImageWork]) -> None:
        if self.images == "queue":
            with transaction.atomic():
                self._queue_images(work)
        else:
            self._download(work)
        self._save_progress()

    # -- products

    def _write_batch(self, batch: list[ScrapedProduct]) -> list[ImageWork]:
        """Upsert a batch with bulk writes in one transaction; if a row fails, the batch is written
        again row by row, each in its savepoint, so only that row is lost."""
        try:
            with transaction.atomic(), self.writer.batched_writes():
                tally = self._write_records(batch, batched=True)
        except DatabaseError:
            self.writer.forget_uncommitted()
            tally = self._write_records(batch, batched=False)
        self.delta.update(tally.delta)
        self.failures += tally.failures
        self.files.update(tally.files)
        self.nothing_done = False
        return tally.work

    def _write_records(self, batch: list[ScrapedProduct], *, batched: bool) -> _Tally:
        writer, tally = self.writer, _Tally()
        existing = writer.existing_products([record.external_id for record in batch])
        written: list[tuple[ScrapedProduct, models.Model, Outcome]] = []
        for record in batch:
            try:
                outcome, product = writer.upsert(record, existing.get(record.external_id))
            except (ValueError, DatabaseError) as error:
                if batched and isinstance(error, DatabaseError):
                    raise  # the transaction is unusable: the caller writes the batch again, row by row
                tally.delta["failed"] += 1
                tally.failures.append(
                    (
                        Failure(
                            source_ref=record.source_ref or record.external_id,
                            reason=f"not saved: {error}",
                            external_id=record.external_id[:255],
                        ),
                        ImportRowError.Stage.ROW,
                    )
                )
                continue
            existing[record.external_id] = product
            written.append((record, product, outcome))
        writer.write_pending()  # the new products get their ids before their images are matched
        # A product created just now has no images yet: only the others are looked up.
        images_by_product = writer.images_of(
            [product.pk for _, product, outcome in written if outcome != "created"]
        )
        for record, product, outcome in written:
            images_changed = self._sync_images(record, product, images_by_product.get(product.pk, []), tally)
            tally.delta["updated" if images_changed and outcome == "unchanged" else str(outcome)] += 1
        return tally

    def _sync_images(
        self, record: ScrapedProduct, product: models.Model, rows: list[models.Model], tally: _Tally
    ) -> bool:
        """Match the record's images to the product's rows; URLs to download go to ``tally.work``.
        Returns whether the product's image list changed.

        A record without images leaves the product's images alone (a feed that omits them is more
        likely partial than a product that lost every photo).
        """
        writer = self.writer
        if record.image_files:
            return self._sync_local_images(record, product, rows, tally)
        urls = record.image_urls[: writer.max_images]
        if not urls:
            return False
        by_url: dict[str, list[models.Model]] = defaultdict(list)
        for row in rows:
            by_url[str(writer.image_value(row, "source_url") or "")].append(row)
        changed, kept = False, set()
        for position, url in enumerate(urls):
            found = by_url[url].pop(0) if by_url.get(url) else None
            if found is None:
                tally.work.append(ImageWork(product.pk, url, position, record.external_id))
                changed = True
                continue
            kept.add(found.pk)
            if writer.image_position(found) != position:
                writer.set_image_position(found, position)
                changed = True
            if not writer.image_is_stored(found):  # failed before: try again
                tally.work.append(ImageWork(product.pk, url, position, record.external_id, image_id=found.pk))
        leftovers = [row for row in rows if row.pk not in kept]
        writer.delete_images(leftovers)
        return changed or bool(leftovers)

    def _sync_local_images(
        self, record: ScrapedProduct, product: models.Model, rows: list[models.Model], tally: _Tally
    ) -> bool:
        """Images that came with the catalog (ZIP, folder, files next to a CSV): stored right away."""
        writer = self.writer
        by_sha = {str(writer.image_value(row, "sha256")): row for row in rows if writer.image_is_stored(row)}
        changed, kept = False, set()
        for position, image in enumerate(record.image_files[: writer.max_images]):
            sha256 = sha256_hex(image.content)
            row = by_sha.pop(sha256, None)
            if row is not None:
                kept.add(row.pk)
                if writer.image_position(row) != position:
                    writer.set_image_position(row, position)
                    changed = True
                continue
            changed = True
            tally.delta["images_queued"] += 1
            try:
                # Fully decoded: a truncated file is refused here, not by the embedding later.
                info = inspect_image(image.content, max_pixels=self.limits.max_image_pixels, decode=True)
            except ImageRejected as error:
                tally.delta["images_failed"] += 1
                failure = Failure(source_ref=image.name, reason=str(error), external_id=record.external_id)
                tally.failures.append((failure, ImportRowError.Stage.IMAGE))
                continue
            reuse = tally.files.get(sha256) or self.files.get(sha256)
            if reuse is None:
                reuse = writer.stored_images_by("sha256", [sha256]).get(sha256)
            new_row, written = writer.store_image(
                product_id=product.pk,
                data=image.content,
                content_type=info.content_type,
                width=info.width,
                height=info.height,
                position=position,
                sha256=sha256,
                reuse=reuse,
            )
            kept.add(new_row.pk)
            tally.files.setdefault(sha256, new_row)
            tally.delta["images_downloaded" if written else "images_reused"] += 1
        leftovers = [row for row in rows if row.pk not in kept]
        writer.delete_images(leftovers)
        return changed or bool(leftovers)

    # -- images by URL

    def _queue_images(self, work: list[ImageWork]) -> None:
        if not work:
            return
        from scraper.tasks import fetch_images_task

        self.delta["images_queued"] += len(work)
        chunk_size = int(app_setting("IMAGE_TASK_CHUNK_SIZE"))
        job_id = self.job.pk
        for start in range(0, len(work), chunk_size):
            items = [item.as_list() for item in work[start : start + chunk_size]]
            transaction.on_commit(partial(fetch_images_task.delay, job_id, items, 0, self.token))

    def _download(self, work: list[ImageWork]) -> None:
        """Download photos (``images="inline"``).

        Reading and writing the next products used to wait for the last photo of a batch, and downloads
        waited for the writes. Now the two overlap: photos are handed, a few hundred at a time, to a thread
        with its own database connection and catalog writer, and the import goes on; a hand-over first
        waits for the previous one, so at most one is in flight, and the end of the walk waits for all. A
        worker killed meanwhile loses nothing: a product's photos without rows are downloaded by the next
        run. Inside the caller's transaction (tests, a caller's ``atomic``) another connection could not
        see the new products, so photos are downloaded here, in this connection.
        """
        if not work:
            return
        assert self.client is not None
        if transaction.get_connection().in_atomic_block:
            self.delta["images_queued"] += len(work)
            threads = int(app_setting("DOWNLOAD_THREADS"))
            self._take(download_images(self.writer, self.client, work, retry_later=False, threads=threads))
            return
        # Each hand-over ends with the download threads waiting for its slowest photo: few, large ones.
        self._photo_backlog += work
        if len(self._photo_backlog) >= INLINE_PHOTOS_PER_HANDOVER:
            self._hand_over_photos()

    def _hand_over_photos(self) -> None:
        work, self._photo_backlog = self._photo_backlog, []
        self.collect_downloads()
        if not work or self.client is None or self.client.closed:
            return  # the source failed and the client is gone: the next run downloads them
        self.delta["images_queued"] += len(work)
        if self._download_thread is None:
            self._download_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-images")
        writer = catalog_writer(store=self.job.store)
        threads = int(app_setting("DOWNLOAD_THREADS"))
        self._downloading = self._download_thread.submit(
            _download_in_thread, writer, self.client, work, threads=threads
        )

    def wait_for_downloads(self) -> None:
        """Let the photos in flight finish (``collect_downloads`` takes their counts)."""
        if self._downloading is not None:
            wait([self._downloading])
        if self._download_thread is not None:
            self._download_thread.shutdown(wait=True)
            self._download_thread = None

    def collect_downloads(self) -> None:
        if self._downloading is not None:
            future, self._downloading = self._downloading, None
            self._take(future.result())

    def _take(self, outcome: DownloadOutcome) -> None:
        self.delta.update(outcome.counts)
        self.failures += [(failure, ImportRowError.Stage.IMAGE) for failure in outcome.failures]

    # -- bookkeeping

    def _save_failures(self) -> None:
        if not self.failures:
            return
        failures, self.failures = self.failures, []
        ImportRowError.objects.bulk_create(
            [
                ImportRowError(
                    job=self.job,
                    stage=stage,
                    source_ref=failure.source_ref[:2000],
                    external_id=failure.external_id[:255],
                    reason=failure.reason,
                    payload=failure.payload,
                    retry_url=failure.retry_url if len(failure.retry_url) <= 2000 else "",
                    image_id=failure.image_id,
                    retryable=failure.retryable,
                )
                for failure, stage in failures
            ]
        )

    def _save_progress(self) -> None:
        delta, self.delta = self.delta, Counter()
        extra: dict[str, Any] = {}
        if self.warnings_changed:
            extra["warnings"], self.warnings_changed = list(self.warnings), False
        owned = ImportJob.objects.filter(**leases.this_run(self.job.pk, self.token)).update(
            **{name: F(name) + count for name, count in delta.items() if count},
            **extra,
            heartbeat_at=timezone.now(),
        )
        if not owned:
            raise leases.LeaseLost()
        self.job.refresh_from_db(fields=[*COUNTERS, "cancel_requested", "status"])
        cancelled = self.job.cancel_requested
        if self.on_progress is not None:
            self.on_progress(self.job)
            cancelled = cancelled or ImportJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        if cancelled:
            raise ImportCancelled()

    def _mark_missing_out_of_stock(self) -> int:
        writer = self.writer
        if "in_stock" not in writer.p:
            return 0
        in_stock, id_name = writer.p["in_stock"].name, writer.p["external_id"].name
        missing = (
            writer.product_model._default_manager.filter(
                **{writer.p["store"].name: writer.store, in_stock: True}
            )
            .exclude(**{f"{id_name}__in": list(self.seen_ids)})
            .order_by("pk")
        )
        count = 0
        with transaction.atomic():
            for product in missing.iterator(chunk_size=500):
                setattr(product, in_stock, False)
                product.save(update_fields=[in_stock, *writer._auto_now])  # receivers see the change
                count += 1
        return count

    def source_read(self, *, full_sync: bool) -> None:
        """The source was read to its end (some pages may have failed)."""
        self.flush()
        complete = not self.products_hidden
        if full_sync and complete:
            self.delta["marked_out_of_stock"] += self._mark_missing_out_of_stock()
        if not complete and full_sync:
            self.job.message = "Some pages could not be read, so no product was marked out of stock."
        self._finish_walk(source_complete=complete)

    def retry_read(self) -> None:
        """A retry pass is over: the source counts as read when no page or feed failure is left."""
        self.flush()
        unread = ImportRowError.objects.filter(job=self.job, stage=ImportRowError.Stage.FETCH, retried=False)
        first_unread = unread.order_by("pk").first()
        if first_unread is not None:
            self.job.message = first_unread.reason
        self._finish_walk(source_complete=not self.products_hidden and first_unread is None)

    def fail_source(self, failure: Failure) -> None:
        """The source broke or could not be opened; what was read before stays imported."""
        with contextlib.suppress(ImportCancelled):
            self.add_failure(failure, counted_as_seen=True)
            self.flush()
        self.job.message = failure.reason
        self._finish_walk(source_complete=False)

    def stop(self) -> None:
        with contextlib.suppress(ImportCancelled):
            self.flush()
        # Cancelled: photos not handed over yet stay undownloaded (and uncounted); the next import
        # downloads them.
        self._photo_backlog = []
        self._finish_walk(source_complete=False)

    def requeue(self, message: str, *, countdown_s: float) -> None:
        # The heartbeat set to when the retry is due: the sweeper leaves the job alone until then.
        back_at = timezone.now() + timedelta(seconds=countdown_s)
        ImportJob.objects.filter(pk=self.job.pk).update(
            status=ImportJob.Status.QUEUED, message=message, heartbeat_at=back_at
        )

    def note_guessed_currency(self) -> None:
        if self.guessed_currency:
            currency = self.writer.default_currency.upper()
            self.warn(
                f"{self.guessed_currency:,} price(s) came without a currency; the store's currency "
                f"({currency}) was assumed. If that is wrong, import again with the right currency "
                "(the Currency field of the import form, or import_catalog --currency CODE)."
            )
            self.guessed_currency = 0

    def _finish_walk(self, *, source_complete: bool) -> None:
        self._hand_over_photos()
        self.wait_for_downloads()
        self.collect_downloads()
        self._save_failures()
        self.note_guessed_currency()
        with contextlib.suppress(ImportCancelled):
            self._save_progress()
        ImportJob.objects.filter(**leases.this_run(self.job.pk, self.token)).update(
            source_complete=source_complete, message=self.job.message, walk_finished_at=timezone.now()
        )


def _download_in_thread(
    writer: CatalogWriter, client: GuardedClient, work: list[ImageWork], *, threads: int
) -> DownloadOutcome:
    try:
        return download_images(writer, client, work, retry_later=False, threads=threads)
    finally:
        connections.close_all()  # this thread's connection only (they are per thread)


# --- Image download tasks ----------------------------------------------------------------------------


def fetch_images(
    *, job_id: int, work: list[ImageWork], attempt: int = 0, run: str = ""
) -> DownloadOutcome | None:
    """The body of ``scraper.fetch_images``: download a chunk for a job, count it, finish the job when
    it was the last. Returns ``None`` when the job is gone or cancelled, or when ``run`` (the run that
    queued the chunk, ``leases.run_token``) is not the job's current run (nothing is done then)."""
    job = ImportJob.objects.select_related("store").filter(pk=job_id).first()
    if job is None or job.cancel_requested or job.status == ImportJob.Status.CANCELLED:
        return None
    if run and leases.run_token(job) != run:
        return None  # the job was started over: the new run queues what is still missing
    writer = catalog_writer(store=job.store)
    retry_later = attempt < int(app_setting("IMAGE_TASK_RETRIES"))
    with leases.heartbeat(job_id, run), build_client() as client:
        outcome = download_images(
            writer, client, work, retry_later=retry_later, threads=int(app_setting("DOWNLOAD_THREADS"))
        )
    ImportRowError.objects.bulk_create(
        [
            ImportRowError(
                job_id=job_id,
                stage=ImportRowError.Stage.IMAGE,
                source_ref=failure.source_ref[:2000],
                external_id=failure.external_id[:255],
                reason=failure.reason,
                retry_url=failure.retry_url,
                image_id=failure.image_id,
                retryable=failure.retryable,
            )
            for failure in outcome.failures
        ]
    )
    if outcome.counts:
        ImportJob.objects.filter(**leases.this_run(job_id, run)).update(
            **{name: F(name) + count for name, count in outcome.counts.items()}, heartbeat_at=timezone.now()
        )
    finish_if_done(job_id)
    return outcome
