"""Catalog sources: each walks one kind of catalog and yields what the pure parsers read from it.

A source yields, in order:

* ``ScrapedProduct`` — a product to upsert;
* ``Failure`` — a record that could not be read, or a page/feed that could not be fetched (with the URL
  that "retry failed rows" fetches again, and whether products may be missing because of it);
* ``Skipped`` — a page without product data (an article in a sitemap);
* ``PAGE_END`` — the end of a page or file chunk: the importer writes its batch and checks for
  cancellation there.

A ``FeedError`` raised while iterating means the source broke mid-way: what came before is valid, but
the source is incomplete. The network is reached only through ``GuardedClient``.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

from scraper.http import FetchError, FetchResult, GuardedClient
from scraper.parsers import (
    FeedError,
    FeedWarning,
    NotAProduct,
    NotLive,
    RowError,
    ScrapedProduct,
    detect_feed_format,
    parse_catalog_zip,
    parse_csv,
    parse_image_folder,
    parse_image_zip,
    parse_merchant_feed,
    parse_product_page,
    parse_shopify_products,
    parse_sitemap,
    shopify_page_urls,
)
from scraper.parsers.catalog_zip import catalog_entry, open_zip


@dataclass(frozen=True)
class Failure:
    source_ref: str
    reason: str
    stage: Literal["row", "fetch"] = "row"
    retry_url: str = ""  # fetched again by "retry failed rows"; "" when only a corrected file helps
    external_id: str = ""
    payload: str = ""
    retryable: bool = False  # a later attempt may succeed (timeouts, 5xx, 429)
    # Products may be missing because of it (a page that was never read): a full sync must not mark
    # products out of stock after such a failure.
    hides_products: bool = False
    image_id: int | None = None  # a failed download: the catalog image row that records it

    @classmethod
    def from_row_error(cls, error: RowError, *, retry_url: str = "") -> Failure:
        return cls(
            source_ref=error.source_ref,
            reason=error.reason,
            external_id=error.external_id,
            payload=error.payload,
            retry_url=retry_url,
        )

    @classmethod
    def from_fetch_error(cls, error: FetchError, url: str, *, what: str = "") -> Failure:
        return cls(
            source_ref=url,
            reason=f"{what}{error.reason}",
            stage="fetch",
            retry_url=url,
            retryable=error.retryable,
            hides_products=True,
        )


@dataclass(frozen=True)
class Skipped:
    source_ref: str
    reason: str


@dataclass(frozen=True)
class Warned:
    """Something guessed or repaired about the source as a whole: shown on the job, nothing failed."""

    text: str


class _PageEnd:
    def __repr__(self) -> str:
        return "PAGE_END"


PAGE_END = _PageEnd()

SourceItem = ScrapedProduct | Failure | Skipped | Warned | _PageEnd


class CatalogSource(Protocol):
    def iter_records(self) -> Iterator[SourceItem]: ...


@dataclass(frozen=True)
class Limits:
    """The crawl limits of one import, from ``SCRAPER`` settings (see ``scraper.conf``)."""

    shopify_page_size: int = 250
    max_shopify_pages: int = 2_000
    max_sitemap_depth: int = 3
    max_sitemaps: int = 500
    max_product_pages: int = 100_000
    max_feed_bytes: int = 50 * 1024**2
    max_image_bytes: int = 20 * 1024**2
    max_image_pixels: int = 40_000_000
    zip_max_files: int = 10_000
    zip_max_total_bytes: int = 2 * 1024**3
    concurrency: int = 2  # page fetches in flight (the domain throttle has the last word)
    chunk_records: int = 100  # PAGE_END after this many records of a file


def _records(items: Iterable[ScrapedProduct | RowError], *, retry_url: str = "") -> Iterator[SourceItem]:
    for item in items:
        if isinstance(item, (NotAProduct, NotLive)):
            yield Skipped(source_ref=item.source_ref, reason=item.reason)
        elif isinstance(item, FeedWarning):
            yield Warned(item.reason)
        elif isinstance(item, RowError):
            yield Failure.from_row_error(item, retry_url=retry_url)
        else:
            yield item


def _chunked(items: Iterable[SourceItem], size: int) -> Iterator[SourceItem]:
    """PAGE_END every ``size`` items, for sources that are one long file."""
    for count, item in enumerate(items, start=1):
        yield item
        if count % size == 0:
            yield PAGE_END
    yield PAGE_END


# --- Files ---------------------------------------------------------------------------------------------


class CsvSource:
    """A CSV/TSV file: bytes in hand (an upload, a local file) or fetched from ``url``."""

    def __init__(
        self,
        *,
        data: bytes | None = None,
        url: str = "",
        client: GuardedClient | None = None,
        base_url: str = "",
        base_dir: str | os.PathLike[str] | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self.data, self.url, self.client = data, url, client
        self.base_url, self.base_dir, self.limits = base_url or url, base_dir, limits

    def iter_records(self) -> Iterator[SourceItem]:
        data = self.data if self.data is not None else _fetch_feed(self.client, self.url).content
        records = parse_csv(
            data,
            base_url=self.base_url,
            base_dir=self.base_dir,
            max_image_bytes=self.limits.max_image_bytes,
            max_image_pixels=self.limits.max_image_pixels,
        )
        yield from _chunked(_records(records, retry_url=self.url), self.limits.chunk_records)


class MerchantFeedSource:
    """A Google Merchant feed (RSS, Atom or TSV), in hand or fetched from ``url``."""

    def __init__(
        self,
        *,
        data: bytes | None = None,
        url: str = "",
        client: GuardedClient | None = None,
        base_url: str = "",
        limits: Limits = Limits(),
    ) -> None:
        self.data, self.url, self.client, self.base_url, self.limits = (
            data,
            url,
            client,
            base_url or url,
            limits,
        )

    def iter_records(self) -> Iterator[SourceItem]:
        data = self.data if self.data is not None else _fetch_feed(self.client, self.url).content
        records = parse_merchant_feed(
            data, base_url=self.base_url, max_decompressed_bytes=self.limits.max_feed_bytes * 10
        )
        yield from _chunked(_records(records, retry_url=self.url), self.limits.chunk_records)


class ImageArchiveSource:
    """A ZIP of photos: one product per image, category from the folders."""

    def __init__(self, *, file: bytes | IO[bytes], limits: Limits = Limits()) -> None:
        self.file, self.limits = file, limits

    def iter_records(self) -> Iterator[SourceItem]:
        records = parse_image_zip(
            self.file,  # type: ignore[arg-type]
            max_files=self.limits.zip_max_files,
            max_total_bytes=self.limits.zip_max_total_bytes,
            max_file_bytes=self.limits.max_image_bytes,
            max_pixels=self.limits.max_image_pixels,
        )
        yield from _chunked(_records(records), self.limits.chunk_records)


class CatalogZipSource:
    """A ZIP holding a catalog CSV/TSV and its photos (image cells are paths inside the archive)."""

    def __init__(self, *, file: bytes | IO[bytes], base_url: str = "", limits: Limits = Limits()) -> None:
        self.file, self.base_url, self.limits = file, base_url, limits

    def iter_records(self) -> Iterator[SourceItem]:
        records = parse_catalog_zip(
            self.file,  # type: ignore[arg-type]
            base_url=self.base_url,
            max_files=self.limits.zip_max_files,
            max_total_bytes=self.limits.zip_max_total_bytes,
            max_file_bytes=self.limits.max_image_bytes,
            max_pixels=self.limits.max_image_pixels,
        )
        yield from _chunked(_records(records), self.limits.chunk_records)


def zip_holds_catalog(file: IO[bytes]) -> bool:
    """Whether a ZIP is a catalog CSV with its photos (else: a ZIP of photos). Leaves ``file`` at 0."""
    try:
        with open_zip(file) as archive:  # type: ignore[arg-type]
            return catalog_entry(archive) is not None
    finally:
        file.seek(0)


class ImageFolderSource:
    """A folder of photos on the server (the import_catalog command)."""

    def __init__(self, *, path: str | os.PathLike[str], limits: Limits = Limits()) -> None:
        self.path, self.limits = Path(path), limits

    def iter_records(self) -> Iterator[SourceItem]:
        records = parse_image_folder(
            self.path,
            max_files=self.limits.zip_max_files,
            max_total_bytes=self.limits.zip_max_total_bytes,
            max_file_bytes=self.limits.max_image_bytes,
            max_pixels=self.limits.max_image_pixels,
        )
        yield from _chunked(_records(records), self.limits.chunk_records)


# --- Shopify -------------------------------------------------------------------------------------------

_COLLECTION_PATH = re.compile(r"^/collections/([^/]+)")


def shopify_origin_and_collection(url: str) -> tuple[str, str | None]:
    """``https://shop.example/collections/shirts/products.json`` → ``("https://shop.example", "shirts")``."""
    parts = urlsplit(url)
    match = _COLLECTION_PATH.match(parts.path)
    return f"{parts.scheme}://{parts.netloc}", match.group(1) if match else None


