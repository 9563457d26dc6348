"""What every catalog parser produces, and the value normalisers they share.

Parsers are pure: bytes in, records out. Each yields ``ScrapedProduct | RowError`` so that one
broken row is reported (with where it came from) and the rest of the feed still imports. A problem
with the feed as a whole (missing required column, truncated XML, a refused entity-expansion bomb)
raises ``FeedError`` instead.

Missing text values are ``""`` rather than ``None`` so the importer can write them to non-null
``CharField``s as they are; missing numbers and flags are ``None`` ("the feed did not say").
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.html


class FeedError(ValueError):
    """The feed as a whole cannot be read: wrong format, missing required columns, malformed XML.

    A parser that streams (CSV, merchant XML) may raise this after it has already yielded records:
    those records are valid, but the feed is incomplete, so the importer must not treat products
    missing from it as removed from the shop.
    """


@dataclass(frozen=True, slots=True)
class LocalImage:
    """An image that arrived with the catalog itself (image folder or ZIP upload) instead of by URL."""

    name: str  # path inside the folder or archive, e.g. "men/shirts/blue-polo.jpg"
    content: bytes
    content_type: str  # sniffed from the magic bytes, e.g. "image/jpeg"


@dataclass(kw_only=True, slots=True)
class Variant:
    """One buyable version of a product (a colour and size of a shirt), as the source listed it.

    ``colour`` is kept as the source wrote it: it is a per-photo label that similarity learning reads.
    """

    external_id: str
    colour: str = ""
    size: str = ""
    price: Decimal | None = None
    in_stock: bool | None = None
    image_url: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "colour": self.colour,
            "size": self.size,
            "price": None if self.price is None else str(self.price),
            "in_stock": self.in_stock,
            "image_url": self.image_url,
        }


@dataclass(kw_only=True, slots=True)
class ScrapedProduct:
    """One product as read from a catalog source, before it is matched to a row in the shop.

    ``external_id`` is the source's own stable id (SKU, Shopify id, relative image path, or the page
    URL when a product page has no id), so a second import of the same source updates instead of
    duplicating. ``image_urls`` are absolute http(s) URLs in the source's order (the first is the main
    image); ``image_files`` carries images that came inside the upload. ``attributes`` holds extra
    JSON-serialisable fields the source provided (tags, colour, size, sale price, raw availability).
    ``source_ref`` says where the record came from ("row 12", a URL, a path in an archive).
    """

    external_id: str
    title: str
    description: str = ""
    url: str = ""
    brand: str = ""
    price: Decimal | None = None
    currency: str = ""  # ISO 4217 code, upper case; "" when the source did not say
    in_stock: bool | None = None
    category_path: list[str] = field(default_factory=list)  # ["Men", "Shirts"], root first
    image_urls: list[str] = field(default_factory=list)
    image_files: list[LocalImage] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    # Photos named by the record that could not be read (a missing file, a bad URL): the product is
    # still imported, and each of these is logged as that photo's failure.
    image_errors: list[RowError] = field(default_factory=list)
    source_ref: str = ""

    def set_variants(self, variants: list[Variant]) -> None:
        """Keep the variants, and write them into ``attributes`` so the catalog stores them per product:
        ``attributes["variants"]`` (a list of ``Variant.as_json()``) and ``attributes["colours"]`` (each
        colour once, in the source's order), queryable as ``attributes__colours__contains=["Navy"]``."""
        self.variants = variants
        if not variants:
            return
        self.attributes["variants"] = [variant.as_json() for variant in variants]
        colours = unique([variant.colour for variant in variants])
        sizes = unique([variant.size for variant in variants])
        if colours:
            self.attributes["colours"] = colours
        if sizes:
            self.attributes["sizes"] = sizes
        prices = [variant.price for variant in variants if variant.price is not None]
        if prices and max(prices) != min(prices):
            self.attributes["price_max"] = str(max(prices))


@dataclass(frozen=True, slots=True)
class RowError:
    """One record of the source that could not be read; the import logs it and goes on.

    ``external_id`` is the record's id when the parser could read it: a full re-sync must not mark
    that product out of stock just because this copy of its row is broken. ``payload`` is a short
    excerpt of the record as the source wrote it, for the import log.
    """

    source_ref: str
    reason: str
    external_id: str = ""
    payload: str = ""


@dataclass(frozen=True, slots=True)
class FeedWarning(RowError):
    """Not an error: something the parser repaired or guessed about the feed as a whole (HTML entities
    in XML, a guessed text encoding). The import goes on and shows it on the job as a warning."""


PAYLOAD_MAX_CHARS = 500


def payload_snippet(text: str) -> str:
    """The start of a record as written, cut to ``PAYLOAD_MAX_CHARS`` for the import log."""
    return text if len(text) <= PAYLOAD_MAX_CHARS else text[: PAYLOAD_MAX_CHARS - 1] + "…"


ParsedRecord = ScrapedProduct | RowError


# --- Value normalisers -------------------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")


def clean_text(value: object) -> str:
    """Collapse runs of whitespace (including non-breaking spaces) and strip; ``None`` becomes ``""``."""
    if value is None:
        return ""
    return _WHITESPACE.sub(" ", str(value)).strip()


_BLOCK_END = re.compile(r"(?i)<\s*(br\s*/?|/\s*(p|div|li|h[1-6]|tr|ul|ol|table|blockquote))\s*>")


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment (Shopify ``body_html``, RSS descriptions), one line per block."""
    if not html or not html.strip():
        return ""
    if "<" not in html and "&" not in html:
        lines = (clean_text(line) for line in html.splitlines())
        return "\n".join(line for line in lines if line)
    # Block ends become newlines before parsing, so "<p>a</p><p>b</p>" reads "a\nb", not "ab".
    marked = _BLOCK_END.sub(lambda match: match.group(0) + "\n", html)
    try:
        root = lxml.html.fragment_fromstring(marked, create_parent="div")
    except (ValueError, lxml.etree.ParserError):
        return clean_text(re.sub(r"<[^>]*>", " ", html))
    for script in root.xpath(".//script|.//style"):
        script.drop_tree()
    lines = (clean_text(line) for line in root.text_content().splitlines())
    return "\n".join(line for line in lines if line)


_CATEGORY_SEPARATOR = re.compile(r"\s*(?:>|›|»|&gt;)\s*")


def split_category_path(value: str) -> list[str]:
    """``"Men > Shirts > Casual"`` → ``["Men", "Shirts", "Casual"]`` (also ``›`` and ``»``)."""
    return [part for part in (clean_text(p) for p in _CATEGORY_SEPARATOR.split(value or "")) if part]


# Symbols that name one currency in practice. "$" alone is read as USD; a currency column or code in
# the same feed wins over it. "kr" is left out on purpose: it is SEK, NOK, DKK or ISK.
_CURRENCY_SYMBOLS = {
    "US$": "USD",
    "A$": "AUD",
    "AU$": "AUD",
    "C$": "CAD",
    "CA$": "CAD",
    "NZ$": "NZD",
    "R$": "BRL",
    "HK$": "HKD",
    "S$": "SGD",
    "$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "₹": "INR",
    "RS.": "INR",
    "RS": "INR",
    "₩": "KRW",
    "₽": "RUB",
    "₺": "TRY",
    "₪": "ILS",
    "₫": "VND",
    "₱": "PHP",
    "ZŁ": "PLN",
    "KČ": "CZK",
}
# Letters next to a symbol mean it is part of a word ("Rs" in "Rsvp" is not rupees).
_SYMBOL_PATTERN = re.compile(
    "(?<![A-Za-z])(?:"
    + "|".join(re.escape(symbol) for symbol in sorted(_CURRENCY_SYMBOLS, key=len, reverse=True))
    + ")(?![A-Za-z])",
    re.IGNORECASE,
)
_CODE_PATTERN = re.compile(r"(?<![A-Za-z])([A-Za-z]{3})(?![A-Za-z])")
_NUMBER_PATTERN = re.compile(r"^[+-]?\d[\d.,' ]*$")


def parse_price(text: str) -> tuple[Decimal | None, str]:
    """Read a price written the way shops write them; returns ``(amount, currency_code)``.

    ``"1,299.00"`` → 1299.00, ``"19,99 €"`` → (19.99, "EUR"), ``"$5"`` → (5, "USD"),
    ``"12.50 USD"`` → (12.50, "USD"), ``"1.299,00"`` → 1299.00, ``""`` → (None, "").
    When both ``,`` and ``.`` appear, the last one is the decimal mark; a lone ``,`` followed by exactly
    three digits is a thousands separator (``"1,299"`` → 1299), otherwise it is the decimal mark.
    Raises ``ValueError`` for text that is not a price, and for negative prices.
    """
    remaining = clean_text(text)
    if not remaining:
        return None, ""
    currency = ""
    symbol = _SYMBOL_PATTERN.search(remaining)
    if symbol:
        currency = _CURRENCY_SYMBOLS[symbol.group(0).upper()]
        remaining = remaining[: symbol.start()] + " " + remaining[symbol.end() :]
    code = _CODE_PATTERN.search(remaining)
    if code:
        currency = code.group(1).upper()
        remaining = remaining[: code.start()] + " " + remaining[code.end() :]
    number = remaining.strip()
    if not _NUMBER_PATTERN.match(number):
        raise ValueError(f"{text!r} is not a price")
    amount = _parse_decimal(number.replace(" ", "").replace("'", ""))
    if amount < 0:
        raise ValueError(f"{text!r} is a negative price")
    return amount, currency


def _parse_decimal(number: str) -> Decimal:
    last_comma, last_dot = number.rfind(","), number.rfind(".")
    if last_comma >= 0 and last_dot >= 0:
        decimal_mark = "," if last_comma > last_dot else "."
    elif last_comma >= 0:
        groups = number.split(",")
        decimal_mark = "" if len(groups[-1]) == 3 and all(groups[1:]) else ","
        if decimal_mark == "," and number.count(",") > 1:
            raise ValueError(f"{number!r} is not a price")
    else:
        decimal_mark = "." if number.count(".") == 1 else ""
    integer_part, _, fraction = number.rpartition(decimal_mark) if decimal_mark else (number, "", "")
    groups = re.split(r"[.,]", integer_part)
    # Thousands groups have three digits; two are allowed before the last for Indian lakh ("1,50,000").
    if len(groups) > 1 and (len(groups[-1]) != 3 or any(len(group) not in (2, 3) for group in groups[1:])):
        raise ValueError(f"{number!r} is not a price")
    digits = "".join(groups) + ("." + fraction if decimal_mark else "")
    try:
        return Decimal(digits)
    except InvalidOperation as error:
        raise ValueError(f"{number!r} is not a price") from error


# Pre-orders and back-orders count as in stock: a shopper can buy them now. Parsers keep the raw value in
# ``attributes["availability"]`` when it says more than in/out of stock (see ``availability_detail``), for
# shops that want to tell pre-orders apart; "yes", "0" or "InStock" add nothing to ``in_stock``.
_IN_STOCK_WORDS = {
    "yes", "y", "true", "t", "1", "in stock", "instock", "available", "in store only", "instoreonly",
    "online only", "onlineonly", "limited availability", "limitedavailability", "preorder", "pre order",
    "presale", "backorder", "back order", "available for order", "availablefororder",
}  # fmt: skip
_OUT_OF_STOCK_WORDS = {
    "no", "n", "false", "f", "0", "out of stock", "outofstock", "oos", "sold out", "soldout",
    "unavailable", "not available", "discontinued",
}  # fmt: skip
_SCHEMA_PREFIX = re.compile(r"^(?:https?://)?(?:www\.)?schema\.org/", re.IGNORECASE)


# Values that say more than in or out of stock.
_AVAILABILITY_DETAILS = {
    "in store only", "instoreonly", "online only", "onlineonly", "limited availability",
    "limitedavailability", "preorder", "pre order", "presale", "backorder", "back order",
    "available for order", "availablefororder", "discontinued",
}  # fmt: skip


def _normalise_availability(value: object) -> str:
    text = _SCHEMA_PREFIX.sub("", clean_text(value)).lower().replace("_", " ").replace("-", " ")
    return _WHITESPACE.sub(" ", text)


def availability_detail(value: object) -> str:
    """The availability as written when it says more than in/out of stock (``"preorder"``,
    ``"https://schema.org/BackOrder"``), else ``""`` (``"yes"``, ``"12"``, ``"in_stock"``)."""
    return clean_text(value) if _normalise_availability(value) in _AVAILABILITY_DETAILS else ""


def parse_in_stock(value: object) -> bool | None:
    """Read an availability flag: yes/no, true/false, 1/0, "in stock", "out_of_stock", schema.org
    ``InStock``/``OutOfStock`` URLs, or a quantity (``"12"`` → True, ``"0"`` → False).
    Empty → ``None``; anything else raises ``ValueError``.
    """
    if value is None or isinstance(value, bool):
        return value
    text = _normalise_availability(value)
    if not text:
        return None
    if text in _IN_STOCK_WORDS:
        return True
    if text in _OUT_OF_STOCK_WORDS:
        return False
    try:
        return Decimal(text.replace(",", "")) > 0
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an availability value") from None


_PLAIN_ABSOLUTE_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:[/?#][^\s\\]*)?$")


def absolute_url(value: str, *, base_url: str = "") -> str:
    """An absolute http(s) URL from what a feed wrote: a relative or protocol-relative (``//cdn/x.jpg``)
    URL is resolved against ``base_url``, or gets ``https:`` without one. Raises ``ValueError`` for other
    schemes and for relative paths without a ``base_url``.
    """
    url = clean_text(value).replace(" ", "%20")
    if url.startswith("//"):
        # "//cdn/x.jpg" takes the scheme of the page it was found on.
        base_scheme = base_url.partition("://")[0].lower() if "://" in base_url else ""
        url = (base_scheme if base_scheme in ("http", "https") else "https") + ":" + url
    if _PLAIN_ABSOLUTE_URL.match(url):
        return url  # the common case, without the cost of parsing
    if base_url and not urlsplit(url).scheme:
        url = urljoin(base_url, url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    return url


def unique(values: list[str]) -> list[str]:
    """The values without repeats, in first-seen order."""
    return list(dict.fromkeys(value for value in values if value))


# --- Byte helpers ------------------------------------------------------------------------------------


# Multi-byte encodings of Japanese, Chinese and Korean text (Python codec names). charset_normalizer tells
# these apart from Western text reliably; among single-byte encodings it does not (it reads cp1252 French as
# cp1250), so for those Windows-1252 stays the guess.
_CJK_ENCODINGS = (
    "cp932", "shift_jis", "euc_j", "iso2022_jp", "gb2312", "gbk", "gb18030", "hz", "big5", "cp950",
    "euc_kr", "cp949", "johab", "iso2022_kr",
)  # fmt: skip
_DETECT_SAMPLE_BYTES = 1 << 20


def _detect_cjk_encoding(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(data[:_DETECT_SAMPLE_BYTES]).best()
    if best is None or not best.encoding.startswith(_CJK_ENCODINGS):
        return None
    try:
        data.decode(best.encoding)  # the whole file, strictly: the sample may not tell
    except (UnicodeDecodeError, LookupError):
        return None
    return best.encoding


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode a text feed: UTF-8 (with or without BOM), UTF-16 with BOM, Japanese (Shift_JIS/cp932 or
    EUC-JP) when the bytes read strictly as Japanese text, another Japanese, Chinese or Korean encoding
    recognised from the content (GBK, Big5, EUC-KR, ...), else Windows-1252.

    Returns ``(text, encoding)``. Windows-1252 is what spreadsheet programs on Windows write when a
    user saves "CSV" without choosing UTF-8; callers report when anything but UTF was used, since the
    guess can be wrong. Japanese is checked first by its kana: on short text charset-normalizer takes
    Shift_JIS for Korean (cp949), which would be mojibake over good titles.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    japanese = detect_japanese(data)
    if japanese:
        return data.decode(japanese, errors="replace"), japanese
    detected = _detect_cjk_encoding(data)
    if detected:
        return data.decode(detected), detected
    # cp1252 leaves five byte values undefined; those become U+FFFD rather than failing the feed (a row whose
    # title holds one is refused rather than stored: see csv_feed).
    return data.decode("cp1252", errors="replace"), "cp1252"


ENCODING_NAMES = {"cp932": "Shift_JIS (cp932)", "euc_jp": "EUC-JP", "cp1252": "Windows-1252 (cp1252)"}
_KANA = re.compile(r"[\u3040-\u30ff]")
_JAPANESE_TEXT = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff01-\uff60\u3400-\u4dbf]")


def detect_japanese(data: bytes, *, sample_bytes: int = 1 << 18) -> str:
    """``"cp932"`` or ``"euc_jp"`` when ``data`` decodes strictly in it as Japanese text (kana present,
    and nearly every non-ASCII character Japanese), else ``""``. Western text in Windows-1252 fails
    this: its accented letters become half-width katakana, private-use or stray kanji, never mostly
    full-width kana and kanji."""
    sample = data[:sample_bytes]
    if len(data) > sample_bytes:
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    for encoding in ("cp932", "euc_jp"):
        try:
            text = sample.decode(encoding)
        except UnicodeDecodeError:
            continue
        non_ascii = [character for character in text if ord(character) > 127]
        if not non_ascii or not _KANA.search(text):
            continue
        japanese = sum(1 for character in non_ascii if _JAPANESE_TEXT.match(character))
        if japanese >= 0.9 * len(non_ascii):
            return encoding
    return ""


GZIP_MAGIC = b"\x1f\x8b"


def maybe_gunzip(data: bytes, *, max_decompressed_bytes: int) -> bytes:
    """Decompress gzip data (recognised by its magic bytes, not by a file name); other data passes as is.

    Reads in chunks and stops at ``max_decompressed_bytes`` so a gzip bomb costs at most that much
    memory; raises ``FeedError`` when the limit is passed or the stream is corrupt.
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    chunks: list[bytes] = []
    total_bytes = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            while chunk := stream.read(1 << 16):
                total_bytes += len(chunk)
                if total_bytes > max_decompressed_bytes:
                    raise FeedError(
                        f"gzip data decompresses to more than {max_decompressed_bytes:,} bytes; refused"
                    )
                chunks.append(chunk)
    except (OSError, EOFError) as error:
        raise FeedError(f"gzip data is corrupt or truncated: {error}") from error
    return b"".join(chunks)
