"""Product CSV/TSV files as merchants export them from spreadsheets, shop back offices and feed tools.

Columns are matched by name, case- and punctuation-insensitively, through aliases (``id``/``sku``/
``handle`` → external_id, ``name`` → title, ``image``/``image_link``/``Image Src`` → image, ...).
Columns that match nothing are kept in ``attributes`` under their normalised name.

Choices worth knowing:

* Encoding: UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1252. When Windows-1252 is used
  the first record yielded is a ``RowError(source_ref="file", ...)`` saying so, so the import log
  shows why accents may look wrong.
* Delimiter: whichever of ``,`` ``;`` tab ``|`` splits the header into the most known column names.
* Rows are numbered as a spreadsheet shows them: the header is row 1.
* Consecutive rows with the same external_id are one product (a Shopify export writes one row per
  variant and per extra image, with the title only on the first): images are appended, the lowest
  price kept, and the product is in stock if any row is. The same id again later is a ``RowError``.
* ``sale_price``, when present, becomes ``price``; the regular price goes to
  ``attributes["regular_price"]``. A currency column wins over a symbol or code inside the price.
* A numeric category (a Google product category id such as ``1604``) is kept in
  ``attributes["google_product_category_id"]`` rather than used as a category name.
* Image cells may hold file names relative to the CSV (``shirt-1.jpg``, ``photos/shirt-1.jpg``) when
  ``base_dir`` says where the CSV lies: the files are read from that folder (never from outside it)
  into ``image_files``. Without ``base_dir``, relative names are resolved against ``base_url``.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .image_folder import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, read_image_file
from .records import (
    ENCODING_NAMES,
    FeedError,
    FeedWarning,
    LocalImage,
    ParsedRecord,
    RowError,
    ScrapedProduct,
    absolute_url,
    availability_detail,
    clean_text,
    decode_text,
    html_to_text,
    parse_in_stock,
    parse_price,
    payload_snippet,
    split_category_path,
    unique,
)
from .shopify_export import finish_shopify_product, is_shopify_export
from .variants import group_variants

# For each field, the accepted column names in order of preference: with both "id" and "sku"
# columns present, "id" is the external id and "sku" is kept as an attribute.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": ("external_id", "id", "product_id", "item_id", "productid", "sku", "handle", "article_id"),
    "title": ("title", "name", "product_name", "product_title", "product_display_name"),
    "description": ("description", "body_html", "body", "product_description", "long_description"),
    "url": ("url", "link", "product_url", "page_url", "product_link", "permalink"),
    "brand": ("brand", "vendor", "manufacturer", "brand_name"),
    "price": ("price", "variant_price", "regular_price", "unit_price"),
    "sale_price": ("sale_price", "special_price", "discount_price"),
    "currency": ("currency", "currency_code", "price_currency"),
    "in_stock": (
        "in_stock",
        "availability",
        "stock",
        "available",
        "stock_status",
        "instock",
        "quantity",
        "qty",
        "inventory",
        "inventory_quantity",
        "stock_quantity",
        "variant_inventory_qty",
    ),
    "category": (
        "category",
        "category_path",
        "categories",
        "product_type",
        "type",
        "product_category",
        "google_product_category",
    ),
    "image_url": (
        "image_url",
        "image",
        "image_link",
        "image_src",
        "main_image",
        "main_image_url",
        "picture",
        "photo",
    ),
    "image_urls": (
        "image_urls",
        "images",
        "additional_image_link",
        "additional_image_links",
        "additional_images",
        "image_links",
    ),
}
REQUIRED_FIELDS = ("external_id", "title")
DELIMITERS = (",", ";", "\t", "|")

# "image_url_2", "image2", "image_link_3", "picture_4": extra images in the order of their number.
_NUMBERED_IMAGE = re.compile(r"^(?:image|image_url|image_link|picture|photo)_?(\d+)$")
_ALIAS_TO_FIELD = {alias: name for name, aliases in COLUMN_ALIASES.items() for alias in aliases}
# Image lists are separated by "|" or whitespace; Google Merchant TSVs use commas, which are split
# only before another URL because commas are legal inside URLs (image CDN transformations use them).
_IMAGE_LIST_SEPARATOR = re.compile(r"\s*\|\s*|\s+|,(?=\s*(?:https?:)?//)")
# "https:", "ftp:", "C:" (refused later as not http), "//cdn": not a file name relative to the CSV.
_NOT_A_FILE_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|//)")


@dataclass(frozen=True)
class LocalFiles:
    """Where relative image file names in a CSV are read from, and the limits for each file."""

    base_dir: Path
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS

    def read(self, name: str) -> LocalImage:
        return read_image_file(
            self.base_dir, name, max_file_bytes=self.max_file_bytes, max_pixels=self.max_pixels
        )


ImageReader = Callable[[str], LocalImage]  # a relative image name → the image; ValueError with why not


def normalise_header(name: str) -> str:
    """``"Body (HTML)"`` → ``"body_html"``, ``"productDisplayName"`` → ``"product_display_name"``,
    ``"g:image_link"`` → ``"image_link"``."""
    name = name.strip().lstrip("\ufeff")
    name = re.sub(r"^g:", "", name, flags=re.IGNORECASE)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class ColumnMap:
    """Which column index feeds which field; built once from the header row."""

    fields: dict[str, int]
    numbered_images: list[int]
    extra: dict[str, int]  # normalised header → index, for attributes
    width: int

    @classmethod
    def from_header(cls, header: list[str]) -> ColumnMap:
        fields: dict[str, int] = {}
        numbered: list[tuple[int, int]] = []
        extra: dict[str, int] = {}
        names = [normalise_header(cell) for cell in header]
        for field_name, aliases in COLUMN_ALIASES.items():
            for alias in aliases:
                if alias in names:
                    fields[field_name] = names.index(alias)
                    break
        used = set(fields.values())
        for index, name in enumerate(names):
            if index in used or not name:
                continue
            number = _NUMBERED_IMAGE.match(name)
            if number:
                numbered.append((int(number.group(1)), index))
            elif name not in extra:
                extra[name] = index
        return cls(
            fields=fields,
            numbered_images=[index for _, index in sorted(numbered)],
            extra=extra,
            width=len(header),
        )

    def missing_required(self) -> list[str]:
        return [name for name in REQUIRED_FIELDS if name not in self.fields]


def sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header into the most recognised column names (then the most cells)."""

    def score(delimiter: str) -> tuple[int, int]:
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        names = [normalise_header(cell) for cell in cells]
        known = sum(1 for name in names if name in _ALIAS_TO_FIELD or _NUMBERED_IMAGE.match(name))
        return known, len(cells)

    return max(DELIMITERS, key=score)


