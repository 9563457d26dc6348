"""Offline tests of the catalog parsers on captured samples in ``fixtures/`` and generated archives."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
import zlib
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from scraper.parsers import (
    FeedError,
    FeedWarning,
    ImageRejected,
    ImageTooLarge,
    NotAProduct,
    NotLive,
    RowError,
    ScrapedProduct,
    detect_feed_format,
    inspect_image,
    parse_csv,
    parse_image_folder,
    parse_image_zip,
    parse_merchant_feed,
    parse_product_page,
    parse_shopify_products,
    parse_sitemap,
    shopify_page_urls,
)
from scraper.parsers.records import html_to_text, parse_in_stock, parse_price, split_category_path
from tests.scraper.fixture_store import png_pixel_bomb

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def products(records: list) -> dict[str, ScrapedProduct]:
    return {record.external_id: record for record in records if isinstance(record, ScrapedProduct)}


def errors(records: list) -> dict[str, str]:
    return {record.source_ref: record.reason for record in records if isinstance(record, RowError)}


def jpeg_bytes(colour: tuple[int, int, int] = (200, 30, 40), size_px: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size_px, size_px), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (20, 140, 140)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- Values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("1,299.00", Decimal("1299.00"), ""),
        ("19,99 €", Decimal("19.99"), "EUR"),
        ("$5", Decimal("5"), "USD"),
        ("12.50 USD", Decimal("12.50"), "USD"),
        ("usd 12.50", Decimal("12.50"), "USD"),
        ("1.299,00 €", Decimal("1299.00"), "EUR"),
        ("1 299,00", Decimal("1299.00"), ""),
        ("Rs. 1,499", Decimal("1499"), "INR"),
        ("₹1,50,000", Decimal("150000"), "INR"),
        ("CHF 1'299.50", Decimal("1299.50"), "CHF"),
        ("£0.99", Decimal("0.99"), "GBP"),
        ("", None, ""),
    ],
)
def test_parse_price_reads_prices_as_shops_write_them(
    text: str, amount: Decimal | None, currency: str
) -> None:
    assert parse_price(text) == (amount, currency)


@pytest.mark.parametrize("text", ["ten euros", "-4.00", "12.5.3", "free", "1,2,3"])
def test_parse_price_refuses_what_is_not_a_price(text: str) -> None:
    with pytest.raises(ValueError):
        parse_price(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("yes", True),
        ("No", False),
        ("TRUE", True),
        ("0", False),
        ("1", True),
        ("12", True),
        ("in stock", True),
        ("Out of Stock", False),
        ("in_stock", True),
        ("out_of_stock", False),
        ("https://schema.org/InStock", True),
        ("http://schema.org/OutOfStock", False),
        ("SoldOut", False),
        ("preorder", True),
        ("", None),
    ],
)
def test_parse_in_stock(value: str, expected: bool | None) -> None:
    assert parse_in_stock(value) is expected


def test_parse_in_stock_refuses_unknown_words() -> None:
    with pytest.raises(ValueError):
        parse_in_stock("perhaps")


def test_html_to_text_keeps_one_line_per_block_and_drops_scripts() -> None:
    html = "<p>Soft <b>cotton</b>&nbsp;tee.</p><ul><li>Regular fit</li><li>30&deg;C wash</li></ul>"
    html += "<script>track()</script>"
    assert html_to_text(html) == "Soft cotton tee.\nRegular fit\n30°C wash"


def test_split_category_path() -> None:
    assert split_category_path(" Apparel &gt; Men › Shirts ") == ["Apparel", "Men", "Shirts"]
    assert split_category_path("") == []


# --- CSV ---------------------------------------------------------------------------------------------


def test_csv_with_bom_quoted_commas_and_line_breaks() -> None:
    records = list(parse_csv(fixture("products_bom.csv")))
    assert errors(records) == {}
    tee = products(records)["TS-100"]  # the BOM is not part of the first column's name
    assert tee.title == "Crew Tee, Heather Grey"
    assert tee.description == "Soft jersey.\nPre-shrunk cotton."
    assert (tee.price, tee.currency) == (Decimal("1299.00"), "INR")
    assert tee.image_urls == ["https://img.example/ts-100.jpg", "https://img.example/ts-100-back.jpg"]
    assert tee.category_path == ["Men", "T-Shirts"]
    assert tee.brand == "Café Basics"
    assert tee.in_stock is True
    pocket = products(records)["TS-101"]
    assert (pocket.price, pocket.currency, pocket.in_stock) == (Decimal("18"), "USD", False)


def test_csv_semicolons_and_european_prices() -> None:
    found = products(list(parse_csv(fixture("products_semicolon.csv"))))
    assert (found["K-1"].title, found["K-1"].price, found["K-1"].currency) == (
        "Strickjacke Größe M",
        Decimal("49.95"),
        "EUR",
    )
    assert found["K-2"].price == Decimal("1299.00")
    assert [found[key].in_stock for key in ("K-1", "K-2", "K-3")] == [True, False, True]  # in_stock, 0, 7
    assert found["K-1"].category_path == ["Damen", "Strick"]


def test_csv_header_aliases_and_relative_links_with_base_url() -> None:
    found = products(list(parse_csv(fixture("products_aliases.tsv"), base_url="https://loom.example/shop/")))
    shirt = found["A-1"]
    assert shirt.title == "Linen Shirt"
    assert shirt.url == "https://loom.example/products/linen-shirt"
    assert shirt.image_urls == [
        "https://loom.example/img/a-1.jpg",
        "https://loom.example/img/a-1-b.jpg",
        "https://cdn.example/a-1-c.jpg",
    ]
    assert (shirt.brand, shirt.price, shirt.category_path) == ("Loomworks", Decimal("39.90"), ["Shirts"])
    assert shirt.attributes["colour"] == "ecru"  # unknown columns are kept, not dropped
    assert found["A-2"].in_stock is False


def test_csv_bad_rows_are_reported_by_row_and_the_rest_imports() -> None:
    records = list(parse_csv(fixture("products_bad_rows.csv")))
    assert sorted(products(records)) == ["G-1", "G-6", "G-8"]  # G-6: its photo failed, not the product
    reasons = errors(records)
    assert reasons["row 3"] == "missing external_id"
    assert reasons["row 4"] == "missing title"
    assert "ten euros" in reasons["row 5"]
    assert "perhaps" in reasons["row 6"]
    assert "6 cells" in reasons["row 7"]
    assert "row 8" not in reasons
    photo_error = products(records)["G-6"].image_errors[0]
    assert photo_error.source_ref == "row 8: image images/g-6.jpg"
    assert "'images/g-6.jpg' is a file name, not a URL" in photo_error.reason
    assert "upload a ZIP holding the CSV and the photos" in photo_error.reason
    assert "negative" in reasons["row 9"]
    assert "duplicate external_id 'G-1'" in reasons["row 12"]  # row 10 is blank and still counted
    assert products(records)["G-1"].title == "Good One"  # the later duplicate did not overwrite it


def test_csv_in_windows_1252_is_read_with_a_note() -> None:
    records = list(parse_csv(fixture("products_cp1252.csv")))
    assert isinstance(records[0], FeedWarning) and records[0].source_ref == "file"
    assert "Windows-1252" in records[0].reason
    assert products(records)["C-1"].title == "Crème brûlée mould"


def test_csv_row_errors_carry_the_external_id_and_the_row_as_written() -> None:
    records = list(parse_csv(fixture("products_bad_rows.csv")))
    by_ref = {record.source_ref: record for record in records if isinstance(record, RowError)}
    assert (by_ref["row 5"].external_id, by_ref["row 5"].payload) == (
        "G-3",
        "G-3,Bad Price,ten euros,https://img.example/g-3.jpg,yes",
    )
    assert by_ref["row 3"].external_id == ""  # the id is what is missing
    assert by_ref["row 12"].external_id == "G-1"


def test_csv_keeps_availability_only_when_it_says_more_than_in_stock() -> None:
    data = b"id,title,availability\nA,Plain,in stock\nB,Flag,true\nC,Later,preorder\nD,Count,12\n"
    found = products(list(parse_csv(data)))
    assert [found[key].in_stock for key in "ABCD"] == [True, True, True, True]
    assert [found[key].attributes.get("availability") for key in "ABCD"] == [None, None, "preorder", None]


def test_csv_image_names_relative_to_the_csv_folder_are_read_from_it(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "b.png").write_bytes(png_bytes())
    (tmp_path / "notes.jpg").write_bytes(b"not an image")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes(jpeg_bytes())
    (tmp_path / "link.jpg").symlink_to(outside)
    data = (
        b"id,title,image_urls\n"
        b"P-1,Local,photos/a.jpg|b.png|https://cdn.example/c.jpg\n"
        b"P-2,Missing,photos/nope.jpg\n"
        b"P-3,Escape,../secret.jpg\n"
        b"P-4,Absolute,/etc/passwd\n"
        b"P-5,Link out,link.jpg\n"
        b"P-6,Not an image,notes.jpg\n"
    )

    records = list(parse_csv(data, base_dir=tmp_path))

    local = products(records)["P-1"]
    assert [(image.name, image.content_type) for image in local.image_files] == [
        ("photos/a.jpg", "image/jpeg"),
        ("b.png", "image/png"),
    ]
    assert local.image_files[0].content == jpeg_bytes()
    assert local.image_urls == ["https://cdn.example/c.jpg"]
    assert errors(records) == {}  # a photo that fails costs the photo, not the product
    found = products(records)
    reasons = {key: found[key].image_errors[0].reason for key in ("P-2", "P-3", "P-4", "P-5", "P-6")}
    assert "not found next to the catalog file" in reasons["P-2"]
    assert "'..' refused" in reasons["P-3"]
    assert "absolute path refused" in reasons["P-4"]
    assert "leads outside the catalog folder" in reasons["P-5"]
    assert "not an image" in reasons["P-6"]
    assert found["P-2"].image_errors[0].source_ref == "row 3: image photos/nope.jpg"
    outside.unlink()


def test_csv_in_utf16_with_bom() -> None:
    data = "id\tname\timage\nU-1\tÜberjacke\thttps://img.example/u.jpg\n".encode("utf-16")
    assert products(list(parse_csv(data)))["U-1"].title == "Überjacke"


def test_csv_without_title_column_fails_before_reading_rows() -> None:
    with pytest.raises(
        FeedError, match=r"missing required column\(s\): title .*Columns found: sku, price, image"
    ):
        parse_csv(fixture("products_missing_title.csv"))


def test_csv_empty_file_is_a_feed_error() -> None:
    with pytest.raises(FeedError, match="empty"):
        parse_csv(b"\xef\xbb\xbf\n\n")


def test_shopify_export_rows_of_one_handle_are_one_product() -> None:
    found = products(list(parse_csv(fixture("shopify_export.csv"))))
    assert sorted(found) == ["canvas-tote", "oxford-shirt"]
    shirt = found["oxford-shirt"]
    assert shirt.image_urls == [f"https://cdn.shopify.com/oxford-{n}.jpg" for n in (1, 2, 3)]
    assert shirt.price == Decimal("54.00")  # the cheapest variant
    assert shirt.in_stock is True  # variant M has 4 in stock
    assert shirt.description == "Classic oxford."
    assert shirt.category_path == ["Shirts"]  # "Type" wins over Shopify's long "Product Category"
    assert found["canvas-tote"].in_stock is False


# --- Image folder and ZIP ----------------------------------------------------------------------------


def build_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK, as `zip --symlinks` stores it
    return info


def test_zip_one_product_per_image_with_unsafe_and_junk_entries_handled() -> None:
    shirt = jpeg_bytes()
    data = build_zip(
        [
            ("men/shirts/blue-polo_shirt.jpg", shirt),
            ("women/red_dress.PNG", png_bytes()),
            ("notes.txt", b"price list follows"),
            ("__MACOSX/men/shirts/._blue-polo_shirt.jpg", b"\x00\x05\x16\x07"),
            (".DS_Store", b"\x00\x00\x00\x01Bud1"),
            ("men/Thumbs.db", b"\xd0\xcf\x11\xe0"),
            ("../escape.jpg", shirt),
            ("/etc/cron.d/evil.jpg", shirt),
            ("C:/Windows/evil.jpg", shirt),
            (symlink_entry("men/link.jpg"), b"/etc/passwd"),
            ("bomb.png", png_pixel_bomb()),
        ]
    )
    records = list(parse_image_zip(data))
    found = products(records)
    assert sorted(found) == ["men/shirts/blue-polo_shirt.jpg", "women/red_dress.PNG"]
    polo = found["men/shirts/blue-polo_shirt.jpg"]
    assert polo.title == "Blue polo shirt"
    assert polo.category_path == ["men", "shirts"]
    assert polo.image_files[0].content == shirt
    assert polo.image_files[0].content_type == "image/jpeg"
    assert found["women/red_dress.PNG"].image_files[0].content_type == "image/png"
    reasons = errors(records)
    assert "not an image" in reasons["notes.txt"]
    assert "'..'" in reasons["../escape.jpg"]
    assert "absolute" in reasons["/etc/cron.d/evil.jpg"]
    assert "absolute" in reasons["C:/Windows/evil.jpg"]
    assert "symbolic link" in reasons["men/link.jpg"]
    assert "too many pixels" in reasons["bomb.png"]
    assert len(records) == 8  # macOS forks, .DS_Store and Thumbs.db are skipped silently


def test_zip_limits_on_file_count_and_declared_total_are_checked_before_reading() -> None:
    data = build_zip([(f"img-{n}.jpg", jpeg_bytes()) for n in range(5)])
    with pytest.raises(FeedError, match="5 files; the limit is 4"):
        parse_image_zip(data, max_files=4)
    with pytest.raises(FeedError, match="the limit is 100 bytes"):
        parse_image_zip(data, max_total_bytes=100)


def test_zip_bomb_entry_over_the_per_file_limit_is_refused() -> None:
    data = build_zip([("zeros.jpg", b"\xff\xd8\xff" + bytes(5_000_000)), ("ok.jpg", jpeg_bytes())])
    assert len(data) < 50_000  # five megabytes of zeros compress to almost nothing
    records = list(parse_image_zip(data, max_file_bytes=1_000_000))
    assert "5,000,003 bytes" in errors(records)["zeros.jpg"]
    assert list(products(records)) == ["ok.jpg"]


def test_zip_entry_whose_declared_size_lies_is_not_read_past_it() -> None:
    content = b"\xff\xd8\xff" + bytes(200_000)
    data = bytearray(build_zip([("liar.jpg", content)]))
    # Rewrite the uncompressed size in both headers to 1,000 bytes: the reader trusts neither blindly.
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 22 : local + 26] = (1000).to_bytes(4, "little")
    data[central + 24 : central + 28] = (1000).to_bytes(4, "little")
    records = list(parse_image_zip(bytes(data), max_file_bytes=10_000))
    assert products(records) == {}
    assert "corrupt archive entry: Bad CRC-32" in errors(records)["liar.jpg"]


def test_not_a_zip_is_a_feed_error() -> None:
    with pytest.raises(FeedError, match="ZIP"):
        parse_image_zip(b"this is not an archive")


def test_image_folder(tmp_path: Path) -> None:
    (tmp_path / "women" / "dresses").mkdir(parents=True)
    (tmp_path / "women" / "dresses" / "sage_linen-dress.jpg").write_bytes(jpeg_bytes((120, 150, 110)))
    (tmp_path / "top.png").write_bytes(png_bytes())
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "readme.md").write_text("hello")
    os.symlink(tmp_path / "top.png", tmp_path / "linked.png")
    records = list(parse_image_folder(tmp_path))
    found = products(records)
    assert sorted(found) == ["top.png", "women/dresses/sage_linen-dress.jpg"]
    assert found["women/dresses/sage_linen-dress.jpg"].title == "Sage linen dress"
    assert found["women/dresses/sage_linen-dress.jpg"].category_path == ["women", "dresses"]
    assert found["top.png"].category_path == []
    assert "symbolic link" in errors(records)["linked.png"]
    assert "not an image" in errors(records)["readme.md"]


def test_image_folder_file_count_limit(tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / f"{n}.jpg").write_bytes(jpeg_bytes())
    with pytest.raises(FeedError, match="more than 2 files"):
        list(parse_image_folder(tmp_path, max_files=2))


def test_inspect_image_reads_headers_only_unless_asked_to_decode() -> None:
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buffer, format="JPEG")
    whole = buffer.getvalue()
    assert inspect_image(whole, decode=True).width == 256
    truncated = whole[: len(whole) // 2]
    assert inspect_image(truncated).content_type == "image/jpeg"  # the header is intact
    with pytest.raises(ImageRejected, match="truncated"):
        inspect_image(truncated, decode=True)
    with pytest.raises(ImageTooLarge):
        inspect_image(png_pixel_bomb())
    with pytest.raises(ImageTooLarge, match="100 x 100 px"):
        inspect_image(jpeg_bytes(size_px=100), max_pixels=5_000)
    with pytest.raises(ImageRejected, match="not an image"):
        inspect_image(b"<!DOCTYPE html><html>")


# --- Shopify -----------------------------------------------------------------------------------------


def test_shopify_products_page() -> None:
    records, has_more = parse_shopify_products(
        fixture("shopify_products_page1.json"), base_url="https://harbour-and-co.example/", page_size=250
    )
    assert has_more is False  # 3 products on a page of 250: the last page
    found = products(records)
    shirt = found["8012345678901"]
    assert shirt.title == "Oxford Shirt – Slim Fit"
    assert shirt.url == "https://harbour-and-co.example/products/oxford-shirt-slim-fit"
    assert (shirt.price, shirt.in_stock) == (Decimal("54.00"), True)  # cheapest variant; one available
    assert shirt.image_urls == [  # by position, protocol-relative made absolute
        "https://cdn.shopify.com/s/files/1/0601/2345/6789/products/oxford-front.jpg?v=1707748211",
        "https://cdn.shopify.com/s/files/1/0601/2345/6789/products/oxford-back.jpg?v=1707748212",
    ]
    assert (
        shirt.description
        == "Our classic Oxford shirt in breathable cotton.\nButton-down collar\nMachine wash at 30°C"
    )
    assert (shirt.brand, shirt.category_path) == ("Harbour & Co", ["Men", "Shirts"])
    assert shirt.attributes["compare_at_price"] == "79.00"
    tote = found["8012345678902"]
    assert tote.in_stock is False
    assert tote.attributes["tags"] == ["canvas", "everyday"]
    assert tote.description == "Sturdy tote & shopping bag."
    assert errors(records) == {
        "https://harbour-and-co.example/products/draft-placeholder": "product has no title"
    }


def test_shopify_has_more_without_page_size_until_an_empty_page() -> None:
    records, has_more = parse_shopify_products(
        fixture("shopify_products_page1.json"), base_url="https://x.example"
    )
    assert has_more is True
    assert parse_shopify_products(b'{"products": []}', base_url="https://x.example") == ([], False)


def test_shopify_password_page_is_a_feed_error() -> None:
    with pytest.raises(FeedError, match="invalid JSON"):
        parse_shopify_products(b"<html>Opening soon</html>", base_url="https://x.example")
    with pytest.raises(FeedError, match='no "products"'):
        parse_shopify_products(b'{"errors": "Not Found"}', base_url="https://x.example")


def test_shopify_page_urls() -> None:
    urls = shopify_page_urls("https://x.example/", collection="summer sale", page_size=100)
    assert [next(urls) for _ in range(2)] == [
        "https://x.example/collections/summer%20sale/products.json?page=1&limit=100",
        "https://x.example/collections/summer%20sale/products.json?page=2&limit=100",
    ]
    assert next(shopify_page_urls("https://x.example", page_size=1000)).endswith(
        "/products.json?page=1&limit=250"
    )
    assert next(shopify_page_urls("https://x.example", first_page=7)).endswith("?page=7&limit=250")


# --- Sitemaps ----------------------------------------------------------------------------------------


def test_sitemap_index() -> None:
    result = parse_sitemap(fixture("sitemap_index.xml"))
    assert result.urls == []
    assert result.child_sitemaps[0] == (
        "https://harbour-and-co.example/sitemap_products_1.xml.gz?from=8012345678901&to=8012345678999"
    )
    assert len(result.child_sitemaps) == 4
    assert result.lastmod[result.child_sitemaps[0]] == "2024-06-03T14:02:45-04:00"


def test_gzipped_sitemap_with_images_and_a_bad_location() -> None:
    result = parse_sitemap(fixture("sitemap_products.xml.gz"))
    assert result.urls == [
        "https://harbour-and-co.example/",
        "https://harbour-and-co.example/products/oxford-shirt-slim-fit",
        "https://harbour-and-co.example/products/canvas-tote",
    ]
    assert len(result.image_urls["https://harbour-and-co.example/products/oxford-shirt-slim-fit"]) == 2
    assert [error.source_ref for error in result.errors] == ["/products/relative-is-not-allowed"]


def test_sitemap_entity_expansion_bomb_is_refused() -> None:
    with pytest.raises(FeedError, match="entities"):
        parse_sitemap(fixture("xml_bomb.xml"))


def test_sitemap_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(b"<urlset>" + b" " * 3_000_000 + b"</urlset>")
    with pytest.raises(FeedError, match="more than 1,000,000 bytes"):
        parse_sitemap(bomb, max_decompressed_bytes=1_000_000)


def test_truncated_sitemap_is_a_feed_error() -> None:
    with pytest.raises(FeedError, match="malformed or truncated"):
        parse_sitemap(fixture("sitemap_index.xml")[:300])


def test_plain_text_sitemap() -> None:
    result = parse_sitemap(b"https://x.example/a\n\nhttps://x.example/b\n")
    assert result.urls == ["https://x.example/a", "https://x.example/b"]


def test_html_is_not_a_sitemap() -> None:
    with pytest.raises(FeedError, match="root element is <html>"):
        parse_sitemap(b"<html><body>hi</body></html>")


# --- Product pages -----------------------------------------------------------------------------------


def test_product_page_json_ld_graph() -> None:
    page_url = "https://meadowlane.example/products/linen-midi-dress?variant=123"
    product = parse_product_page(fixture("product_jsonld_graph.html"), page_url)
    assert isinstance(product, ScrapedProduct)
    assert product.title == "Linen Midi Dress – Sage"  # JSON-LD wins over og:title; entities decoded
    assert product.external_id == "LMD-SAGE"  # not the related product's sku
    assert (product.price, product.currency, product.in_stock) == (Decimal("79.00"), "GBP", True)
    assert product.image_urls == [
        "https://cdn.meadowlane.example/lmd-sage-1.jpg",
        "https://meadowlane.example/media/lmd-sage-2.jpg",
    ]
    assert product.category_path == ["Women", "Dresses"]  # breadcrumbs by position, without Home and itself
    assert product.brand == "Meadow Lane"
    assert product.url == "https://meadowlane.example/products/linen-midi-dress"
    assert product.description == "Relaxed midi dress in washed linen.\nTie waist, side pockets."
    assert product.attributes["structured_data"] == "json-ld"
    assert product.attributes["gtin13"] == "5012345678900"


def test_product_page_aggregate_offer_in_latin1() -> None:
    product = parse_product_page(fixture("product_aggregate_offer_latin1.html"), "https://kiln.example/mug")
    assert isinstance(product, ScrapedProduct)
    assert product.title == "Café Mug"
    assert (product.external_id, product.brand) == ("MUG-001", "Kiln & Co")
    assert (product.price, product.currency, product.in_stock) == (Decimal("12.50"), "EUR", True)
    assert product.category_path == ["Home", "Kitchen", "Mugs"]
    assert product.image_urls == ["https://kiln.example/images/cafe-mug.jpg"]
    assert product.url == "https://kiln.example/mug"


def test_product_page_with_only_opengraph() -> None:
    product = parse_product_page(fixture("product_og_only.html"), "https://saffronstreet.example/p/1042")
    assert isinstance(product, ScrapedProduct)
    assert (product.external_id, product.title) == ("KS-1042", "Block Print Kurta Set")
    assert (product.price, product.currency, product.in_stock) == (Decimal("1299.00"), "INR", True)
    assert product.image_urls == [
        "https://saffronstreet.example/cdn/kurta-1.jpg",
        "https://saffronstreet.example/cdn/kurta-2.jpg",
    ]
    assert product.url == "https://saffronstreet.example/products/block-print-kurta-set"
    assert product.description == "Cotton kurta set with block print."
    assert product.brand == "Saffron Street"
    assert product.attributes["structured_data"] == "opengraph"


def test_product_page_with_trailing_commas_in_json_ld_is_read() -> None:
    product = parse_product_page(fixture("product_invalid_jsonld.html"), "https://run.example/trail-runner-2")
    assert isinstance(product, ScrapedProduct)
    assert product.title == "Trail Runner 2"
    assert (product.price, product.currency, product.in_stock) == (Decimal("120"), "USD", False)
    assert product.image_urls == ["https://run.example/img/trail-runner-2.jpg"]
    assert product.external_id == "https://run.example/trail-runner-2"  # no id anywhere: the URL
    # Trailing commas are not JSON, but extruct reads them (as browsers' search engines do).
    assert product.attributes["structured_data"] == "json-ld" and "json_ld_problem" not in product.attributes


def test_pages_without_product_data_are_row_errors() -> None:
    article = parse_product_page(fixture("page_no_product.html"), "https://meadowlane.example/blogs/linen")
    assert article == NotAProduct(
        source_ref="https://meadowlane.example/blogs/linen", reason="no product data"
    )
    broken = parse_product_page(fixture("page_invalid_jsonld_no_og.html"), "https://x.example/sale")
    assert isinstance(broken, RowError) and not isinstance(broken, NotAProduct)
    assert broken.reason.startswith("no product data (invalid JSON-LD")
    assert isinstance(parse_product_page(b"", "https://x.example/empty"), RowError)


# --- Merchant feeds ----------------------------------------------------------------------------------


def test_merchant_rss() -> None:
    records = list(parse_merchant_feed(fixture("merchant_rss.xml")))
    found = products(records)
    sweater = found["NW-1000"]  # its item_group_id: one product per group, the item is its variant
    assert (
        sweater.title == "Merino Crew Sweater"
    )  # g:title wins over the RSS title; " - Navy" is the variant's
    assert sweater.url == "https://northwind.example/p/merino-crew"
    assert (sweater.price, sweater.currency) == (Decimal("69.00"), "USD")  # the sale price
    assert sweater.attributes["regular_price"] == "89.00"
    assert sweater.image_urls == [
        "https://cdn.northwind.example/nw-1001-a.jpg",
        "https://cdn.northwind.example/nw-1001-b.jpg",
        "https://cdn.northwind.example/w_400,h_400/nw-1001-c.jpg",  # a comma inside a URL is not a separator
    ]
    assert sweater.category_path == ["Apparel & Accessories", "Clothing", "Sweaters"]
    assert sweater.description == "Fine-gauge merino.\nMade in Portugal."
    assert [variant.as_json() for variant in sweater.variants] == [
        {
            "external_id": "NW-1001",
            "colour": "Navy",
            "size": "M",
            "price": "69.00",
            "in_stock": True,
            "image_url": "https://cdn.northwind.example/nw-1001-a.jpg",
        }
    ]
    assert sweater.attributes["colours"] == ["Navy"] and "color" not in sweater.attributes
    assert "shipping" not in sweater.attributes and "country" not in sweater.attributes
    sneaker = found["NW-1002"]
    assert (sneaker.price, sneaker.currency, sneaker.in_stock) == (Decimal("45.00"), "EUR", True)  # preorder
    assert sneaker.category_path == [] and sneaker.attributes["google_product_category_id"] == "187"
    assert errors(records) == {
        "item 3": "missing external_id",
        "item 4 (id NW-1003)": "price: 'about twenty dollars' is not a price",
    }


def test_merchant_atom() -> None:
    found = products(list(parse_merchant_feed(fixture("merchant_atom.xml"))))
    bowls = found["CH-20"]
    assert bowls.url == "https://contoso-home.example/bowl-set"  # rel=alternate, not the enclosure
    assert bowls.description == "Set of four bowls."
    assert len(bowls.image_urls) == 3
    assert (bowls.in_stock, bowls.currency) == (True, "GBP")  # backorder can be bought
    assert found["CH-21"].in_stock is False
    assert found["CH-21"].url == "https://contoso-home.example/napkins"


def test_merchant_tsv() -> None:
    records = list(parse_merchant_feed(fixture("merchant_feed.tsv")))
    found = products(records)
    assert found["FB-1"].image_urls == [f"https://fabrikam.example/i/rain-{n}.jpg" for n in (1, 2, 3)]
    assert found["FB-1"].category_path == ["Outdoor", "Jackets"]
    assert (found["FB-2"].price, found["FB-2"].in_stock) == (Decimal("19.99"), False)
    assert "not-a-url" in found["FB-3"].image_errors[0].reason  # the product stays, its photo fails


def test_truncated_merchant_feed_keeps_the_items_before_the_damage() -> None:
    records: list = []
    with pytest.raises(FeedError, match=r"truncated or malformed at line \d+.*3 items were read"):
        for record in parse_merchant_feed(fixture("merchant_truncated.xml")):
            records.append(record)
    assert sorted(products(records)) == ["NW-1000", "NW-1002"]  # NW-1001 is a variant of NW-1000


def test_merchant_feed_entity_bomb_refused_and_gzip_read() -> None:
    with pytest.raises(FeedError, match="entities"):
        list(parse_merchant_feed(fixture("xml_bomb.xml")))
    gzipped = gzip.compress(fixture("merchant_atom.xml"))
    assert sorted(products(list(parse_merchant_feed(gzipped)))) == ["CH-20", "CH-21"]
    with pytest.raises(FeedError, match="not a Merchant feed"):
        list(parse_merchant_feed(fixture("sitemap_index.xml")))


# --- Format detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shopify_products_page1.json", "shopify"),
        ("sitemap_index.xml", "sitemap"),
        ("sitemap_products.xml.gz", "sitemap"),
        ("product_jsonld_graph.html", "product_page"),
        ("merchant_rss.xml", "merchant"),
        ("merchant_atom.xml", "merchant"),
        ("merchant_feed.tsv", "merchant"),
        ("products_bom.csv", "csv"),
        ("products_semicolon.csv", "csv"),
    ],
)
def test_detect_feed_format(name: str, expected: str) -> None:
    assert detect_feed_format(fixture(name)) == expected


def test_detect_feed_format_zip_and_unknown() -> None:
    assert detect_feed_format(build_zip([("a.jpg", jpeg_bytes())])) == "image_zip"
    assert detect_feed_format(jpeg_bytes()) is None


def test_merchant_atom_with_html_entities_is_repaired_and_read_whole() -> None:
    records = list(parse_merchant_feed(fixture("merchant_prestashop_atom.xml")))

    found = products(records)
    shirt = found["101"]
    assert (shirt.title, shirt.brand) == ("Chemise en lin forêt", "Lumière")
    assert shirt.description == "Lin lavé, coupe droite – taille normale."
    assert shirt.url == "https://lumiere.example/chemises/101-chemise-lin-foret.html"  # the link's text
    assert shirt.image_urls == [  # every repeated g:image_link
        "https://lumiere.example/101-large_default/chemise-lin-foret.jpg",
        "https://lumiere.example/102-large_default/chemise-lin-foret.jpg",
    ]
    assert found["102"].title == "Hamilton"  # the second "102" does not replace the first
    duplicate = next(r for r in records if isinstance(r, RowError) and not isinstance(r, FeedWarning))
    assert duplicate.source_ref == "item 3 (id 102)" and "duplicate id '102'" in duplicate.reason
    assert "item 2 (id 102)" in duplicate.reason
    warning = next(r for r in records if isinstance(r, FeedWarning))
    assert "&ecirc; (1×)" in warning.reason and "&egrave; (2×)" in warning.reason
    assert "numeric references" in warning.reason


def test_an_unknown_entity_names_itself_and_the_fix() -> None:
    feed = fixture("merchant_atom.xml").replace(b"Set of four bowls.", b"Set of &fourbowls; bowls.")
    with pytest.raises(FeedError, match=r"fourbowls.*numeric references"):
        list(parse_merchant_feed(feed))


def test_a_gzip_feed_is_parsed_as_a_stream_with_a_cap_on_its_expanded_size() -> None:
    # One comment of 64 MB (the feed had 450 MB): expat rescanned the unfinished comment on every
    # read, quadratic time (minutes here, hours there); libxml2 reads on and refuses it past 10 MB.
    items = b"<item><g:id>A</g:id><g:title>Kept</g:title></item>"
    feed = b'<rss xmlns:g="http://base.google.com/ns/1.0"><channel>' + items + b"<!--"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gzipped = compressor.compress(feed)
    block = b"x" * (1 << 20)
    for _ in range(64):
        gzipped += compressor.compress(block)
    gzipped += compressor.compress(b"--></channel></rss>") + compressor.flush()
    assert len(gzipped) < 1_000_000

    records: list = []
    with pytest.raises(FeedError, match="Comment too big"):
        records.extend(parse_merchant_feed(gzipped, max_decompressed_bytes=512 * 1024**2))
    assert [r.external_id for r in records] == ["A"]  # what came before is kept

    with pytest.raises(FeedError, match="expands to more than 1,000,000 bytes"):
        list(parse_merchant_feed(gzipped, max_decompressed_bytes=1_000_000))


def test_shopify_admin_export_variants_url_status_and_category() -> None:
    records = list(parse_csv(fixture("shopify_export_full.csv"), base_url="https://harbour.example/"))

    found = products(records)
    assert sorted(found) == ["linen-camp-shirt"]
    shirt = found["linen-camp-shirt"]
    assert shirt.url == "https://harbour.example/products/linen-camp-shirt"
    assert shirt.category_path == ["Apparel & Accessories", "Clothing", "Shirts & Tops"]  # Type is empty
    assert shirt.description == "Breathable linen.\nRelaxed fit.\nMade in Portugal."
    assert (shirt.price, shirt.in_stock) == (Decimal("68.00"), True)
    assert [(v.external_id, v.colour, v.size, str(v.price), v.in_stock) for v in shirt.variants] == [
        ("LCS-SAND-S", "Sand", "S", "68.00", True),
        ("LCS-SAND-M", "Sand", "M", "68.00", False),
        ("LCS-OLIVE-S", "Olive", "S", "72.00", True),
        ("LCS-OLIVE-M", "Olive", "M", "72.00", False),
    ]
    assert shirt.variants[2].image_url == "https://cdn.shopify.example/files/lcs-olive-1.jpg"
    assert shirt.attributes["colours"] == ["Sand", "Olive"] and shirt.attributes["price_max"] == "72.00"
    assert len(shirt.image_urls) == 3
    assert not any(key.startswith(("option1_", "variant_")) for key in shirt.attributes)
    skipped = {r.external_id: r.reason for r in records if isinstance(r, NotLive)}
    assert skipped == {
        "winter-parka-draft": "not live in the shop (draft); not imported",
        "old-tote": "not live in the shop (archived); not imported",
        "hidden-cap": "not live in the shop (not published); not imported",
    }


SHIFT_JIS_CSV = (
    "sku,name,price,category\nJ-1,抹茶碗 職人手作り,3200,食器 > 茶道具\nJ-2,木製の箸セット（5膳）,800,食器\n"
)


def test_csv_in_shift_jis_is_recognised_not_read_as_windows_1252() -> None:
    records = list(parse_csv(SHIFT_JIS_CSV.encode("cp932")))

    found = products(records)
    assert found["J-1"].title == "抹茶碗 職人手作り"
    assert found["J-1"].category_path == ["食器", "茶道具"]
    assert found["J-2"].title == "木製の箸セット（5膳）"
    assert isinstance(records[0], FeedWarning) and "Shift_JIS" in records[0].reason
    assert products(list(parse_csv(SHIFT_JIS_CSV.encode("euc_jp"))))["J-1"].title == "抹茶碗 職人手作り"


def test_a_shift_jis_product_page_without_a_charset_is_read_as_japanese() -> None:
    html = (
        '<html><head><meta property="og:type" content="product">'
        '<meta property="og:title" content="抹茶碗 職人手作り"></head><body>はい</body></html>'
    ).encode("cp932")
    product = parse_product_page(html, "https://kyoto.example/p/1")
    assert isinstance(product, ScrapedProduct) and product.title == "抹茶碗 職人手作り"


def test_a_merchant_tsv_with_a_repeated_id_reports_it_instead_of_merging() -> None:
    tsv = (
        b"id\ttitle\tlink\tprice\n"
        b"102\tHamilton\thttps://s.example/hamilton\t89.00 EUR\n"
        b"102\tHarlow\thttps://s.example/harlow\t79.00 EUR\n"
    )
    records = list(parse_merchant_feed(tsv))
    assert products(records)["102"].title == "Hamilton"
    assert (
        "duplicate external_id '102' (first seen at row 2); this row was not imported"
        in errors(records)["row 3"]
    )
