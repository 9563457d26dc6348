"""Shopify storefront JSON: ``/products.json`` and ``/collections/<handle>/products.json``.

Every Shopify shop serves these without credentials, up to 250 products per page::

    for page_url in shopify_page_urls("https://shop.example", page_size=250):
        records, has_more = parse_shopify_products(client.get(page_url, kind="feed").content,
                                                   base_url="https://shop.example", page_size=250)
        ...
        if not has_more:
            break

The JSON has no currency (it is a shop setting); pass it as ``currency`` when known.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from .records import (
    FeedError,
    ParsedRecord,
    RowError,
    ScrapedProduct,
    Variant,
    absolute_url,
    clean_text,
    html_to_text,
    parse_price,
    payload_snippet,
    split_category_path,
    unique,
)
from .variants import COLOUR_KEYS, SIZE_KEYS

MAX_PAGE_SIZE = 250


def shopify_page_urls(
    base_url: str, collection: str | None = None, *, page_size: int = MAX_PAGE_SIZE, first_page: int = 1
) -> Iterator[str]:
    """``{base_url}/products.json?page=1&limit=250``, then page 2, 3, ... without end: the caller stops
    when ``parse_shopify_products`` says there is no more. ``collection`` is a collection handle;
    ``first_page`` resumes a walk that stopped."""
    root = base_url.rstrip("/")
    path = f"/collections/{quote(collection, safe='')}/products.json" if collection else "/products.json"
    page = max(1, first_page)
    while True:
        yield f"{root}{path}?{urlencode({'page': page, 'limit': min(page_size, MAX_PAGE_SIZE)})}"
        page += 1


def parse_shopify_products(
    data: bytes, *, base_url: str, page_size: int | None = None, currency: str = ""
) -> tuple[list[ParsedRecord], bool]:
    """Read one page of ``products.json``; returns ``(records, has_more)``.

    ``has_more`` is false on an empty page, or on a short page when ``page_size`` (the ``limit`` that
    was asked for) is given, which saves the request for the empty page at the end.
    Raises ``FeedError`` when the body is not a Shopify products page (e.g. a password page).
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise FeedError(f"not a Shopify products.json page: invalid JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("products"), list):
        raise FeedError('not a Shopify products.json page: no "products" list')
    items = document["products"]
    root = base_url.rstrip("/")
    records: list[ParsedRecord] = []
    for position, item in enumerate(items, start=1):
        source_ref = f"{root}/products.json product {position}"
        if not isinstance(item, dict):
            records.append(RowError(source_ref=source_ref, reason="product is not a JSON object"))
            continue
        if item.get("handle"):
            source_ref = f"{root}/products/{item['handle']}"
        try:
            records.append(_product_from_item(item, root=root, currency=currency, source_ref=source_ref))
        except (ValueError, TypeError, KeyError) as error:
            records.append(
                RowError(
                    source_ref=source_ref,
                    reason=str(error),
                    external_id=clean_text(item.get("id")),
                    payload=payload_snippet(json.dumps(item, ensure_ascii=False, default=str)),
                )
            )
    has_more = bool(items) and (page_size is None or len(items) >= page_size)
    return records, has_more


def _product_from_item(item: dict[str, Any], *, root: str, currency: str, source_ref: str) -> ScrapedProduct:
    external_id = clean_text(item.get("id"))
    title = clean_text(item.get("title"))
    if not external_id:
        raise ValueError("product has no id")
    if not title:
        raise ValueError("product has no title")

    variants = [variant for variant in item.get("variants") or [] if isinstance(variant, dict)]
    prices: list[Decimal] = []
    for variant in variants:
        amount, _ = parse_price(clean_text(variant.get("price")))
        if amount is not None:
            prices.append(amount)
    availability = [
        variant["available"] for variant in variants if isinstance(variant.get("available"), bool)
    ]

    images = [image for image in item.get("images") or [] if isinstance(image, dict) and image.get("src")]
    images.sort(key=lambda image: image.get("position") or 0)  # stable: keeps feed order on ties
    image_urls = unique([absolute_url(str(image["src"]), base_url=root) for image in images])

    attributes: dict[str, Any] = {}
    tags = item.get("tags")
    if isinstance(tags, str):
        tags = [tag.strip() for tag in tags.split(",")]
    if tags:
        attributes["tags"] = [clean_text(tag) for tag in tags if clean_text(tag)]
    options = {
        clean_text(option.get("name")): [clean_text(value) for value in option.get("values") or []]
        for option in item.get("options") or []
        if isinstance(option, dict) and option.get("name") and option.get("name") != "Title"
    }
    if options:
        attributes["options"] = options
    compare_at = [_optional_price(variant.get("compare_at_price")) for variant in variants]
    if any(price is not None for price in compare_at):
        attributes["compare_at_price"] = str(min(price for price in compare_at if price is not None))
    skus = [clean_text(variant.get("sku")) for variant in variants if clean_text(variant.get("sku"))]
    if skus:
        attributes["skus"] = skus
    for key in ("handle", "updated_at"):
        if item.get(key):
            attributes[key] = str(item[key])

    handle = clean_text(item.get("handle"))
    product = ScrapedProduct(
        external_id=external_id,
        title=title,
        description=html_to_text(str(item.get("body_html") or "")),
        url=f"{root}/products/{quote(handle)}" if handle else "",
        brand=clean_text(item.get("vendor")),
        price=min(prices) if prices else None,
        currency=currency.upper(),
        in_stock=any(availability) if availability else None,
        category_path=split_category_path(clean_text(item.get("product_type"))),
        image_urls=image_urls,
        attributes=attributes,
        source_ref=source_ref,
    )
    product.set_variants(_variants(item, variants, root=root))
    return product


def option_roles(names: list[str]) -> dict[str, int]:
    """Which option (1-based, as ``option1``…``option3``) holds the colour and which the size."""
    roles: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        key = normalise_option_name(name)
        if key in COLOUR_KEYS and "colour" not in roles:
            roles["colour"] = position
        elif key in SIZE_KEYS and "size" not in roles:
            roles["size"] = position
    return roles


def normalise_option_name(name: str) -> str:
    return clean_text(name).lower().replace("ö", "oe").replace("ß", "ss")


def _variants(item: dict[str, Any], variants: list[dict[str, Any]], *, root: str) -> list[Variant]:
    names = [
        clean_text(option.get("name")) for option in item.get("options") or [] if isinstance(option, dict)
    ]
    roles = option_roles(names)
    if not roles:
        return []  # "Default Title", or options that are neither colour nor size: nothing to tell apart
    found = []
    for variant in variants:
        featured = variant.get("featured_image")
        image = featured.get("src") if isinstance(featured, dict) else None
        available = variant.get("available")
        found.append(
            Variant(
                external_id=clean_text(variant.get("id")),
                colour=clean_text(variant.get(f"option{roles['colour']}")) if "colour" in roles else "",
                size=clean_text(variant.get(f"option{roles['size']}")) if "size" in roles else "",
                price=_optional_price(variant.get("price")),
                in_stock=available if isinstance(available, bool) else None,
                image_url=_try_absolute(str(image), root) if image else "",
            )
        )
    return found


def _try_absolute(value: str, root: str) -> str:
    try:
        return absolute_url(value, base_url=root)
    except ValueError:
        return ""


def _optional_price(value: object) -> Decimal | None:
    """A secondary price: unreadable is the same as absent, it must not cost the product."""
    try:
        return parse_price(clean_text(value))[0]
    except ValueError:
        return None