def parse_csv(
    data: bytes,
    *,
    base_url: str = "",
    base_dir: str | os.PathLike[str] | None = None,
    max_image_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
    local_images: ImageReader | None = None,
    merge_rows: bool = True,
) -> Iterator[ParsedRecord]:
    """Read a product CSV/TSV file; yields one ``ScrapedProduct`` or ``RowError`` per product row.

    ``merge_rows``: consecutive rows with the same id are one product (spreadsheet and Shopify exports);
    without it (Merchant feeds: one row per item) a repeated id is a row error.
    ``local_images`` reads relative image names from elsewhere (a ZIP holding the CSV and its photos).
    A photo that cannot be read is in the product's ``image_errors``; the product is kept.

    ``base_dir`` (the CSV's folder) makes relative image names local files, read into
    ``image_files`` within ``max_image_bytes`` / ``max_image_pixels``; otherwise ``base_url`` resolves
    relative image and product links (``/img/a.jpg``), and without either they are row errors.
    Raises ``FeedError`` at once (before any record) when the file is empty or lacks an id or title
    column; the message lists the accepted column names.
    """
    text, encoding = decode_text(data)
    text = text.replace("\x00", "")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not first_line:
        raise FeedError("the file is empty")
    delimiter = sniff_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    row_number = 0
    header: list[str] = []
    for header in reader:
        row_number += 1
        if any(cell.strip() for cell in header):
            break
    columns = ColumnMap.from_header(header)
    missing = columns.missing_required()
    if missing:
        expected = "; ".join(f"{name} (or {', '.join(COLUMN_ALIASES[name][1:])})" for name in missing)
        found = ", ".join(cell.strip() for cell in header if cell.strip())
        raise FeedError(f"missing required column(s): {expected}. Columns found: {found}")
    local_files = (
        LocalFiles(Path(base_dir), max_file_bytes=max_image_bytes, max_pixels=max_image_pixels).read
        if base_dir is not None
        else local_images
    )
    return group_variants(
        _iter_products(
            reader,
            columns,
            first_row_number=row_number,
            encoding=encoding,
            base_url=base_url,
            local_files=local_files,
            delimiter=delimiter,
            merge_rows=merge_rows,
        )
    )


