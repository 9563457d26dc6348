"""Sitemaps and the product pages they list.

Crawling a shop without a feed goes: ``/sitemap.xml`` (often an index) → child sitemaps (often
``.xml.gz``) → page URLs → ``parse_product_page`` on each page. Product data is read from schema.org
``Product`` JSON-LD first, with OpenGraph/``product:`` meta tags filling what JSON-LD lacks, or
standing in for it when it is missing or invalid. A page counts as a product page only when it has
a JSON-LD Product, or OpenGraph that says so (``og:type`` product, or a price or retailer item id):
an article with just ``og:title`` and ``og:image`` is not a product.

XML goes through defusedxml: a document declaring entities (the "billion laughs" bomb) is refused
with ``FeedError``, as are malformed and truncated documents.
"""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree
import lxml.etree
import lxml.html

from .records import (
    FeedError,
    RowError,
    ScrapedProduct,
    absolute_url,
    availability_detail,
    clean_text,
    decode_text,
    html_to_text,
    maybe_gunzip,
    parse_in_stock,
    parse_price,
    split_category_path,
    unique,
)

# The sitemap protocol caps a sitemap at 50 MB uncompressed.
DEFAULT_MAX_SITEMAP_BYTES = 50 * 1024**2


@dataclass(frozen=True, slots=True)
class NotAProduct(RowError):
    """A page with no product data at all (an article, the about page): skipped, not an error."""


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


def parse_sitemap(data: bytes, *, max_decompressed_bytes: int = DEFAULT_MAX_SITEMAP_BYTES) -> SitemapResult:
    """Read a sitemap or sitemap index, gzipped or not (recognised by magic bytes, not by name).

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
                _add_location(result.urls, line, result)
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
        url = _add_location(target, location, result)
        if url and lastmod:
            result.lastmod[url] = lastmod
        if url and images:
            result.image_urls[url] = unique([_try_url(image, base_url=url) for image in images])
    return result


def _add_location(target: list[str], location: str, result: SitemapResult) -> str:
    try:
        url = absolute_url(location)
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


# --- Product pages ------------------------------------------------------------------------------------

_PRODUCT_TYPES = {"product", "productgroup", "individualproduct", "productmodel", "someproducts"}
_TYPE_PREFIX = re.compile(r"^(?:https?://schema\.org/|schema:)", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_HOME_CRUMBS = {"home", "homepage", "start", "startseite", "accueil", "inicio", "home page"}
_ID_KEYS = ("sku", "productID", "mpn", "gtin13", "gtin14", "gtin12", "gtin8", "gtin")
_ATTRIBUTE_KEYS = (*_ID_KEYS, "color", "material", "size", "pattern", "gender", "itemCondition")


def parse_product_page(html: bytes, url: str) -> ScrapedProduct | RowError:
    """Read one product page; ``url`` is where it was fetched from (the base for relative links).

    Returns ``NotAProduct`` (a ``RowError``) with ``source_ref=url`` when the page holds no product
    data, and a plain ``RowError`` when it holds broken product data (invalid JSON-LD, no name).
    ``attributes["structured_data"]`` says where the data came from: ``"json-ld"`` or ``"opengraph"``.
    External id: ``sku``, ``productID``, ``mpn`` or a GTIN, else ``product:retailer_item_id``,
    else the product's canonical URL.
    """
    try:
        document = lxml.html.document_fromstring(_XML_DECLARATION.sub("", _decode_html(html), count=1))
    except (lxml.etree.ParserError, ValueError) as error:
        return RowError(source_ref=url, reason=f"unreadable HTML: {error}")
    json_ld_nodes, json_ld_problem = _read_json_ld(document)
    meta = _read_meta(document)
    canonical = _canonical_url(document, url)

    product_node = next((node for node in json_ld_nodes if _is_product(node)), None)
    if product_node is not None:
        product = _product_from_json_ld(product_node, json_ld_nodes, page_url=url, canonical=canonical)
        _fill_from_meta(product, meta, page_url=url)
    elif _meta_describes_product(meta):
        product = ScrapedProduct(external_id="", title="", attributes={"structured_data": "opengraph"})
        _fill_from_meta(product, meta, page_url=url)
    elif json_ld_problem:
        reason = f"no product data ({json_ld_problem}, and no OpenGraph product tags)"
        return RowError(source_ref=url, reason=reason)
    else:
        return NotAProduct(source_ref=url, reason="no product data")

    if not product.title:
        return RowError(source_ref=url, reason="product data has no name")
    product.url = product.url or canonical
    product.external_id = product.external_id or product.url
    product.source_ref = url
    if json_ld_problem:
        product.attributes["json_ld_problem"] = json_ld_problem
    return product


def _decode_html(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    declared = _META_CHARSET.search(data[:4096])
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    # Undeclared: UTF-8, a recognised Japanese, Chinese or Korean encoding, else Windows-1252.
    return decode_text(data)[0]


def _read_json_ld(document: lxml.html.HtmlElement) -> tuple[list[dict[str, Any]], str]:
    """Every JSON object in the page's JSON-LD blocks, outermost first, and what was invalid if anything."""
    nodes: list[dict[str, Any]] = []
    problems: list[str] = []
    for script in document.iter("script"):
        if not (script.get("type") or "").strip().lower().startswith("application/ld+json"):
            continue
        text = (script.text or "").strip()
        # Templates sometimes wrap JSON-LD in HTML comments or CDATA markers for old browsers.
        text = re.sub(r"^\s*(?://\s*)?(?:<!--|<!\[CDATA\[)|(?://\s*)?(?:-->|\]\]>)\s*$", "", text).strip()
        if not text:
            continue
        try:
            # strict=False: raw newlines inside strings are common in hand-made templates.
            data = json.loads(text, strict=False)
        except ValueError as error:
            problems.append(f"invalid JSON-LD: {error}")
            continue
        nodes.extend(_walk_json(data))
    return nodes, "; ".join(problems)


