"""Shopify admin CSV exports (Products → Export): what the generic CSV reading leaves to do.

``csv_feed`` already folds the rows of one ``Handle`` into one product (variant rows and extra image
rows). For an export this adds:

* the product page URL, ``{store}/products/{handle}`` (an export has no URL column);
* ``Status`` (``active``/``draft``/``archived``) and ``Published``: a product that is not live is not
  imported (``NotLive``, counted as skipped);
* the variants: each variant row's ``Option1..3 Value`` read by the option names of the first row
  (``Color``/``Size`` in any of the languages ``variants`` knows), its price, stock and ``Variant
  Image``. Shopify's placeholder option (``Title`` = ``Default Title``) is no variant.

``Product Category`` when ``Type`` is empty is handled by ``csv_feed``'s category fallback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urljoin

from .records import RowError, ScrapedProduct, Variant, clean_text
from .shopify import option_roles

_NOT_LIVE_STATUSES = {"draft", "archived"}
_PER_ROW_PREFIXES = ("option1_", "option2_", "option3_", "variant_", "image_position", "image_alt_text")


@dataclass(frozen=True, slots=True)
class NotLive(RowError):
    """A product the shop does not sell now (draft, archived, unpublished): skipped, not an error."""


def is_shopify_export(extra_columns: Iterable[str]) -> bool:
    """A header with Shopify's variant columns (``Handle`` is then the product's id)."""
    return bool({"variant_sku", "option1_name"} & set(extra_columns))


def finish_shopify_product(
    product: ScrapedProduct, rows: list[ScrapedProduct], *, base_url: str
) -> ScrapedProduct | RowError:
    first = rows[0].attributes
    status = clean_text(first.get("status")).lower()
    published = clean_text(first.get("published")).lower()
    if status in _NOT_LIVE_STATUSES or published == "false":
        state = status if status in _NOT_LIVE_STATUSES else "not published"
        return NotLive(
            source_ref=product.source_ref,
            reason=f"not live in the shop ({state}); not imported",
            external_id=product.external_id,
        )
    handle = product.external_id
    if not product.url and base_url:
        product.url = urljoin(base_url, f"/products/{quote(handle)}")
    names = [clean_text(first.get(f"option{n}_name")) for n in (1, 2, 3)]
    roles = option_roles(names)
    variants = [_variant(row, roles) for row in rows if _is_variant_row(row)] if roles else []
    product.attributes = {
        key: value for key, value in product.attributes.items() if not key.startswith(_PER_ROW_PREFIXES)
    }
    options = {name: _option_values(rows, n) for n, name in enumerate(names, start=1) if name}
    options.pop("Title", None)  # Shopify's placeholder for a product without options
    if options:
        product.attributes["options"] = options
    product.set_variants(variants)
    return product


def _is_variant_row(row: ScrapedProduct) -> bool:
    attributes = row.attributes
    return any(attributes.get(key) for key in ("option1_value", "variant_sku")) or row.price is not None


def _variant(row: ScrapedProduct, roles: dict[str, int]) -> Variant:
    attributes = row.attributes
    image = clean_text(attributes.get("variant_image"))
    return Variant(
        external_id=clean_text(attributes.get("variant_sku")) or f"{row.external_id}/{row.source_ref}",
        colour=clean_text(attributes.get(f"option{roles['colour']}_value")) if "colour" in roles else "",
        size=clean_text(attributes.get(f"option{roles['size']}_value")) if "size" in roles else "",
        price=row.price,
        in_stock=row.in_stock,  # Variant Inventory Qty
        image_url=image if image.startswith(("http://", "https://")) else "",
    )


def _option_values(rows: list[ScrapedProduct], number: int) -> list[str]:
    values = [clean_text(row.attributes.get(f"option{number}_value")) for row in rows]
    return list(dict.fromkeys(value for value in values if value))