def _iter_products(
    reader: Iterator[list[str]],
    columns: ColumnMap,
    *,
    first_row_number: int,
    encoding: str,
    base_url: str,
    local_files: ImageReader | None,
    delimiter: str,
    merge_rows: bool,
) -> Iterator[ParsedRecord]:
    if encoding in ENCODING_NAMES:
        yield FeedWarning(
            source_ref="file",
            reason=f"the file is not valid UTF-8 and was read as {ENCODING_NAMES[encoding]}; if "
            "characters look wrong, save the file as UTF-8 and import it again",
        )
    elif encoding not in ("utf-8", "utf-8-sig", "utf-16"):
        yield RowError(
            source_ref="file",
            reason=f"the file is not valid UTF-8 and was read as {encoding} (recognised from its content); "
            "if characters look wrong, save the file as UTF-8 and import it again",
        )
    first_row_of: dict[str, int] = {}
    pending: ScrapedProduct | None = None
    pending_rows: list[ScrapedProduct] = []
    shopify = is_shopify_export(columns.extra)
    row_number = first_row_number
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            row_number += 1
            yield RowError(source_ref=f"row {row_number}", reason=f"unreadable CSV row: {error}")
            continue
        row_number += 1
        if not any(cell.strip() for cell in cells):
            continue
        source_ref = f"row {row_number}"
        payload = payload_snippet(delimiter.join(cells))
        try:
            product = _product_from_cells(
                cells, columns, source_ref=source_ref, base_url=base_url, local_files=local_files
            )
        except ValueError as error:
            external_id = clean_text(_cell(cells, columns, "external_id"))
            yield RowError(source_ref=source_ref, reason=str(error), external_id=external_id, payload=payload)
            continue
        if merge_rows and pending is not None and product.external_id == pending.external_id:
            pending_rows.append(product)
            _merge_into(pending, product)
            continue
        if product.external_id in first_row_of:
            yield RowError(
                source_ref=source_ref,
                reason=f"duplicate external_id {product.external_id!r} (first seen at row "
                f"{first_row_of[product.external_id]}); "
                + (
                    "rows of one product must be next to each other"
                    if merge_rows
                    else "this row was not imported (give every item its own id)"
                ),
                external_id=product.external_id,
                payload=payload,
            )
            continue
        if not product.title:
            yield RowError(
                source_ref=source_ref,
                reason="missing title",
                external_id=product.external_id,
                payload=payload,
            )
            continue
        if "\ufffd" in product.title:
            # Bytes the encoding does not define: storing this would overwrite a good title with garbage.
            yield RowError(
                source_ref=source_ref,
                reason=f"the title has characters that could not be read as {encoding}; "
                "save the file as UTF-8 and import it again",
                external_id=product.external_id,
                payload=payload,
            )
            continue
        if pending is not None:
            yield finish_shopify_product(pending, pending_rows, base_url=base_url) if shopify else pending
        first_row_of[product.external_id] = row_number
        pending = product
        pending_rows = [_copy_row(product)]
    if pending is not None:
        yield finish_shopify_product(pending, pending_rows, base_url=base_url) if shopify else pending


def product_from_mapping(values: Mapping[str, str], *, source_ref: str, base_url: str = "") -> ScrapedProduct:
    """One product from field name → value pairs named like CSV columns (``id``, ``image_link``, ...).

    The same rules as a CSV row; used for feeds whose records are not rows (Merchant XML items).
    Raises ``ValueError`` with the reason when the record is not a usable product.
    """
    product = _product_from_cells(
        list(values.values()),
        _column_map(tuple(values)),
        source_ref=source_ref,
        base_url=base_url,
        local_files=None,
    )
    if not product.title:
        raise ValueError("missing title")
    return product


@functools.lru_cache(maxsize=256)
def _column_map(header: tuple[str, ...]) -> ColumnMap:
    return ColumnMap.from_header(list(header))


def _cell(cells: list[str], columns: ColumnMap, field_name: str) -> str:
    index = columns.fields.get(field_name)
    return cells[index].strip() if index is not None and index < len(cells) else ""