def _walk_json(data: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Objects in pre-order, so a page's main Product comes before the products it links to."""
    if depth > 20:
        return
    if isinstance(data, list):
        for item in data:
            yield from _walk_json(item, depth + 1)
    elif isinstance(data, dict):
        yield data
        for value in data.values():
            if isinstance(value, (dict, list)):
                yield from _walk_json(value, depth + 1)


def _types(node: dict[str, Any]) -> set[str]:
    value = node.get("@type")
    values = value if isinstance(value, list) else [value]
    return {_TYPE_PREFIX.sub("", item).lower() for item in values if isinstance(item, str)}


def _is_product(node: dict[str, Any]) -> bool:
    return bool(_types(node) & _PRODUCT_TYPES)


def _first_text(value: Any, *keys: str) -> str:
    """A text value that may be a string, a number, an object with one of ``keys``, or a list of those."""
    if isinstance(value, list):
        return next((text for item in value if (text := _first_text(item, *keys))), "")
    if isinstance(value, dict):
        return next((text for key in keys if (text := _first_text(value.get(key), *keys))), "")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return clean_text(html_lib.unescape(str(value)))
    return ""


def _raw_text(value: Any) -> str:
    """Like ``_first_text`` but keeps line breaks, for descriptions."""
    return value if isinstance(value, str) else _first_text(value)


def _image_values(value: Any) -> list[str]:
    if isinstance(value, list):
        return [url for item in value for url in _image_values(item)]
    if isinstance(value, dict):
        return _image_values(value.get("url") or value.get("contentUrl") or value.get("@id"))
    if isinstance(value, str) and value.strip():
        return [value.strip()]
    return []


def _product_from_json_ld(
    node: dict[str, Any], all_nodes: list[dict[str, Any]], *, page_url: str, canonical: str
) -> ScrapedProduct:
    variants = [item for item in _as_list(node.get("hasVariant")) if isinstance(item, dict)]
    offers = _collect_offers(node.get("offers"))
    if not offers:
        for variant in variants:
            offers += _collect_offers(variant.get("offers"))
    priced = [(offer[0], offer[1]) for offer in offers if offer[0] is not None]
    price, currency = min(priced, key=lambda offer: offer[0]) if priced else (None, "")
    currency = currency or next((offer[1] for offer in offers if offer[1]), "")
    stock_flags = [offer[2] for offer in offers if offer[2] is not None]

    images = _image_values(node.get("image"))
    if not images:
        images = [url for variant in variants for url in _image_values(variant.get("image"))]

    attributes: dict[str, Any] = {"structured_data": "json-ld"}
    for key in _ATTRIBUTE_KEYS:
        text = _first_text(node.get(key), "name", "@id")
        if text:
            attributes[key] = text
    availability = {offer[3] for offer in offers if offer[3]}
    if len(availability) == 1 and availability_detail(next(iter(availability))):
        # Offers that disagree are summed up by in_stock instead.
        attributes["availability"] = availability.pop()

    category = node.get("category")
    if isinstance(category, list):
        category_path = [_first_text(item, "name") for item in category if _first_text(item, "name")]
    else:
        category_path = split_category_path(_first_text(category, "name"))
    title = _first_text(node.get("name"))
    if not category_path:
        category_path = _breadcrumb_path(all_nodes, title=title)

    product_url = _first_text(node.get("url"), "@id")
    return ScrapedProduct(
        external_id=next((_first_text(node.get(key)) for key in _ID_KEYS if _first_text(node.get(key))), ""),
        title=title,
        description=html_to_text(html_lib.unescape(_raw_text(node.get("description")))),
        url=_try_url(product_url, base_url=page_url) if product_url else canonical,
        brand=_first_text(node.get("brand") or node.get("manufacturer"), "name"),
        price=price,
        currency=currency,
        in_stock=any(stock_flags) if stock_flags else None,
        category_path=category_path,
        image_urls=unique([_try_url(image, base_url=page_url) for image in images]),
        attributes=attributes,
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


_Offer = tuple[Decimal | None, str, bool | None, str]  # price, currency, in stock, raw availability


def _collect_offers(value: Any, depth: int = 0) -> list[_Offer]:
    """Offers from an Offer, a list of them, or an AggregateOffer (lowPrice, nested offers)."""
    offers: list[_Offer] = []
    for offer in _as_list(value):
        if not isinstance(offer, dict) or depth > 3:
            continue
        specification = next(
            (s for s in _as_list(offer.get("priceSpecification")) if isinstance(s, dict)), {}
        )
        currency = _first_text(offer.get("priceCurrency") or specification.get("priceCurrency")).upper()
        price = None
        for candidate in (offer.get("price"), offer.get("lowPrice"), specification.get("price")):
            price, written_currency = _json_price(candidate)
            if price is not None:
                currency = currency or written_currency
                break
        availability = _first_text(offer.get("availability"), "@id")
        try:
            in_stock = parse_in_stock(availability)
        except ValueError:
            in_stock = None
        offers.append((price, currency, in_stock, availability))
        offers += _collect_offers(offer.get("offers"), depth + 1)
    return offers


def _json_price(value: Any) -> tuple[Decimal | None, str]:
    if isinstance(value, bool) or value is None:
        return None, ""
    if isinstance(value, (int, float)):
        try:
            return Decimal(str(value)), ""
        except InvalidOperation:
            return None, ""
    try:
        return parse_price(_first_text(value))
    except ValueError:
        return None, ""


def _breadcrumb_path(nodes: list[dict[str, Any]], *, title: str) -> list[str]:
    for node in nodes:
        if "breadcrumblist" not in _types(node):
            continue
        items = [item for item in _as_list(node.get("itemListElement")) if isinstance(item, dict)]
        items.sort(key=lambda item: _position(item.get("position")))
        names = [_first_text(item.get("name")) or _first_text(item.get("item"), "name") for item in items]
        names = [name for name in names if name]
        if names and names[0].casefold() in _HOME_CRUMBS:
            names = names[1:]
        if names and names[-1].casefold() == title.casefold():
            names = names[:-1]
        return names
    return []


def _position(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _read_meta(document: lxml.html.HtmlElement) -> dict[str, list[str]]:
    meta: dict[str, list[str]] = {}
    for tag in document.iter("meta"):
        key = (tag.get("property") or tag.get("name") or tag.get("itemprop") or "").strip().lower()
        content = tag.get("content")
        if key and content is not None and content.strip():
            meta.setdefault(key, []).append(html_lib.unescape(content.strip()))
    return meta


def _meta_describes_product(meta: dict[str, list[str]]) -> bool:
    og_type = (meta.get("og:type") or [""])[0].lower()
    return bool(meta.get("og:title")) and (
        "product" in og_type
        or any(key in meta for key in ("product:price:amount", "og:price:amount", "product:retailer_item_id"))
    )


def _fill_from_meta(product: ScrapedProduct, meta: dict[str, list[str]], *, page_url: str) -> None:
    """OpenGraph and ``product:`` meta tags fill whatever the JSON-LD left empty."""

    def first(*keys: str) -> str:
        return next((clean_text(meta[key][0]) for key in keys if meta.get(key)), "")

    product.title = product.title or first("og:title", "twitter:title")
    product.description = product.description or first("og:description", "description")
    product.brand = product.brand or first("product:brand", "og:brand")
    product.external_id = product.external_id or first("product:retailer_item_id", "product:sku")
    if not product.url and first("og:url"):
        product.url = _try_url(first("og:url"), base_url=page_url)
    if not product.image_urls:
        images = [
            url for key in ("og:image:secure_url", "og:image", "og:image:url") for url in meta.get(key, [])
        ]
        urls = unique([_try_url(image, base_url=page_url) for image in images])
        # Themes list each image twice, as og:image:secure_url and as og:image over plain http.
        product.image_urls = [
            url for url in urls if not (url.startswith("http:") and "https" + url[4:] in urls)
        ]
    if product.price is None:
        try:
            amount, written_currency = parse_price(first("product:price:amount", "og:price:amount"))
        except ValueError:
            amount, written_currency = None, ""
        product.price = amount
        product.currency = product.currency or written_currency
    if product.price is not None and not product.currency:
        product.currency = first("product:price:currency", "og:price:currency").upper()
    if product.in_stock is None:
        availability = first("product:availability", "og:availability")
        try:
            product.in_stock = parse_in_stock(availability)
        except ValueError:
            product.in_stock = None
        if availability_detail(availability):
            product.attributes.setdefault("availability", availability)
    if not product.category_path:
        product.category_path = split_category_path(first("product:category"))


def _canonical_url(document: lxml.html.HtmlElement, page_url: str) -> str:
    for link in document.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            return _try_url(link.get("href") or "", base_url=page_url) or page_url
    return page_url
