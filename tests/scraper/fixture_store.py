"""A small fake shop over real HTTP on 127.0.0.1, for scraper tests and import benchmarks.

    with run_fixture_store(product_count=40) as store:
        client.get(store.url("/products.json?page=1&limit=10"), kind="feed")
        assert store.request_count("/robots.txt") == 1

The catalog is a pure function of its index (``StoreCatalog.product(i)``), so 10,000 products cost
nothing until asked for: pages, sitemaps and feeds are built on request (whole-catalog documents are
cached), images are drawn on first request and cached by name.

URLs, relative to ``store.base_url``:

==================================  ===============================================================
``/robots.txt``                     ``Disallow: /private/`` for every agent; status ``store.robots_status``
``/private/<anything>``             a page robots.txt forbids; a polite client never asks for it
``/products.json?page=N&limit=L``   Shopify products (``limit`` default 30, at most 250); past the end
                                    ``{"products": []}``
``/collections/<type>/products.json``  the same for one product type slug (``shirts``, ``jeans``, ...)
``/meta.json``                      the shop's name and ``currency`` (``store.shop_currency``; None → 404)
``/sitemap.xml``                    sitemap index → ``/sitemap-products.xml.gz``, ``/sitemap-pages.xml``
``/sitemap-products.xml.gz``        gzipped ``urlset`` of every ``/p/<handle>``, with ``image:image``
``/sitemap-pages.xml``              ``urlset`` with ``/about`` (not a product page)
``/deep-sitemap.xml``               products 0 and 1 around ``/deep``, whose JSON-LD nests 100,000 deep
``/product-sitemap.xml``            the first 9 product pages as relative ``<loc>`` values (All in One SEO)
``/p/<handle>``                     product page (also at ``/products/<handle>``): JSON-LD in four
                                    shapes; every product with ``i % 5 == 1`` has OpenGraph only;
                                    product 2 has invalid JSON-LD and OpenGraph to fall back to
``/about``                          a page without product data
``/feed.xml``, ``/feed.tsv``        Google Merchant feed of every product (RSS 2.0 with ``g:``; TSV)
``/feed-variants.xml``              the same, one item per variant with ``item_group_id``, colour, size;
                                    every photo as a repeated ``g:image_link``
``/img/<name>.jpg``                 a deterministic 96 x 96 JPEG: a coloured shape drawn from the name
``/img/broken/truncated.jpg``       the first half of a JPEG
``/img/broken/html.jpg``            an HTML error page served as ``image/jpeg``
``/img/broken/huge.jpg``            declares ``Content-Length`` of 64 MiB; sends 64 KiB and stops
``/img/broken/endless.jpg``         JPEG-looking bytes without ``Content-Length`` until the client
                                    hangs up (at most 64 MiB)
``/img/broken/bomb.png``            a valid 20000 x 20000 PNG (1-bit, about 50 KB): a pixel bomb
``/flaky?key=K``                    500 on the first request for each key, then 200
``/ratelimited?key=K``              429 with ``Retry-After: 1`` on the first request for each key
``/slow?delay_s=S``                 answers after S seconds (default 5)
                                    (these three answer with the image NAME when ``&image=NAME``)
``/trickle?bytes=N&interval_s=S``   one byte every S seconds (``&headers=1``: of the headers too)
``/redirect?to=PATH``               302 to PATH on this server
``/redirect-loop``                  302 to itself
``/redirect-metadata``              302 to http://169.254.169.254/latest/meta-data/
``/redirect-private``               302 to http://10.0.0.1/
==================================  ===============================================================

Every request is counted by path (without the query): ``store.request_count(path)``,
``store.request_counts()``, ``store.reset_counts()``. ``store.fail_next("/products.json?page=2&limit=250",
status=503)`` makes the next request for exactly that path and query answer with ``status`` (once).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import io
import json
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw

COLOURS = ["navy", "red", "olive", "black", "white", "mustard", "teal", "grey", "pink", "brown"]
PRODUCT_TYPES = ["Shirts", "T-Shirts", "Jeans", "Dresses", "Jackets", "Shoes"]
_SINGULAR = {
    "Shirts": "shirt",
    "T-Shirts": "t-shirt",
    "Jeans": "jeans",
    "Dresses": "dress",
    "Jackets": "jacket",
}
DEPARTMENTS = ["Men", "Women"]
BRANDS = ["Northwind", "Contoso", "Fabrikam"]
_RGB = {
    "navy": (20, 30, 110),
    "red": (200, 30, 40),
    "olive": (110, 120, 40),
    "black": (15, 15, 15),
    "white": (245, 245, 240),
    "mustard": (220, 170, 30),
    "teal": (20, 140, 140),
    "grey": (128, 128, 128),
    "pink": (240, 150, 190),
    "brown": (120, 70, 30),
}
MAX_PAGE_SIZE = 250
DEFAULT_PAGE_SIZE = 30
BIG_BODY_BYTES = 64 * 1024**2


def slugify(text: str) -> str:
    return "".join(char if char.isalnum() else "-" for char in text.lower()).strip("-")


@dataclass(frozen=True)
class StoreProduct:
    index: int
    id: int
    handle: str
    title: str
    colour: str
    product_type: str
    department: str
    brand: str
    prices: tuple[str, ...]  # one per variant, e.g. ("29.90", "31.90")
    available: tuple[bool, ...]
    image_names: tuple[str, ...]  # under /img/, without ".jpg"

    @property
    def in_stock(self) -> bool:
        return any(self.available)

    @property
    def min_price(self) -> str:
        return min(self.prices, key=float)

    @property
    def description(self) -> str:
        noun = _SINGULAR.get(self.product_type, "shoes")
        return f"{self.colour.capitalize()} {noun} by {self.brand}. Regular fit."


class StoreCatalog:
    """``size`` products, each a pure function of its index (no state, nothing built in advance).

    ``price_offset_cents`` raises every price, for tests of re-imports that see changed prices.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.price_offset_cents = 0

    def product(self, index: int) -> StoreProduct:
        colour = COLOURS[index % len(COLOURS)]
        product_type = PRODUCT_TYPES[index % len(PRODUCT_TYPES)]
        handle = f"{colour}-{slugify(product_type)}-{index}"
        base_cents = 1500 + (index * 737) % 8000 + self.price_offset_cents
        variant_count = 1 + index % 3
        return StoreProduct(
            index=index,
            id=7_000_000_000 + index,
            handle=handle,
            title=f"{colour.capitalize()} {_SINGULAR.get(product_type, 'shoes')} {index}",
            colour=colour,
            product_type=product_type,
            department=DEPARTMENTS[index % len(DEPARTMENTS)],
            brand=BRANDS[index % len(BRANDS)],
            prices=tuple(f"{(base_cents + 200 * v) / 100:.2f}" for v in range(variant_count)),
            available=tuple(index % 7 != 0 and (v == 0 or index % 2 == 0) for v in range(variant_count)),
            image_names=tuple(f"{handle}-{k}" for k in range(1 + index % 3)),
        )

    def products(self, indices: range | list[int] | None = None) -> Iterator[StoreProduct]:
        for index in range(self.size) if indices is None else indices:
            yield self.product(index)

    def type_indices(self, type_slug: str) -> range:
        """Indices of one product type, by arithmetic (types repeat every ``len(PRODUCT_TYPES)``)."""
        slugs = [slugify(name) for name in PRODUCT_TYPES]
        if type_slug not in slugs:
            return range(0)
        return range(slugs.index(type_slug), self.size, len(PRODUCT_TYPES))

    def product_by_handle(self, handle: str) -> StoreProduct | None:
        try:
            index = int(handle.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            return None
        if 0 <= index < self.size and self.product(index).handle == handle:
            return self.product(index)
        return None

    # --- documents

    def shopify_json(self, product: StoreProduct, base_url: str) -> dict[str, Any]:
        host = urlsplit(base_url).netloc
        return {
            "id": product.id,
            "title": product.title,
            "handle": product.handle,
            "body_html": f"<p>{html.escape(product.description)}</p><ul><li>Machine wash</li></ul>",
            "published_at": "2024-03-01T10:00:00-05:00",
            "created_at": "2024-03-01T10:00:00-05:00",
            "updated_at": "2024-05-01T10:00:00-05:00",
            "vendor": product.brand,
            "product_type": product.product_type,
            "tags": [product.colour, product.department.lower()],
            "variants": [
                {
                    "id": product.id * 10 + v,
                    "title": f"{product.colour} / {size}",
                    "option1": product.colour,
                    "option2": size,
                    "sku": f"SKU-{product.index}-{size}",
                    "requires_shipping": True,
                    "taxable": True,
                    "available": product.available[v],
                    "price": price,
                    "compare_at_price": None,
                    "grams": 300,
                    "position": v + 1,
                    "product_id": product.id,
                }
                for v, (size, price) in enumerate(zip(("S", "M", "L"), product.prices, strict=False))
            ],
            "images": [
                {
                    "id": product.id * 100 + k,
                    "position": k + 1,
                    "product_id": product.id,
                    # Shopify serves protocol-relative CDN URLs; this keeps the same shape.
                    "src": f"//{host}/img/{name}.jpg",
                    "width": 96,
                    "height": 96,
                }
                for k, name in enumerate(product.image_names)
            ],
            "options": [
                {"name": "Color", "position": 1, "values": [product.colour]},
                {"name": "Size", "position": 2, "values": ["S", "M", "L"][: len(product.prices)]},
            ],
        }

    def products_page(self, indices: range, *, page: int, limit: int, base_url: str) -> bytes:
        start = (page - 1) * limit
        chosen = indices[start : start + limit] if page >= 1 else range(0)
        return json.dumps(
            {"products": [self.shopify_json(p, base_url) for p in self.products(chosen)]}
        ).encode()

    def product_page(self, product: StoreProduct, base_url: str) -> bytes:
        url = f"{base_url}/p/{product.handle}"
        images = [f"{base_url}/img/{name}.jpg" for name in product.image_names]
        availability = "https://schema.org/InStock" if product.in_stock else "https://schema.org/OutOfStock"
        og = [
            ("og:type", "product"),
            ("og:title", product.title),
            ("og:description", product.description),
            ("og:url", url),
            *(("og:image", image) for image in images),
            ("product:price:amount", product.min_price),
            ("product:price:currency", "USD"),
            ("product:availability", "in stock" if product.in_stock else "out of stock"),
            ("product:retailer_item_id", str(product.id)),
            ("product:brand", product.brand),
        ]
        head = "".join(f'<meta property="{key}" content="{html.escape(value)}">' for key, value in og)
        shape = product.index % 5
        if product.index == 2:
            json_ld = '{"@context": "https://schema.org", "@type": "Product", "name": "broken, }'
        elif shape == 1:
            json_ld = ""
        else:
            offers: Any = [
                {"@type": "Offer", "price": price, "priceCurrency": "USD", "availability": availability}
                for price in product.prices
            ]
            if shape == 2:
                offers = {
                    "@type": "AggregateOffer",
                    "lowPrice": product.min_price,
                    "highPrice": max(product.prices, key=float),
                    "priceCurrency": "USD",
                    "offerCount": len(product.prices),
                    "availability": availability,
                }
            node: dict[str, Any] = {
                "@type": "Product",
                "name": product.title,
                "sku": str(product.id),
                "description": product.description,
                "image": images
                if shape != 3
                else [{"@type": "ImageObject", "url": image} for image in images],
                "brand": {"@type": "Brand", "name": product.brand},
                "offers": offers,
                "url": url,
            }
            crumbs = {
                "@type": "BreadcrumbList",
                "itemListElement": [
                    {"@type": "ListItem", "position": n + 1, "name": name}
                    for n, name in enumerate(
                        ["Home", product.department, product.product_type, product.title]
                    )
                ],
            }
            if shape == 0:
                document: Any = {"@context": "https://schema.org", "@graph": [crumbs, node]}
            elif shape == 4:
                document = [
                    {"@context": "https://schema.org", **crumbs},
                    {"@context": "https://schema.org", **node},
                ]
            else:
                document = {"@context": "https://schema.org", **node}
            json_ld = json.dumps(document)
        script = f'<script type="application/ld+json">{json_ld}</script>' if json_ld else ""
        page = (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(product.title)}'
            f' | Fixture Store</title><link rel="canonical" href="{url}">{head}{script}</head>'
            f"<body><h1>{html.escape(product.title)}</h1><p>{html.escape(product.description)}</p>"
            f'<img src="{images[0]}" alt=""></body></html>'
        )
        return page.encode()

    def sitemap_index(self, base_url: str) -> bytes:
        entries = "".join(
            f"<sitemap><loc>{base_url}{path}</loc><lastmod>2024-05-01</lastmod></sitemap>"
            for path in ("/sitemap-products.xml.gz", "/sitemap-pages.xml")
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'
        ).encode()

    def product_sitemap_gz(self, base_url: str) -> bytes:
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
            ' xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">'
        ]
        for product in self.products():
            parts.append(
                f"<url><loc>{base_url}/p/{product.handle}</loc><lastmod>2024-05-01</lastmod>"
                f"<image:image><image:loc>{base_url}/img/{product.image_names[0]}.jpg</image:loc></image:image>"
                "</url>"
            )
        parts.append("</urlset>")
        return gzip.compress("".join(parts).encode(), compresslevel=6, mtime=0)

    def merchant_rss(self, base_url: str) -> bytes:
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">'
            f"<channel><title>Fixture Store</title><link>{base_url}</link>"
            "<description>All products</description>"
        ]
        for p in self.products():
            fields = [
                ("g:id", str(p.id)),
                ("title", p.title),
                ("link", f"{base_url}/p/{p.handle}"),
                ("description", p.description),
                ("g:image_link", f"{base_url}/img/{p.image_names[0]}.jpg"),
                *(("g:additional_image_link", f"{base_url}/img/{name}.jpg") for name in p.image_names[1:]),
                ("g:price", f"{p.min_price} USD"),
                ("g:availability", "in_stock" if p.in_stock else "out_of_stock"),
                ("g:product_type", f"{p.department} > {p.product_type}"),
                ("g:brand", p.brand),
                ("g:color", p.colour),
                ("g:condition", "new"),
            ]
            parts.append("<item>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields) + "</item>")
        parts.append("</channel></rss>")
        return "".join(parts).encode()

    def merchant_variants_rss(self, base_url: str) -> bytes:
        """One item per variant (size), tied by ``item_group_id`` as Fourthwall and Wix feeds write them;
        the groups are interleaved (every size S first, then M, then L), as real feeds may be."""
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">'
            "<channel><title>Fixture Store variants</title>"
        ]
        for v, size in enumerate(("S", "M", "L")):
            for p in self.products():
                if v >= len(p.prices):
                    continue
                fields = [
                    ("g:id", f"{p.id}-{size}"),
                    ("g:item_group_id", str(p.id)),
                    ("g:title", f"{p.title} - {p.colour.capitalize()} / {size}"),
                    ("g:link", f"{base_url}/p/{p.handle}?variant={p.id}{v}"),
                    ("g:description", p.description),
                    *(("g:image_link", f"{base_url}/img/{name}.jpg") for name in p.image_names),
                    ("g:price", f"{p.prices[v]} USD"),
                    ("g:availability", "in stock" if p.available[v] else "out of stock"),
                    ("g:product_type", f"{p.department} > {p.product_type}"),
                    ("g:brand", p.brand),
                    ("g:color", p.colour.capitalize()),
                    ("g:size", size),
                ]
                parts.append("<item>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields) + "</item>")
        parts.append("</channel></rss>")
        return "".join(parts).encode()

    def merchant_tsv(self, base_url: str) -> bytes:
        header = "id\ttitle\tdescription\tlink\timage_link\tadditional_image_link\tprice\tavailability\t"
        lines = [header + "product_type\tbrand"]
        for p in self.products():
            extra = ",".join(f"{base_url}/img/{name}.jpg" for name in p.image_names[1:])
            lines.append(
                "\t".join(
                    [
                        str(p.id),
                        p.title,
                        p.description,
                        f"{base_url}/p/{p.handle}",
                        f"{base_url}/img/{p.image_names[0]}.jpg",
                        extra,
                        f"{p.min_price} USD",
                        "in stock" if p.in_stock else "out of stock",
                        f"{p.department} > {p.product_type}",
                        p.brand,
                    ]
                )
            )
        return ("\n".join(lines) + "\n").encode()


# --- Images ------------------------------------------------------------------------------------------


def draw_image(name: str, *, size_px: int = 96) -> bytes:
    """A JPEG that depends only on ``name``: the colour named in it (else one from its hash) as a shape
    on a light background, so images of one colour look alike to an embedding model."""
    digest = hashlib.sha256(name.encode()).digest()
    colour = next((_RGB[word] for word in name.split("-") if word in _RGB), tuple(digest[:3]))
    background = (235 + digest[3] % 20, 235 + digest[4] % 20, 235 + digest[5] % 20)
    image = Image.new("RGB", (size_px, size_px), background)
    draw = ImageDraw.Draw(image)
    margin = 8 + digest[6] % 16
    box = (margin, margin, size_px - margin, size_px - margin)
    shape = digest[7] % 3
    if shape == 0:
        draw.ellipse(box, fill=colour)
    elif shape == 1:
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon(
            [(size_px // 2, margin), (size_px - margin, size_px - margin), (margin, size_px - margin)],
            fill=colour,
        )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@functools.cache
def png_pixel_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` zeros: tiny on the wire, huge when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    compressed = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")


# --- The server --------------------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up on a keep-alive connection (size caps, timeouts, the end of a test) is
        # normal here; anything else is still printed.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class FixtureStore:
    """The running server; use ``run_fixture_store`` rather than building one by hand."""

    def __init__(self, catalog: StoreCatalog, *, host: str = "127.0.0.1") -> None:
        self.catalog = catalog
        self._server = _QuietServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self._server.store = self  # type: ignore[attr-defined]
        self.base_url = f"http://{host}:{self._server.server_address[1]}"
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._first_seen: set[tuple[str, str]] = set()
        self._documents: dict[str, bytes] = {}
        self._images: dict[str, bytes] = {}
        self._cache_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fixture-store",
            daemon=True,
        )
        self.robots_status = (
            200  # set to 404 or 503 to test how a client reads a missing or failing robots.txt
        )
        self._fail_next: dict[str, list[int]] = {}
        self.shop_currency: str | None = "USD"  # what /meta.json says, as a Shopify store; None: 404

    def fail_next(self, path_and_query: str, *, status: int = 500, times: int = 1) -> None:
        """The next ``times`` requests for exactly ``path_and_query`` answer ``status``."""
        with self._counts_lock:
            self._fail_next.setdefault(path_and_query, []).extend([status] * times)

    def _take_failure(self, path_and_query: str) -> int | None:
        with self._counts_lock:
            statuses = self._fail_next.get(path_and_query)
            return statuses.pop(0) if statuses else None

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def request_count(self, path: str) -> int:
        with self._counts_lock:
            return self._counts[path]

    def request_counts(self) -> Counter[str]:
        with self._counts_lock:
            return Counter(self._counts)

    def reset_counts(self) -> None:
        with self._counts_lock:
            self._counts.clear()

    def _count(self, path: str) -> None:
        with self._counts_lock:
            self._counts[path] += 1

    def _first_time(self, route: str, key: str) -> bool:
        with self._counts_lock:
            if (route, key) in self._first_seen:
                return False
            self._first_seen.add((route, key))
            return True

    def _cached(self, cache: dict[str, bytes], key: str, build: Any) -> bytes:
        with self._cache_lock:
            if key in cache:
                return cache[key]
        value = build()
        with self._cache_lock:
            return cache.setdefault(key, value)

    def document(self, key: str, build: Any) -> bytes:
        return self._cached(self._documents, key, build)

    def image(self, name: str) -> bytes:
        return self._cached(self._images, name, lambda: draw_image(name))


@contextmanager
def run_fixture_store(product_count: int = 24) -> Iterator[FixtureStore]:
    """Serve a store of ``product_count`` products on 127.0.0.1 (a free port) for the block's duration."""
    store = FixtureStore(StoreCatalog(product_count))
    store.start()
    try:
        yield store
    finally:
        store.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FixtureStore/1.0"
    timeout = 30  # an idle keep-alive connection releases its thread after this
    # Headers and body go out in separate writes; with Nagle's algorithm on, the client's delayed ACK
    # would add 40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    @property
    def store(self) -> FixtureStore:
        return self.server.store  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.store._count(path)
        try:
            failure_status = self.store._take_failure(self.path)
            if failure_status is not None:
                headers = {"Retry-After": "1"} if failure_status == 429 else None
                return self._send(failure_status, b"injected failure", "text/plain", headers=headers)
            self._route(path, query)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up (size caps and timeouts do that)

    def _route(self, path: str, query: dict[str, str]) -> None:
        store, catalog, base = self.store, self.store.catalog, self.store.base_url
        if path == "/robots.txt":
            body = f"User-agent: *\nDisallow: /private/\n\nSitemap: {base}/sitemap.xml\n".encode()
            return self._send(store.robots_status, body, "text/plain")
        if path.startswith("/private/"):
            return self._send(200, b"<html><body>staff only</body></html>", "text/html")
        if path == "/products.json" or (path.startswith("/collections/") and path.endswith("/products.json")):
            indices = range(catalog.size)
            if path.startswith("/collections/"):
                indices = catalog.type_indices(path.split("/")[2])
            page, limit = (
                _int(query.get("page"), 1),
                min(_int(query.get("limit"), DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE),
            )
            body = catalog.products_page(indices, page=page, limit=max(limit, 1), base_url=base)
            return self._send(200, body, "application/json; charset=utf-8")
        if path == "/meta.json":
            if store.shop_currency is None:
                return self._send(404, b"not found", "text/plain")
            body = json.dumps({"name": "Fixture Store", "currency": store.shop_currency}).encode()
            return self._send(200, body, "application/json")
        if path == "/sitemap.xml":
            return self._send(200, catalog.sitemap_index(base), "application/xml")
        if path == "/sitemap-products.xml.gz":
            body = store.document(path, lambda: catalog.product_sitemap_gz(base))
            return self._send(200, body, "application/x-gzip")
        if path == "/product-sitemap.xml":  # All in One SEO: relative <loc> values
            locs = "".join(
                f"<url><loc>/p/{p.handle}</loc></url>" for p in catalog.products(range(min(9, catalog.size)))
            )
            body = (
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"{locs}</urlset>"
            ).encode()
            return self._send(200, body, "application/xml")
        if path == "/deep-sitemap.xml":  # two product pages around one that nests JSON-LD 100,000 deep
            locs = "".join(
                f"<url><loc>{base}{page}</loc></url>"
                for page in (f"/p/{catalog.product(0).handle}", "/deep", f"/p/{catalog.product(1).handle}")
            )
            body = (
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"{locs}</urlset>"
            ).encode()
            return self._send(200, body, "application/xml")
        if path == "/deep":
            bomb = "[" * 100_000 + "]" * 100_000
            body = f'<html><head><script type="application/ld+json">{bomb}</script></head></html>'.encode()
            return self._send(200, body, "text/html; charset=utf-8")
        if path == "/sitemap-pages.xml":
            body = (
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{base}/about</loc></url></urlset>"
            ).encode()
            return self._send(200, body, "application/xml")
        if path.startswith(("/p/", "/products/")):
            product = catalog.product_by_handle(path.split("/", 2)[2])
            if product is None:
                return self._send(404, b"<html><body>Not found</body></html>", "text/html")
            return self._send(200, catalog.product_page(product, base), "text/html; charset=utf-8")
        if path == "/about":
            body = b'<html><head><meta property="og:title" content="About us"></head><body>Hi</body></html>'
            return self._send(200, body, "text/html; charset=utf-8")
        if path == "/feed.xml":
            return self._send(
                200, store.document(path, lambda: catalog.merchant_rss(base)), "application/rss+xml"
            )
        if path == "/feed-variants.xml":
            body = store.document(path, lambda: catalog.merchant_variants_rss(base))
            return self._send(200, body, "application/rss+xml")
        if path == "/feed.tsv":
            body = store.document(path, lambda: catalog.merchant_tsv(base))
            return self._send(200, body, "text/tab-separated-values; charset=utf-8")
        if path.startswith("/img/broken/"):
            return self._broken_image(path.rsplit("/", 1)[1])
        if path.startswith("/img/") and path.endswith(".jpg"):
            return self._send(200, store.image(path[len("/img/") : -len(".jpg")]), "image/jpeg")
        if path == "/flaky":
            if store._first_time("flaky", query.get("key", "")):
                return self._send(500, b"temporary failure", "text/plain")
            return self._answer_or_image(query, b"recovered")
        if path == "/ratelimited":
            if store._first_time("ratelimited", query.get("key", "")):
                return self._send(429, b"slow down", "text/plain", headers={"Retry-After": "1"})
            return self._answer_or_image(query, b"welcome back")
        if path == "/slow":
            time.sleep(float(query.get("delay_s", "5")))
            return self._answer_or_image(query, b"finally")
        if path == "/trickle":
            return self._trickle(query)
        if path == "/redirect":
            return self._redirect(base + query.get("to", "/"))
        if path == "/redirect-loop":
            return self._redirect(base + "/redirect-loop")
        if path == "/redirect-metadata":
            return self._redirect("http://169.254.169.254/latest/meta-data/")
        if path == "/redirect-private":
            return self._redirect("http://10.0.0.1/")
        return self._send(404, b"not found", "text/plain")

    def _broken_image(self, name: str) -> None:
        if name == "truncated.jpg":
            whole = self.store.image("truncated-source")
            return self._send(200, whole[: len(whole) // 2], "image/jpeg")
        if name == "html.jpg":
            return self._send(200, b"<!DOCTYPE html><html><body>Image not found</body></html>", "image/jpeg")
        if name == "bomb.png":
            return self._send(200, self.store.document("bomb.png", png_pixel_bomb), "image/png")
        if name == "huge.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(BIG_BODY_BYTES))
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff\xe0" + b"\x00" * 65532)
            self.close_connection = True
            return None
        if name == "endless.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b"\xff\xd8\xff\xe0")
            block = b"\x00" * 65536
            for _ in range(BIG_BODY_BYTES // len(block)):
                self.wfile.write(block)
            return None
        return self._send(404, b"not found", "text/plain")

    def _trickle(self, query: dict[str, str]) -> None:
        """A byte every ``interval_s`` (default 0.2): of the body, or with ``headers=1`` of the headers."""
        interval_s = float(query.get("interval_s", "0.2"))
        size = _int(query.get("bytes"), 60)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\r\n".encode()
        self.close_connection = True
        if query.get("headers") == "1":
            for byte in head:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(interval_s)
            self.wfile.write(b"x" * size)
            return
        self.wfile.write(head)
        for _ in range(size):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(interval_s)

    def _answer_or_image(self, query: dict[str, str], text: bytes) -> None:
        if query.get("image"):
            return self._send(200, self.store.image(query["image"]), "image/jpeg")
        return self._send(200, text, "text/plain")

    def _redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", headers={"Location": location})

    def _send(
        self, status: int, body: bytes, content_type: str, *, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


__all__ = [
    "FixtureStore",
    "StoreCatalog",
    "StoreProduct",
    "draw_image",
    "png_pixel_bomb",
    "run_fixture_store",
]