def _product_from_cells(
    cells: list[str], columns: ColumnMap, *, source_ref: str, base_url: str, local_files: ImageReader | None
) -> ScrapedProduct:
    """Raises ``ValueError`` with a reason a merchant can act on."""
    if len(cells) > columns.width and any(cell.strip() for cell in cells[columns.width :]):
        raise ValueError(
            f"row has {len(cells)} cells but the header has {columns.width}; "
            "is a value containing the delimiter missing its quotes?"
        )

    def cell(field_name: str) -> str:
        return _cell(cells, columns, field_name)

    external_id = clean_text(cell("external_id"))
    if not external_id:
        raise ValueError("missing external_id")

    attributes: dict[str, object] = {}
    for name, index in columns.extra.items():
        if index < len(cells) and cells[index].strip():
            attributes[name] = cells[index].strip()

    price, price_currency = _parse_price_cell(cell("price"), "price")
    sale_price, sale_currency = _parse_price_cell(cell("sale_price"), "sale_price")
    if sale_price is not None:
        if price is not None:
            attributes["regular_price"] = str(price)
        price, price_currency = sale_price, sale_currency or price_currency
    currency = clean_text(cell("currency")).upper() or price_currency

    availability = cell("in_stock")
    try:
        in_stock = parse_in_stock(availability)
    except ValueError as error:
        raise ValueError(f"in_stock: {error}") from None
    if availability_detail(availability):
        attributes["availability"] = availability

    category = clean_text(cell("category"))
    if not category:  # Shopify exports: "Type" when set, else "Product Category"
        fallbacks = [columns.extra[alias] for alias in COLUMN_ALIASES["category"] if alias in columns.extra]
        texts = (clean_text(cells[position]) for position in fallbacks if position < len(cells))
        category = next((text for text in texts if text), "")
    category_path: list[str] = []
    if category.isdigit():
        attributes["google_product_category_id"] = category
    else:
        category_path = split_category_path(category)

    image_cells = [cell("image_url"), cell("image_urls")]
    image_cells += [cells[index] for index in columns.numbered_images if index < len(cells)]
    image_urls: list[str] = []
    image_files: list[LocalImage] = []
    image_errors: list[RowError] = []
    for value in image_cells:
        for part in _IMAGE_LIST_SEPARATOR.split(value.strip()):
            if not part:
                continue
            is_file_name = not _NOT_A_FILE_NAME.match(part)
            try:
                if local_files is not None and is_file_name:
                    if part not in (image.name for image in image_files):
                        image_files.append(local_files(part))
                elif is_file_name and not base_url:
                    raise ValueError(
                        f"{part!r} is a file name, not a URL. To import photos with a CSV, upload a ZIP "
                        "holding the CSV and the photos (image cells are paths inside the ZIP), or write "
                        "full http(s) URLs"
                    )
                else:
                    image_urls.append(absolute_url(part, base_url=base_url))
            except ValueError as error:
                # The photo's failure, not the product's.
                image_errors.append(
                    RowError(source_ref=f"{source_ref}: image {part}"[:2000], reason=str(error))
                )

    url = cell("url")
    if url:
        try:
            url = absolute_url(url, base_url=base_url)
        except ValueError as error:
            raise ValueError(f"url: {error}") from None

    return ScrapedProduct(
        external_id=external_id,
        title=clean_text(cell("title")),
        description=html_to_text(cell("description")),
        url=url,
        brand=clean_text(cell("brand")),
        price=price,
        currency=currency,
        in_stock=in_stock,
        category_path=category_path,
        image_urls=unique(image_urls),
        image_files=image_files,
        image_errors=image_errors,
        attributes=attributes,
        source_ref=source_ref,
    )


def _parse_price_cell(value: str, column: str) -> tuple[Decimal | None, str]:
    try:
        return parse_price(value)
    except ValueError as error:
        raise ValueError(f"{column}: {error}") from None


def _copy_row(row: ScrapedProduct) -> ScrapedProduct:
    """The first row as read, before later rows are merged into it (Shopify variants need each row)."""
    return ScrapedProduct(
        external_id=row.external_id,
        title=row.title,
        price=row.price,
        currency=row.currency,
        in_stock=row.in_stock,
        image_urls=list(row.image_urls),
        attributes=dict(row.attributes),
        source_ref=row.source_ref,
    )


def _merge_into(product: ScrapedProduct, row: ScrapedProduct) -> None:
    """Fold a variant or extra-image row into the product it continues."""
    product.image_errors += row.image_errors
    product.image_urls = unique(product.image_urls + row.image_urls)
    known_files = {image.name for image in product.image_files}
    product.image_files += [image for image in row.image_files if image.name not in known_files]
    if row.price is not None and (product.price is None or row.price < product.price):
        product.price = row.price
        product.currency = row.currency or product.currency
    if row.in_stock is not None:
        product.in_stock = bool(product.in_stock) or row.in_stock
        if row.attributes.get("availability") != product.attributes.get("availability"):
            product.attributes.pop("availability", None)  # the rows disagree; in_stock sums them up
    for name in ("title", "description", "url", "brand", "currency"):
        if not getattr(product, name):
            setattr(product, name, getattr(row, name))
    if not product.category_path:
        product.category_path = row.category_path
