"""Catalog parsers: pure functions from bytes to ``ScrapedProduct | RowError`` records.

Nothing here touches the network or Django; fetching goes through ``scraper.http.GuardedClient``.

========================  =====================================================================
source                    entry point
========================  =====================================================================
CSV / TSV upload          ``parse_csv(data, base_url=...)``
ZIP of a CSV + photos     ``parse_catalog_zip(data)``
image folder / ZIP        ``parse_image_folder(path)``, ``parse_image_zip(data, max_files=...)``
Shopify storefront        ``shopify_page_urls(base_url)`` + ``parse_shopify_products(data, ...)``
sitemap crawl             ``parse_sitemap(data)`` + ``parse_product_page(html, url)``
Google Merchant feed      ``parse_merchant_feed(data)`` (RSS, Atom or TSV)
========================  =====================================================================

``detect_feed_format`` tells which of them an uploaded or fetched file is.
"""

from __future__ import annotations

import re
import zlib
from typing import Literal

from .catalog_zip import parse_catalog_zip
from .csv_feed import parse_csv
from .image_folder import (
    ImageInfo,
    ImageRejected,
    ImageTooLarge,
    inspect_image,
    parse_image_folder,
    parse_image_zip,
    sniff_image_type,
)
from .merchant import parse_merchant_feed
from .product_page import NotAProduct, parse_product_page
from .records import FeedError, FeedWarning, LocalImage, ParsedRecord, RowError, ScrapedProduct
from .shopify import parse_shopify_products, shopify_page_urls
from .shopify_export import NotLive
from .sitemap import SitemapResult, parse_sitemap

__all__ = [
    "FeedError",
    "FeedFormat",
    "FeedWarning",
    "ImageInfo",
    "ImageRejected",
    "ImageTooLarge",
    "LocalImage",
    "NotAProduct",
    "NotLive",
    "ParsedRecord",
    "RowError",
    "ScrapedProduct",
    "SitemapResult",
    "detect_feed_format",
    "inspect_image",
    "parse_catalog_zip",
    "parse_csv",
    "parse_image_folder",
    "parse_image_zip",
    "parse_merchant_feed",
    "parse_product_page",
    "parse_shopify_products",
    "parse_sitemap",
    "shopify_page_urls",
    "sniff_image_type",
]

FeedFormat = Literal["csv", "image_zip", "merchant", "product_page", "shopify", "sitemap"]

_XML_ROOT = re.compile(rb"<(?:[\w.-]+:)?(urlset|sitemapindex|rss|feed|html)[\s>/]", re.IGNORECASE)
_MERCHANT_TSV_HEADER = re.compile(rb"^[^\r\n]*\bimage_link\b", re.IGNORECASE)


def detect_feed_format(data: bytes) -> FeedFormat | None:
    """Which parser reads ``data``, judged from its first bytes; ``None`` when none does.

    A TSV whose header has ``image_link`` is ``"merchant"``; other delimited text is ``"csv"``.
    """
    head = data[:65536]
    if head.startswith(b"\x1f\x8b"):
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 65536)
        except zlib.error:
            return None
    if head.startswith(b"PK\x03\x04"):
        return "image_zip"
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        return "shopify" if b'"products"' in head else None
    if head.startswith(b"<"):
        root = _XML_ROOT.search(head)
        if root is None:
            return None
        kind = root.group(1).lower()
        if kind in (b"urlset", b"sitemapindex"):
            return "sitemap"
        return "product_page" if kind == b"html" else "merchant"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "csv"  # UTF-16 text: what spreadsheet programs write as "Unicode text"
    if not head.strip() or b"\x00" in head[:1024]:
        return None
    return "merchant" if b"\t" in head and _MERCHANT_TSV_HEADER.match(head) else "csv"
