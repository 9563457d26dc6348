"""Image downloads for an import: fetched, verified and hashed in threads; stored in groups here.

Downloads overlap with the database writes: while this thread stores the images that arrived, the
download threads keep fetching the next ones (within the domain throttle). An image is downloaded once:
nothing is fetched for a product that has the URL stored already, a URL stored for another product shares
that row's file, and downloaded bytes whose sha256 is stored already share that file too.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import Counter, defaultdict
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import DatabaseError, models, transaction

from scraper.catalog import CatalogWriter, ImageWork, sha256_hex
from scraper.http import FetchError, FetchResult, GuardedClient
from scraper.parsers import ImageInfo, ImageRejected, inspect_image
from scraper.sources import Failure

# Images stored per transaction: small enough that the first ones land while the rest download.
STORE_GROUP = 128


@dataclass
class DownloadOutcome:
    """Every item ends in ``counts`` (images_downloaded / images_reused / images_failed, with a
    ``failures`` entry for the log) or, when retrying later is allowed and may help, in ``deferred``."""

    counts: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    deferred: list[ImageWork] = field(default_factory=list)
    defer_s: float = 0.0  # the longest Retry-After among the deferred


@dataclass(frozen=True)
class _Fetched:
    content: bytes
    sha256: str
    info: ImageInfo
    file_name: str | None  # already in storage (content-addressed names), else written when stored


def download_images(
    writer: CatalogWriter, client: GuardedClient, work: list[ImageWork], *, retry_later: bool, threads: int
) -> DownloadOutcome:
    """Download and store the images of ``work`` (see the module docstring)."""
    outcome = DownloadOutcome()
    live_products = set(
        writer.product_model._default_manager.filter(pk__in={item.product_id for item in work}).values_list(
            "pk", flat=True
        )
    )
    rows_by_product = writer.images_of(sorted(live_products))
    failed_rows = writer.image_model._default_manager.in_bulk(
        [item.image_id for item in work if item.image_id]
    )
    by_url = writer.stored_images_by("source_url", sorted({item.url for item in work}))
    to_fetch: dict[str, list[ImageWork]] = defaultdict(list)
    for item in work:
        if item.product_id not in live_products:
            outcome.counts["images_failed"] += 1  # the product was deleted meanwhile; nothing to log
        elif any(
            writer.image_is_stored(row) and writer.image_value(row, "source_url") == item.url
            for row in rows_by_product.get(item.product_id, [])
        ):
            outcome.counts["images_reused"] += 1  # a task delivered twice, or a URL listed twice
        elif item.url in by_url:
            writer.copy_image(
                product_id=item.product_id,
                source=by_url[item.url],
                position=item.position,
                source_url=item.url,
                replace=failed_rows.get(item.image_id),
            )
            outcome.counts["images_reused"] += 1
        else:
            to_fetch[item.url].append(item)
    if not to_fetch:
        return outcome
    known_files: dict[str, models.Model] = {}  # sha256 → a stored row with that file
    group: list[tuple[str, _Fetched | FetchError]] = []
    with contextlib.closing(_fetch_all(writer, client, list(to_fetch), threads=threads)) as fetched_all:
        for url, fetched in fetched_all:
            group.append((url, fetched))
            if len(group) >= STORE_GROUP:
                _store_group(
                    writer, outcome, group, to_fetch, failed_rows, known_files, retry_later=retry_later
                )
                group = []
    if group:
        _store_group(writer, outcome, group, to_fetch, failed_rows, known_files, retry_later=retry_later)
    return outcome


def _fetch_all(
    writer: CatalogWriter, client: GuardedClient, urls: list[str], *, threads: int
) -> Generator[tuple[str, _Fetched | FetchError], None, None]:
    """``(url, result)`` for every URL, in the order the downloads finish, fetched by ``threads`` threads.

    The threads take URLs from one queue and put results on another (C-level ``SimpleQueue``s): a
    ``Future`` per photo, with its condition variable and ``as_completed``'s waiters, cost more of the
    import's one busy core than storing the photo did. Leaving early (the caller raised) drops the URLs not
    started yet and waits for the ones in flight.
    """
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[str, _Fetched | FetchError | BaseException]] = queue.SimpleQueue()
    for url in urls:
        todo.put(url)
    max_pixels = client.policy.max_image_pixels

    def work() -> None:
        while True:
            try:
                url = todo.get_nowait()
            except queue.Empty:
                return
            try:
                result: _Fetched | FetchError | BaseException = _fetch(writer, client, url, max_pixels)
            except BaseException as error:  # a bug, not a bad photo: the caller raises it
                result = error
            done.put((url, result))

    workers = [
        threading.Thread(target=work, name=f"images-{n}", daemon=True)
        for n in range(max(1, min(threads, len(urls))))
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in urls:
            url, result = done.get()
            if isinstance(result, BaseException) and not isinstance(result, FetchError):
                raise result
            yield url, result
    finally:
        with contextlib.suppress(queue.Empty):
            while True:
                todo.get_nowait()
        for worker in workers:
            worker.join()


def _fetch(writer: CatalogWriter, client: GuardedClient, url: str, max_pixels: int) -> _Fetched | FetchError:
    """In a download thread: download, check, hash and (content-addressed names) write the file."""
    try:
        result: FetchResult = client.get(url, kind="image")  # checked: an image, within the caps, decodable
        info = result.image or inspect_image(result.content, max_pixels=max_pixels)
    except FetchError as error:
        return error
    except ImageRejected as error:  # only if the client was told not to check images
        return FetchError(str(error), url=url)
    sha256 = sha256_hex(result.content)
    file_name = writer.write_file_if_content_addressed(
        result.content, sha256=sha256, content_type=info.content_type
    )
    return _Fetched(content=result.content, sha256=sha256, info=info, file_name=file_name)


def _store_group(
    writer: CatalogWriter,
    outcome: DownloadOutcome,
    group: list[tuple[str, _Fetched | FetchError]],
    to_fetch: dict[str, list[ImageWork]],
    failed_rows: dict[Any, models.Model],
    known_files: dict[str, models.Model],
    *,
    retry_later: bool,
) -> None:
    # Files stored under content-addressed names are shared by name already: only others need the look-up.
    new_shas = [
        r.sha256
        for _, r in group
        if isinstance(r, _Fetched) and r.file_name is None and r.sha256 not in known_files
    ]
    known_files.update(writer.stored_images_by("sha256", new_shas))
    try:
        with transaction.atomic(), writer.batched_writes():
            result = _write_group(
                writer, group, to_fetch, failed_rows, dict(known_files), retry_later=retry_later
            )
    except DatabaseError:  # one row could not be written: write them one by one, each in its savepoint
        writer.forget_uncommitted()
        result = _write_group(
            writer, group, to_fetch, failed_rows, dict(known_files), retry_later=retry_later
        )
    counts, failures, deferred, defer_s, files = result
    outcome.counts.update(counts)
    # The failed rows have their ids now that the group is written.
    outcome.failures += [replace(failure, image_id=getattr(row, "pk", None)) for row, failure in failures]
    outcome.deferred += deferred
    outcome.defer_s = max(outcome.defer_s, defer_s)
    known_files.update(files)


def _write_group(
    writer: CatalogWriter,
    group: list[tuple[str, _Fetched | FetchError]],
    to_fetch: dict[str, list[ImageWork]],
    failed_rows: dict[Any, models.Model],
    files: dict[str, models.Model],
    *,
    retry_later: bool,
) -> tuple[Counter[str], list[tuple[models.Model | None, Failure]], list[ImageWork], float, dict]:
    counts: Counter[str] = Counter()
    failures: list[tuple[models.Model | None, Failure]] = []
    deferred: list[ImageWork] = []
    defer_s = 0.0
    for url, fetched in group:
        items = to_fetch[url]
        if isinstance(fetched, FetchError):
            if retry_later and fetched.retryable:
                deferred += items
                defer_s = max(defer_s, float(getattr(fetched, "retry_after_s", None) or 0.0))
                continue
            for item in items:
                row = writer.record_image_failure(
                    product_id=item.product_id,
                    source_url=url,
                    position=item.position,
                    reason=fetched.reason,
                    replace=failed_rows.get(item.image_id),
                )
                counts["images_failed"] += 1
                failure = Failure(
                    source_ref=url,
                    reason=fetched.reason,
                    retry_url=url if len(url) <= 2000 else "",
                    external_id=item.external_id,
                    retryable=fetched.retryable,
                )
                failures.append((row, failure))
            continue
        for index, item in enumerate(items):
            reuse = files.get(fetched.sha256)
            row, _ = writer.store_image(
                product_id=item.product_id,
                data=fetched.content,
                content_type=fetched.info.content_type,
                width=fetched.info.width,
                height=fetched.info.height,
                position=item.position,
                source_url=url,
                sha256=fetched.sha256,
                reuse=reuse,
                file_name=fetched.file_name,
                replace=failed_rows.get(item.image_id),
            )
            files.setdefault(fetched.sha256, row)
            counts["images_downloaded" if index == 0 else "images_reused"] += 1
    return counts, failures, deferred, defer_s, files