class ShopifySource:
    """``/products.json`` (or one collection's) page by page, until a short or empty page."""

    def __init__(
        self,
        *,
        client: GuardedClient,
        url: str,
        currency: str = "",
        collection: str | None = None,
        first_page: int = 1,
        single_page: bool = False,
        limits: Limits = Limits(),
    ) -> None:
        origin, url_collection = shopify_origin_and_collection(url)
        self.client, self.origin, self.currency, self.limits = client, origin, currency, limits
        self.collection = collection or url_collection
        self.first_page = first_page
        self.single_page = single_page  # "retry failed rows" of products that failed on one page

    def iter_records(self) -> Iterator[SourceItem]:
        if not self.currency:
            self.currency = shopify_store_currency(self.client, self.origin)
        page_size = self.limits.shopify_page_size
        urls = shopify_page_urls(
            self.origin, self.collection, page_size=page_size, first_page=self.first_page
        )
        for pages_read, page_url in enumerate(urls):
            if pages_read >= self.limits.max_shopify_pages:
                yield Failure(
                    source_ref=page_url,
                    reason=f"stopped after {self.limits.max_shopify_pages} pages "
                    "(SCRAPER['MAX_SHOPIFY_PAGES'])",
                    stage="fetch",
                    retry_url=page_url,
                    hides_products=True,
                )
                return
            try:
                result = self.client.get(page_url, kind="feed")
            except FetchError as error:
                if pages_read == 0 and self.first_page == 1:
                    raise  # the store itself does not answer: the import fails (or its task retries later)
                # Whether more pages follow is unknown: stop here; a retry resumes from this page.
                yield Failure.from_fetch_error(error, page_url)
                return
            records, has_more = parse_shopify_products(
                result.content, base_url=self.origin, page_size=page_size, currency=self.currency
            )
            yield from _records(records, retry_url=page_url)
            yield PAGE_END
            if self.single_page or not has_more:
                return


