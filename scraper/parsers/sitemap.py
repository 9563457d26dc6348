"""Sitemaps: the page URLs a shop lists.

Crawling a shop without a feed goes: ``/sitemap.xml`` (often an index) → child sitemaps (often
``.xml.gz``) → page URLs → ``parse_product_page`` (``product_page.py``) on each page. Relative
``<loc>`` values are resolved against the sitemap's own URL.

XML goes through defusedxml: a document declaring entities (the "billion laughs" bomb) is refused
with ``FeedError``, as are malformed and truncated documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from .records import (
    FeedError,
    RowError,
    absolute_url,
    maybe_gunzip,
    unique,
)

# The sitemap protocol caps a sitemap at 50 MB uncompressed.
DEFAULT_MAX_SITEMAP_BYTES = 50 * 1024**2


@dataclass
class SitemapResult:
    """What one sitemap file lists: page URLs (a ``urlset``) or more sitemaps (a ``sitemapindex``)."""

    urls: list[str] = field(default_factory=list)
    child_sitemaps: list[str] = field(default_factory=list)
    lastmod: dict[str, str] = field(default_factory=dict)  # URL → <lastmod> as written, for re-crawls
    image_urls: dict[str, list[str]] = field(default_factory=dict)  # page URL → <image:loc> values
    errors: list[RowError] = field(default_factory=list)  # <loc> values that are not http(s) URLs


def parse_xml(data: bytes) -> Element:
    """Parse untrusted XML with defusedxml; ``FeedError`` for entity declarations and malformed XML."""
    try:
        return defusedxml.ElementTree.fromstring(data)
    except defusedxml.DefusedXmlException as error:
        raise FeedError(f"XML refused: it declares entities or external references ({error})") from None
    except ParseError as error:
        raise FeedError(f"malformed or truncated XML: {error}") from None


def local_name(tag: object) -> str:
    """``"{http://www.sitemaps.org/schemas/sitemap/0.9}loc"`` → ``"loc"``."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def parse_sitemap(
    data: bytes, *, base_url: str = "", max_decompressed_bytes: int = DEFAULT_MAX_SITEMAP_BYTES
) -> SitemapResult:
    """Read a sitemap or sitemap index, gzipped or not (recognised by magic bytes, not by name).

    ``base_url`` is the sitemap's own URL: relative ``<loc>`` values (All in One SEO writes them)
    are resolved against it.

    Plain-text sitemaps (one URL per line) are read too. Raises ``FeedError`` for anything else.
    """
    data = maybe_gunzip(data, max_decompressed_bytes=max_decompressed_bytes)
    if len(data) > max_decompressed_bytes:
        raise FeedError(f"sitemap is larger than {max_decompressed_bytes:,} bytes")
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    result = SitemapResult()
    if not stripped.startswith(b"<"):
        for line in stripped.decode("utf-8", errors="replace").splitlines():
            if line.strip():
                _add_location(result.urls, line, result, base_url=base_url)
        return result
    root = parse_xml(stripped)
    kind = local_name(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        raise FeedError(f"not a sitemap: the root element is <{kind}>")
    for entry in root:
        entry_kind = local_name(entry.tag)
        if entry_kind not in ("url", "sitemap"):
            continue
        location = lastmod = ""
        images: list[str] = []
        for child in entry:
            name = local_name(child.tag)
            if name == "loc":
                location = (child.text or "").strip()
            elif name == "lastmod":
                lastmod = (child.text or "").strip()
            elif name == "image":
                images += [(loc.text or "").strip() for loc in child if local_name(loc.tag) == "loc"]
        target = result.child_sitemaps if entry_kind == "sitemap" else result.urls
        url = _add_location(target, location, result, base_url=base_url)
        if url and lastmod:
            result.lastmod[url] = lastmod
        if url and images:
            result.image_urls[url] = unique([_try_url(image, base_url=url) for image in images])
    return result


def _add_location(target: list[str], location: str, result: SitemapResult, *, base_url: str) -> str:
    try:
        url = absolute_url(location, base_url=base_url)
    except ValueError as error:
        result.errors.append(RowError(source_ref=location or "<loc>", reason=str(error)))
        return ""
    target.append(url)
    return url


def _try_url(value: str, *, base_url: str) -> str:
    try:
        return absolute_url(value, base_url=base_url)
    except ValueError:
        return ""
