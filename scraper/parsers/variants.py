"""Variants listed one record per variant, grouped back into products.

Google Merchant feeds (and the CSV/TSV exports of shops that write them) list one item per variant,
tied together by ``item_group_id``: a shirt in 3 colours and 5 sizes is 15 items. Imported as they
are, "similar items" fill up with the same shirt, and its photos are downloaded 15 times. Here the
items of one group become one product whose external id is the group id, with:

* ``variants``: each item's id, colour, size, price, stock and first photo (``Variant``);
* the lowest price (``attributes["price_max"]`` when the prices differ), in stock when any variant is;
* every variant's photos, each once, in the feed's order;
* the title the variants share (``"Tee - Black / M"`` and ``"Tee - Navy / S"`` → ``"Tee"``).

Items of a group need not be next to each other, so grouped items are held until the feed ends (an
ungrouped item is passed on at once); a feed that breaks mid-way still yields the groups read before
the break, then raises. An id seen twice (two products, or two variants with the same id) is a row
error that names the first place it was seen: the later item is not imported over the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .records import FeedError, ParsedRecord, RowError, ScrapedProduct, Variant, clean_text, unique

COLOUR_KEYS = ("color", "colour", "farbe", "couleur", "colore", "kleur", "färg", "cor")
SIZE_KEYS = ("size", "groesse", "grösse", "taille", "taglia", "talla", "maat", "storlek")
# Per-item values that are not the group's: they live in the variants.
_VARIANT_ONLY_KEYS = {"item_group_id", "gtin", "mpn", "sku", *COLOUR_KEYS}
_VARIANT_ONLY_KEYS |= set(SIZE_KEYS)
_TITLE_SEPARATORS = " -–—|/,:("


def variant_of(record: ScrapedProduct) -> Variant:
    """The variant a per-variant record describes (colour and size from its attributes)."""
    attributes = record.attributes
    return Variant(
        external_id=record.external_id,
        colour=next((clean_text(attributes[key]) for key in COLOUR_KEYS if attributes.get(key)), ""),
        size=next((clean_text(attributes[key]) for key in SIZE_KEYS if attributes.get(key)), ""),
        price=record.price,
        in_stock=record.in_stock,
        image_url=record.image_urls[0] if record.image_urls else "",
    )


def group_variants(records: Iterable[ParsedRecord]) -> Iterator[ParsedRecord]:
    """Records with the same ``attributes["item_group_id"]`` become one product (see the module)."""
    groups: dict[str, list[ScrapedProduct]] = {}
    first_seen: dict[str, str] = {}  # external id (product or variant) → where it was first seen
    try:
        for record in records:
            if isinstance(record, RowError):
                yield record
                continue
            earlier = first_seen.get(record.external_id)
            if earlier is not None:
                yield RowError(
                    source_ref=record.source_ref,
                    reason=f"duplicate id {record.external_id!r}: already used by {earlier}; "
                    "this item was not imported (give every item its own id)",
                    external_id=record.external_id,
                )
                continue
            first_seen[record.external_id] = record.source_ref or record.external_id
            group_id = clean_text(record.attributes.get("item_group_id"))
            if not group_id:
                yield record
                continue
            groups.setdefault(group_id, []).append(record)
    except FeedError:
        yield from _merged_groups(groups, first_seen)
        raise
    yield from _merged_groups(groups, first_seen)


def _merged_groups(
    groups: dict[str, list[ScrapedProduct]], first_seen: dict[str, str]
) -> Iterator[ParsedRecord]:
    for group_id, members in groups.items():
        if group_id in first_seen and first_seen[group_id] != members[0].source_ref:
            # A product whose own id is another group's id: the group would overwrite it.
            yield RowError(
                source_ref=members[0].source_ref,
                reason=f"item_group_id {group_id!r} is also the id of {first_seen[group_id]}; "
                f"its {len(members)} variant(s) were not imported",
                external_id=group_id,
            )
            continue
        yield merge_group(group_id, members)
    groups.clear()


def merge_group(group_id: str, members: list[ScrapedProduct]) -> ScrapedProduct:
    """One product from the records of its variants (in feed order)."""
    first = members[0]
    variants = [variant_of(member) for member in members]
    prices = [member.price for member in members if member.price is not None]
    stock = [member.in_stock for member in members if member.in_stock is not None]
    attributes = {
        key: value
        for key, value in first.attributes.items()
        if key not in _VARIANT_ONLY_KEYS and all(member.attributes.get(key) == value for member in members)
    }
    product = ScrapedProduct(
        external_id=group_id,
        title=shared_title([member.title for member in members], variants),
        description=next((member.description for member in members if member.description), ""),
        url=_group_url([member.url for member in members if member.url]),
        brand=next((member.brand for member in members if member.brand), ""),
        price=min(prices) if prices else None,
        currency=next(
            (member.currency for member in members if member.price == min(prices, default=None)), ""
        )
        or first.currency,
        in_stock=any(stock) if stock else None,
        category_path=next((member.category_path for member in members if member.category_path), []),
        image_urls=unique([url for member in members for url in member.image_urls]),
        attributes=attributes,
        source_ref=first.source_ref
        if len(members) == 1
        else f"{first.source_ref} and {len(members) - 1} more",
    )
    product.set_variants(variants)
    return product


def shared_title(titles: list[str], variants: list[Variant]) -> str:
    """The title without the variant's colour and size: the words every title starts with, else the
    first title with a trailing colour/size part cut off."""
    titles = [title for title in titles if title]
    if not titles:
        return ""
    if len(set(titles)) == 1:
        return _strip_variant_suffix(titles[0], variants[0])
    words = [title.split() for title in titles]
    common: list[str] = []
    for column in zip(*words, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    title = " ".join(common).rstrip(_TITLE_SEPARATORS).strip()
    # "Tee - Black / S" and "Tee - Black / M" share "Tee - Black": the colour is still a variant's.
    return _strip_variant_suffix(title or titles[0], variants[0])


def _strip_variant_suffix(title: str, variant: Variant) -> str:
    values = [value for value in (variant.colour, variant.size) if value]
    if not values:
        return title
    pattern = r"[\s\-–—|/,:(]+(?:" + "|".join(re.escape(value) for value in values) + r")[\s/,)]*"
    stripped = re.sub(f"(?:{pattern})+$", "", title, flags=re.IGNORECASE).strip()
    return stripped or title


def _group_url(urls: list[str]) -> str:
    """The product page without the variant selector (``?variant=…``), when the variants share it."""
    bases = unique([re.sub(r"[?#].*$", "", url) for url in urls])
    return bases[0] if len(bases) == 1 else (urls[0] if urls else "")