_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")


def shopify_store_currency(client: GuardedClient, origin: str) -> str:
    """The currency a Shopify store publishes (``/meta.json``, else ``/cart.js``); "" when neither says.

    ``products.json`` has prices without a currency: this is where the store tells it.
    """
    for path in ("/meta.json", "/cart.js"):
        try:
            document = json.loads(client.get(origin + path, kind="page").content)
        except (FetchError, ValueError, UnicodeDecodeError):
            continue
        currency = str(document.get("currency") or "").strip().upper() if isinstance(document, dict) else ""
        if _CURRENCY_CODE.match(currency):
            return currency
    return ""


def shopify_page_number(url: str) -> int:
    values = parse_qs(urlsplit(url).query).get("page") or ["1"]
    try:
        return max(1, int(values[0]))
    except ValueError:
        return 1


# --- Sitemaps and product pages ------------------------------------------------------------------------


def sitemap_start_url(url: str) -> str:
    """A store's home page means its ``/sitemap.xml``; anything else is taken as a sitemap URL."""
    parts = urlsplit(url)
    if parts.path in ("", "/") and not parts.query:
        return f"{parts.scheme}://{parts.netloc}/sitemap.xml"
    return url


class SitemapSource:
    """Sitemap (indexes, gzip; depth and count limited) → product pages → JSON-LD / OpenGraph."""

    def __init__(
        self,
        *,
        client: GuardedClient,
        url: str = "",
        page_urls: list[str] | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self.client, self.limits = client, limits
        self.start_url = sitemap_start_url(url) if url else ""
        self.page_urls = page_urls  # retry: these pages (and sitemaps) only

    def iter_records(self) -> Iterator[SourceItem]:
        pages: list[str] = []
        seen_pages: set[str] = set()
        sitemaps = deque([(self.start_url, 0)] if self.start_url else [])
        for url in self.page_urls or []:
            if _looks_like_sitemap(url):
                sitemaps.append((url, 0))
            elif url not in seen_pages:
                seen_pages.add(url)
                pages.append(url)
        read_sitemaps: set[str] = set()
        while sitemaps:
            url, depth = sitemaps.popleft()
            if url in read_sitemaps:
                continue
            if len(read_sitemaps) >= self.limits.max_sitemaps:
                yield Failure(
                    source_ref=url,
                    reason=f"more than {self.limits.max_sitemaps} sitemaps "
                    "(SCRAPER['MAX_SITEMAPS']); not read",
                    stage="fetch",
                    retry_url=url,
                    hides_products=True,
                )
                continue
            read_sitemaps.add(url)
            try:
                result = self.client.get(url, kind="feed")
                if url == self.start_url and detect_feed_format(result.content) == "product_page":
                    # A product page given as the source: that page is the import.
                    yield from _records([parse_product_page(result.content, result.final_url)], retry_url=url)
                    continue
                sitemap = parse_sitemap(
                    result.content,
                    base_url=result.final_url,
                    max_decompressed_bytes=self.limits.max_feed_bytes,
                )
            except FetchError as error:
                if url == self.start_url:
                    raise  # the store's sitemap does not answer: the import fails (or its task retries later)
                yield Failure.from_fetch_error(error, url, what="sitemap: ")
                continue
            except FeedError as error:
                yield Failure(
                    source_ref=url,
                    reason=f"sitemap: {error}",
                    stage="fetch",
                    retry_url=url,
                    hides_products=True,
                )
                continue
            yield from _records(sitemap.errors)
            for child in sitemap.child_sitemaps:
                if depth + 1 > self.limits.max_sitemap_depth:
                    yield Failure(
                        source_ref=child,
                        reason=f"sitemap nested deeper than {self.limits.max_sitemap_depth} levels; not read",
                        stage="fetch",
                        hides_products=True,
                    )
                else:
                    sitemaps.append((child, depth + 1))
            for page_url in sitemap.urls:
                if page_url not in seen_pages:
                    seen_pages.add(page_url)
                    pages.append(page_url)
        if len(pages) > self.limits.max_product_pages:
            yield Failure(
                source_ref=self.start_url,
                reason=f"the sitemaps list {len(pages):,} pages; only the first "
                f"{self.limits.max_product_pages:,} were read (SCRAPER['MAX_PRODUCT_PAGES'])",
                stage="fetch",
                hides_products=True,
            )
            pages = pages[: self.limits.max_product_pages]
        yield PAGE_END
        for count, (url, outcome) in enumerate(
            fetch_in_order(self.client, pages, kind="page", concurrency=self.limits.concurrency), start=1
        ):
            if isinstance(outcome, FetchError):
                yield Failure.from_fetch_error(outcome, url)
            else:
                yield from _records([parse_product_page(outcome.content, outcome.final_url)], retry_url=url)
            if count % self.limits.chunk_records == 0:
                yield PAGE_END
        yield PAGE_END


def _looks_like_sitemap(url: str) -> bool:
    path = urlsplit(url).path.lower()
    return path.endswith((".xml", ".xml.gz", ".txt")) or "sitemap" in path


def fetch_in_order(
    client: GuardedClient, urls: list[str], *, kind: Any, concurrency: int
) -> Iterator[tuple[str, FetchResult | FetchError]]:
    """GET every URL with up to ``concurrency`` in flight; results come back in the order of ``urls``.

    At most ``2 * concurrency`` responses are held at once, so memory stays flat on huge sitemaps.
    """
    if concurrency <= 1:
        for url in urls:
            yield url, _get_or_error(client, url, kind)
        return
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scraper-fetch")
    pending: deque[tuple[str, Future[FetchResult | FetchError]]] = deque()
    try:
        for url in urls:
            pending.append((url, executor.submit(_get_or_error, client, url, kind)))
            if len(pending) >= 2 * concurrency:
                done_url, future = pending.popleft()
                yield done_url, future.result()
        while pending:
            done_url, future = pending.popleft()
            yield done_url, future.result()
    finally:
        # Stopped early (cancelled import): drop what has not started; running requests finish.
        executor.shutdown(wait=True, cancel_futures=True)


def _get_or_error(client: GuardedClient, url: str, kind: Any) -> FetchResult | FetchError:
    try:
        return client.get(url, kind=kind)
    except FetchError as error:
        return error


def _fetch_feed(client: GuardedClient | None, url: str) -> FetchResult:
    if client is None:
        raise ValueError("a URL source needs a client")
    return client.get(url, kind="feed")
