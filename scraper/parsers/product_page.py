"""Product pages: schema.org data (JSON-LD, microdata) and OpenGraph, read with extruct.

``parse_product_page(html, url)`` reads one page. The page's structured data is extracted with
extruct (a well-kept extractor: JSON-LD — including blocks wrapped in ``/*<![CDATA[*/ … /*]]>*/`` or
HTML comments —, microdata and OpenGraph), then:

* the product is the first schema.org ``Product`` of the JSON-LD, else of the microdata; what it lacks
  (brand, availability, price, images, a breadcrumb) is filled from the other one, then from OpenGraph
  / ``product:`` meta tags, which stand in alone when there is no schema.org product at all;
* a page is a product page only with a schema.org Product, or OpenGraph that says so (``og:type``
  product, or a price or retailer item id): an article with ``og:title`` and ``og:image`` is not;
* the category is the product's own ``category``, else the breadcrumb that belongs to the product: the
  home crumb (in any language, or a link to the site's root), a shop-wide listing ("Shop", "Tienda",
  ``/shop/``) and a last crumb that is the product itself are dropped, and of several breadcrumb lists
  (a theme's and an SEO plugin's) the most specific is taken;
* invalid or absurdly nested JSON-LD is one page's problem (a ``RowError`` or a note in
  ``attributes["json_ld_problem"]``), never an exception that stops the crawl.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import extruct
import lxml.etree
import lxml.html
from extruct.jsonld import JsonLdExtractor

from .records import (
    RowError,
    ScrapedProduct,
    absolute_url,
    availability_detail,
    clean_text,
    decode_text,
    html_to_text,
    parse_in_stock,
    parse_price,
    split_category_path,
    unique,
)


@dataclass(frozen=True, slots=True)
class NotAProduct(RowError):
    """A page with no product data at all (an article, the about page): skipped, not an error."""


def _try_url(value: str, *, base_url: str) -> str:
    try:
        return absolute_url(value, base_url=base_url)
    except ValueError:
        return ""


_PRODUCT_TYPES = {"product", "productgroup", "individualproduct", "productmodel", "someproducts"}
_TYPE_PREFIX = re.compile(r"^(?:https?://schema\.org/|schema:)", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_ID_KEYS = ("sku", "productID", "mpn", "gtin13", "gtin14", "gtin12", "gtin8", "gtin")
_ATTRIBUTE_KEYS = (*_ID_KEYS, "color", "material", "size", "pattern", "gender", "itemCondition")


def parse_product_page(html: bytes, url: str) -> ScrapedProduct | RowError:
    """Read one product page; ``url`` is where it was fetched from (the base for relative links).

    Returns ``NotAProduct`` (a ``RowError``) with ``source_ref=url`` when the page holds no product
    data, and a plain ``RowError`` when it holds broken product data (invalid JSON-LD, no name).
    ``attributes["structured_data"]`` says where the data came from: ``"json-ld"``, ``"microdata"`` or
    ``"opengraph"``. External id: ``sku``, ``productID``, ``mpn`` or a GTIN, else
    ``product:retailer_item_id``, else the product's canonical URL.
    """
    try:
        return _parse_product_page(html, url)
    except RecursionError:
        # lxml and extruct recurse over the document; a hostile page nests deeper than Python allows.
        return RowError(source_ref=url, reason="the page nests its elements too deeply to be read")


def _parse_product_page(html: bytes, url: str) -> ScrapedProduct | RowError:
    try:
        document = lxml.html.document_fromstring(_XML_DECLARATION.sub("", _decode_html(html), count=1))
    except (lxml.etree.ParserError, ValueError) as error:
        return RowError(source_ref=url, reason=f"unreadable HTML: {error}")
    json_ld_nodes, json_ld_problem = _read_json_ld(document)
    microdata_nodes = _read_microdata(document, url)
    meta = _read_meta(document, url)
    canonical = _canonical_url(document, url)
    all_nodes = json_ld_nodes + microdata_nodes

    sources = [
        (node, name)
        for nodes, name in ((json_ld_nodes, "json-ld"), (microdata_nodes, "microdata"))
        if (node := next((node for node in nodes if _is_product(node)), None)) is not None
    ]
    if sources:
        node, name = sources[0]
        product = _product_from_schema(node, all_nodes, page_url=url, canonical=canonical)
        product.attributes["structured_data"] = name
        for other, _ in sources[1:]:
            _fill_missing(product, _product_from_schema(other, all_nodes, page_url=url, canonical=canonical))
        _fill_from_meta(product, meta, page_url=url)
    elif _meta_describes_product(meta):
        product = ScrapedProduct(external_id="", title="", attributes={"structured_data": "opengraph"})
        _fill_from_meta(product, meta, page_url=url)
        product.category_path = product.category_path or _breadcrumb_path(
            all_nodes, title=product.title, product_urls={url, canonical}
        )
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
    return decode_text(data)[0]  # UTF-8, else Japanese when it reads as such, else Windows-1252


_JSON_LD = JsonLdExtractor()


def _read_json_ld(document: lxml.html.HtmlElement) -> tuple[list[dict[str, Any]], str]:
    """Every JSON object in the page's JSON-LD blocks, outermost first, and what was invalid if anything.

    Each block is read on its own, so one broken block does not hide the others.
    """
    nodes: list[dict[str, Any]] = []
    problems: list[str] = []
    for script in document.iter("script"):
        if not (script.get("type") or "").strip().lower().startswith("application/ld+json"):
            continue
        script.set("type", "application/ld+json")  # extruct matches the exact value
        try:
            items = _JSON_LD.extract_items(script)
        except RecursionError:
            problems.append("invalid JSON-LD: nested too deeply")
            continue
        except ValueError as error:
            problems.append(f"invalid JSON-LD: {error}")
            continue
        for item in items:
            nodes.extend(_walk_json(item))
    return nodes, "; ".join(problems)


def _read_microdata(document: lxml.html.HtmlElement, url: str) -> list[dict[str, Any]]:
    """schema.org microdata items in the same shape as JSON-LD (``@type``, properties)."""
    try:
        found = extruct.extract(document, base_url=url, syntaxes=["microdata"], uniform=True)
    except RecursionError:
        return []
    except Exception:
        return []
    return [node for item in found.get("microdata", []) for node in _walk_json(item)]


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


def _product_from_schema(
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
        product_url = _first_text(node.get("url"), "@id")
        product_urls = {page_url, canonical, _try_url(product_url, base_url=page_url) if product_url else ""}
        category_path = _breadcrumb_path(all_nodes, title=title, product_urls=product_urls)

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


# The first crumb is the home page whatever the language; these names mark it when its link does not.
_HOME_CRUMBS = {
    "home", "homepage", "home page", "start", "startseite", "accueil", "inicio", "portada", "início",
    "pagina iniziale", "strona główna", "hjem", "hem", "etusivu", "domů", "startpagina",
    "главная", "ana sayfa", "首页", "ホーム", "홈",
}  # fmt: skip
# Crumbs that stand for the whole shop, not a category of it.
_SHOP_CRUMBS = {
    "shop", "store", "tienda", "boutique", "negozio", "sklep", "winkel", "butik", "loja", "products",
    "all products", "productos", "produits", "produkte", "alle produkte", "catalog", "catalogue",
    "catálogo", "catalogo", "katalog",
}  # fmt: skip
_SHOP_PATHS = {"/shop", "/store", "/tienda", "/boutique", "/products", "/collections/all", "/catalog"}


@dataclass(frozen=True)
class _Crumb:
    name: str
    url: str


def _breadcrumb_path(nodes: list[dict[str, Any]], *, title: str, product_urls: set[str]) -> list[str]:
    """The category from the page's breadcrumbs: of every ``BreadcrumbList`` (an SEO plugin's and the
    theme's may both be there), the most specific once the home crumb, shop-wide crumbs and the product
    itself are dropped."""
    best: list[str] = []
    for node in nodes:
        if "breadcrumblist" not in _types(node):
            continue
        items = [item for item in _as_list(node.get("itemListElement")) if isinstance(item, dict)]
        items.sort(key=lambda item: _position(item.get("position")))
        crumbs = [_crumb(item) for item in items]
        crumbs = [crumb for crumb in crumbs if crumb.name]
        if crumbs and _is_home(crumbs[0]):
            crumbs = crumbs[1:]
        if crumbs and _is_product_crumb(crumbs[-1], title=title, product_urls=product_urls):
            crumbs = crumbs[:-1]
        names = [crumb.name for crumb in crumbs if not _is_shop_wide(crumb)]
        if len(names) > len(best):
            best = names
    return best


def _crumb(item: dict[str, Any]) -> _Crumb:
    target = item.get("item")
    name = _first_text(item.get("name")) or _first_text(target, "name")
    url = target if isinstance(target, str) else _first_text(target, "@id", "url") if target else ""
    return _Crumb(name=name, url=_try_url(url, base_url="") if url else "")


def _is_home(crumb: _Crumb) -> bool:
    return crumb.name.casefold() in _HOME_CRUMBS or (
        bool(crumb.url) and urlsplit(crumb.url).path in ("", "/")
    )


def _is_shop_wide(crumb: _Crumb) -> bool:
    path = urlsplit(crumb.url).path.rstrip("/").lower() if crumb.url else ""
    return crumb.name.casefold() in _SHOP_CRUMBS or path in _SHOP_PATHS


def _is_product_crumb(crumb: _Crumb, *, title: str, product_urls: set[str]) -> bool:
    if title and crumb.name.casefold() == title.casefold():
        return True
    return bool(crumb.url) and crumb.url.rstrip("/") in {url.rstrip("/") for url in product_urls if url}


def _position(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _read_meta(document: lxml.html.HtmlElement, url: str) -> dict[str, list[str]]:
    """OpenGraph and ``product:`` properties (read by extruct), plus ``<meta name=…>`` tags such as
    ``description`` and ``twitter:title`` that OpenGraph does not cover. Keys are lower case."""
    meta: dict[str, list[str]] = {}
    try:
        graphs = extruct.extract(
            document, base_url=url, syntaxes=["opengraph"], uniform=True, with_og_array=True
        ).get("opengraph", [])
    except Exception:
        graphs = []
    for graph in graphs:
        for key, value in graph.items():
            if key == "@context":
                continue
            name = "og:type" if key == "@type" else key.lower()
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str) and text.strip():
                    meta.setdefault(name, []).append(html_lib.unescape(text.strip()))
    for tag in document.iter("meta"):
        key = (tag.get("name") or tag.get("itemprop") or "").strip().lower()
        content = tag.get("content")
        if key and not tag.get("property") and content is not None and content.strip():
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


def _fill_missing(product: ScrapedProduct, other: ScrapedProduct) -> None:
    """What the first schema.org product left empty, from the second (microdata after JSON-LD)."""
    for name in ("external_id", "title", "description", "url", "brand", "currency"):
        if not getattr(product, name):
            setattr(product, name, getattr(other, name))
    if product.price is None and other.price is not None:
        product.price, product.currency = other.price, other.currency or product.currency
    if product.in_stock is None:
        product.in_stock = other.in_stock
    product.category_path = product.category_path or other.category_path
    product.image_urls = product.image_urls or other.image_urls
    for key, value in other.attributes.items():
        product.attributes.setdefault(key, value)


def _canonical_url(document: lxml.html.HtmlElement, page_url: str) -> str:
    for link in document.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            return _try_url(link.get("href") or "", base_url=page_url) or page_url
    return page_url
