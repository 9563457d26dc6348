"""Google Merchant Center product feeds: RSS 2.0, Atom 1.0 or tab-separated text.

The format is detected from the content: XML with ``<rss>`` or ``<feed>`` (fields in the
``http://base.google.com/ns/1.0`` namespace, ``g:``), else a TSV with a header row. Gzipped feeds
are decompressed first. Fields map the same way as in ``csv_feed``: ``image_link`` then every
``additional_image_link``; ``sale_price`` wins over ``price`` (the regular price goes to
``attributes["regular_price"]``); ``product_type`` ("A > B > C") is the category, else a textual
``google_product_category``; ``in_stock``/``preorder``/``backorder`` count as in stock; fields
without a dedicated slot (``color``, ``size``, ``gtin``, ``item_group_id``, ...) go to ``attributes``.

XML is read incrementally. A truncated or malformed feed yields every item before the damage, then
raises ``FeedError`` saying where it broke and how many items were read: the caller keeps those
products but must not treat products missing from the feed as deleted.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from .csv_feed import parse_csv, product_from_mapping
from .records import FeedError, ParsedRecord, RowError, clean_text, maybe_gunzip, payload_snippet
from .variants import group_variants

GOOGLE_NAMESPACE = "http://base.google.com/ns/1.0"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
DEFAULT_MAX_FEED_BYTES = 512 * 1024**2

# Atom and RSS names for the same fields; a g: field of the same name wins over them.
_PLAIN_FIELD_NAMES = {"summary": "description", "content": "description", "guid": "guid"}
_MULTI_VALUE_FIELDS = {"additional_image_link"}
_ITEM_TAGS = {"item", "entry", f"{{{ATOM_NAMESPACE}}}entry"}


def parse_merchant_feed(
    data: bytes, *, base_url: str = "", max_decompressed_bytes: int = DEFAULT_MAX_FEED_BYTES
) -> Iterator[ParsedRecord]:
    """Yield one ``ScrapedProduct`` or ``RowError`` per feed item (XML) or row (TSV).

    Raises ``FeedError`` at once for a TSV without id/title columns, and during iteration for XML
    that is malformed, truncated, declares entities, or is not an RSS/Atom document.
    """
    data = maybe_gunzip(data, max_decompressed_bytes=max_decompressed_bytes)
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return group_variants(_iter_xml_items(data, base_url=base_url))
    return parse_csv(data, base_url=base_url)  # groups variants too


def _iter_xml_items(data: bytes, *, base_url: str) -> Iterator[ParsedRecord]:
    items_read = 0
    root: Element | None = None
    events = defusedxml.ElementTree.iterparse(io.BytesIO(data), events=("start", "end"))
    try:
        for event, element in events:
            if root is None:
                root = element
                name = _split_tag(element.tag)[1]
                if name not in ("rss", "feed"):
                    raise FeedError(f"not a Merchant feed: the root element is <{name}>, not <rss> or <feed>")
                continue
            if event != "end" or element.tag not in _ITEM_TAGS:
                continue
            items_read += 1
            yield _record_from_item(element, position=items_read, base_url=base_url)
            element.clear()  # keeps memory flat on feeds with hundreds of thousands of items
    except defusedxml.DefusedXmlException as error:
        raise FeedError(f"XML refused: it declares entities or external references ({error})") from None
    except ParseError as error:
        line, column = getattr(error, "position", (0, 0))
        raise FeedError(
            f"the feed is truncated or malformed at line {line}, column {column} ({error}); "
            f"{items_read} items were read before it"
        ) from None


def _record_from_item(item: Element, *, position: int, base_url: str) -> ParsedRecord:
    plain: dict[str, list[str]] = {}
    google: dict[str, list[str]] = {}
    for child in item:
        namespace, name = _split_tag(child.tag)
        if len(child):  # nested groups such as g:shipping and g:tax
            continue
        if namespace == ATOM_NAMESPACE and name == "link":
            if child.get("rel", "alternate") != "alternate":
                continue
            value = child.get("href") or child.text or ""  # some feeds write the URL as the text
        else:
            value = child.text or ""
        if not value.strip():
            continue
        target = google if namespace == GOOGLE_NAMESPACE else plain
        target.setdefault(_PLAIN_FIELD_NAMES.get(name, name) if target is plain else name, []).append(value)
    fields = {**plain, **google}
    if len(fields.get("image_link", [])) > 1:
        # A repeated image_link (seen in real feeds) is more photos, not a mistake.
        fields["additional_image_link"] = fields["image_link"][1:] + fields.get("additional_image_link", [])
        fields["image_link"] = fields["image_link"][:1]
    source_ref = f"item {position}"
    if fields.get("id"):
        source_ref += f" (id {clean_text(fields['id'][0])})"
    values = {
        name: (" | ".join(clean_text(v) for v in values) if name in _MULTI_VALUE_FIELDS else values[0])
        for name, values in fields.items()
    }
    try:
        return product_from_mapping(values, source_ref=source_ref, base_url=base_url)
    except ValueError as error:
        return RowError(
            source_ref=source_ref,
            reason=str(error),
            external_id=clean_text(values.get("id", "")),
            payload=payload_snippet("; ".join(f"{name}: {value}" for name, value in values.items())),
        )


def _split_tag(tag: object) -> tuple[str, str]:
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag
