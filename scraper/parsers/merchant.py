"""Google Merchant Center product feeds: RSS 2.0, Atom 1.0 or tab-separated text.

The format is detected from the content: XML with ``<rss>`` or ``<feed>`` (fields in the
``http://base.google.com/ns/1.0`` namespace, ``g:``), else a TSV with a header row. Gzipped feeds
are decompressed first. Fields map the same way as in ``csv_feed``: ``image_link`` then every
``additional_image_link``; ``sale_price`` wins over ``price`` (the regular price goes to
``attributes["regular_price"]``); ``product_type`` ("A > B > C") is the category, else a textual
``google_product_category``; ``in_stock``/``preorder``/``backorder`` count as in stock; fields
without a dedicated slot (``color``, ``size``, ``gtin``, ``item_group_id``, ...) go to ``attributes``.

XML is read as a stream with lxml (see ``_iter_xml_items``); HTML named entities that XML lacks
(``&ecirc;``, common in real feeds) are repaired on the way and reported as a ``FeedWarning``; an
``item_group_id`` groups variants into one product (``variants.py``). A truncated or malformed feed
yields every item before the damage, then raises ``FeedError`` saying where it broke and how many
items were read: the caller keeps those products but must not treat products missing from the feed
as deleted.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

import lxml.etree

from .csv_feed import parse_csv, product_from_mapping
from .feedstream import EntityRepair, open_feed
from .records import FeedError, FeedWarning, ParsedRecord, RowError, clean_text, payload_snippet
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
    that is malformed, truncated, declares entities, or is not an RSS/Atom document. XML is parsed as
    a stream (gzip expanded on the fly, never past ``max_decompressed_bytes``) in linear time.
    """
    stream = open_feed(data, max_decompressed_bytes=max_decompressed_bytes)
    head = stream.peek(64) if isinstance(stream, io.BufferedReader) else data[:64]
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return group_variants(_iter_xml_items(stream, base_url=base_url))
    data = stream.read(max_decompressed_bytes + 1)
    if len(data) > max_decompressed_bytes:
        raise FeedError(f"the feed expands to more than {max_decompressed_bytes:,} bytes; refused")
    return parse_csv(data, base_url=base_url, merge_rows=False)  # groups variants too


def _iter_xml_items(stream: BinaryIO, *, base_url: str) -> Iterator[ParsedRecord]:
    """libxml2 through lxml: linear in the feed's size (expat re-scans a token cut across reads, which
    made one huge comment or attribute cost quadratic time), text nodes capped at 10 MB (no
    ``huge_tree``), no network, no DTD loading, no external entities; a DTD that declares entities is
    refused outright."""
    repair = EntityRepair(stream)
    items_read = 0
    root = None
    events = lxml.etree.iterparse(
        io.BufferedReader(repair),
        events=("start", "end"),
        # Only internal entities, and libxml2 caps their amplification; a DTD that declares any is
        # refused at the root element anyway. (False would turn an undefined entity into a misleading
        # "no element found".)
        resolve_entities="internal",
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        for event, element in events:
            if root is None:
                root = element
                if _declares_entities(element):
                    raise FeedError("XML refused: it declares entities (an entity-expansion bomb?)")
                name = _split_tag(element.tag)[1]
                if name not in ("rss", "feed"):
                    raise FeedError(f"not a Merchant feed: the root element is <{name}>, not <rss> or <feed>")
                continue
            if event != "end" or element.tag not in _ITEM_TAGS:
                continue
            items_read += 1
            yield _record_from_item(element, position=items_read, base_url=base_url)
            # Keeps memory flat on feeds with hundreds of thousands of items.
            element.clear()
            parent = element.getparent()
            while parent is not None and element.getprevious() is not None:
                del parent[0]
    except lxml.etree.XMLSyntaxError as error:
        if "amplification" in error.msg:
            raise FeedError("XML refused: it declares entities that expand without bound") from None
        if repair.repaired:
            yield FeedWarning(source_ref="feed", reason=repair.warning())
        line, column = error.position
        raise FeedError(
            f"the feed is truncated or malformed at line {line}, column {column} ({error.msg}); "
            f"{items_read} items were read before it" + (_entity_hint() if "Entity" in error.msg else "")
        ) from None
    if repair.repaired:
        yield FeedWarning(source_ref="feed", reason=repair.warning())


def _declares_entities(root: Any) -> bool:
    dtd = root.getroottree().docinfo.internalDTD
    return dtd is not None and any(True for _ in dtd.iterentities())


def _entity_hint() -> str:
    return (
        ". XML knows only &amp; &lt; &gt; &quot; &apos; and numeric references (&#234;); "
        "write other characters as themselves (UTF-8) or as numeric references"
    )


def _record_from_item(item: Any, *, position: int, base_url: str) -> ParsedRecord:
    plain: dict[str, list[str]] = {}
    google: dict[str, list[str]] = {}
    for child in item:
        if not isinstance(child.tag, str):
            continue
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
