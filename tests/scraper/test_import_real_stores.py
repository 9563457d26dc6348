"""Imports shaped like real stores' files, over real HTTP from the fixture store on 127.0.0.1: variants
grouped by item_group_id, currency, structured data, broken feeds, Shopify exports, sitemaps, DNS."""

from __future__ import annotations

import io
import json
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from scraper.models import ImportJob
from scraper.selectors import preview_import
from scraper.services import run_import
from shop.models import Product, Store
from tests.factories import jpeg_bytes
from tests.scraper.fixture_store import FixtureStore
from tests.scraper.test_import_sources import expected_images, image_requests, import_file, import_url

PRODUCT_COUNT = 12
FIXTURES = Path(__file__).parent / "fixtures"


# --- Variants ------------------------------------------------------------------------------------------


def test_a_feed_of_one_item_per_variant_imports_one_product_per_group(
    fixture_store: FixtureStore, shop: Store
) -> None:
    catalog = fixture_store.catalog
    variant_items = sum(len(product.prices) for product in catalog.products())
    assert variant_items > PRODUCT_COUNT  # the feed really lists variants

    job = import_url(shop, fixture_store.url("/feed-variants.xml"))

    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    assert (job.seen, job.created, job.failed) == (PRODUCT_COUNT, PRODUCT_COUNT, 0)
    assert Product.objects.filter(store=shop).count() == PRODUCT_COUNT
    # Every photo once, not once per variant.
    assert image_requests(fixture_store) == expected_images(fixture_store)
    source = catalog.product(5)  # three variants, prices apart, some out of stock
    product = Product.objects.get(store=shop, external_id=str(source.id))
    assert product.title == source.title
    assert product.url == fixture_store.url(f"/p/{source.handle}")
    assert product.price == Decimal(source.min_price) and product.currency == "USD"
    assert product.in_stock == source.in_stock
    assert product.images.filter(status="stored").count() == len(source.image_names)
    variants = product.attributes["variants"]
    assert [(v["external_id"], v["colour"], v["size"], v["price"], v["in_stock"]) for v in variants] == [
        (f"{source.id}-{size}", source.colour.capitalize(), size, price, available)
        for size, price, available in zip(("S", "M", "L"), source.prices, source.available, strict=False)
    ]
    assert product.attributes["price_max"] == max(source.prices, key=Decimal)
    # The colour label can be queried per product.
    navy = {str(p.id) for p in catalog.products() if p.colour == "navy"}
    assert (
        set(
            Product.objects.filter(store=shop, attributes__colours__contains=["Navy"]).values_list(
                "external_id", flat=True
            )
        )
        == navy
    )


def test_shopify_variants_keep_their_colour_and_size(fixture_store: FixtureStore, shop: Store) -> None:
    job = import_url(shop, fixture_store.base_url)

    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    source = fixture_store.catalog.product(2)
    product = Product.objects.get(store=shop, external_id=str(source.id))
    assert product.attributes["colours"] == [source.colour]
    assert [(v["size"], v["price"], v["in_stock"]) for v in product.attributes["variants"]] == list(
        zip(("S", "M", "L"), source.prices, source.available, strict=False)
    )


# --- Currency ------------------------------------------------------------------------------------------


def test_shopify_prices_take_the_currency_the_shop_publishes(fixture_store: FixtureStore, db) -> None:
    euro_store = Store.objects.create(name="Set up in EUR", currency="EUR")
    fixture_store.shop_currency = "CAD"

    job = import_url(euro_store, fixture_store.base_url)

    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    assert set(Product.objects.filter(store=euro_store).values_list("currency", flat=True)) == {"CAD"}
    assert job.warnings == []


def test_a_guessed_currency_is_a_job_warning(fixture_store: FixtureStore, db) -> None:
    euro_store = Store.objects.create(name="Set up in EUR", currency="EUR")
    fixture_store.shop_currency = None  # the shop does not say

    job = import_url(euro_store, fixture_store.base_url)

    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    assert set(Product.objects.filter(store=euro_store).values_list("currency", flat=True)) == {"EUR"}
    assert len(job.warnings) == 1
    assert f"{PRODUCT_COUNT} price(s) came without a currency" in job.warnings[0]
    assert "(EUR) was assumed" in job.warnings[0] and "--currency" in job.warnings[0]


def test_the_command_sets_the_currency_of_the_import_and_of_a_store_it_creates(
    fixture_store: FixtureStore, db
) -> None:
    fixture_store.shop_currency = None
    out = io.StringIO()

    call_command(
        "import_catalog", fixture_store.base_url, "--store", "Maple", "--currency", "cad", "--sync",
        "--no-progress", stdout=out,
    )  # fmt: skip

    store = Store.objects.get(name="Maple")
    assert store.currency == "CAD"
    assert set(Product.objects.filter(store=store).values_list("currency", flat=True)) == {"CAD"}
    job = ImportJob.objects.get(store=store)
    assert job.options["currency"] == "CAD" and job.warnings == []
    with pytest.raises(CommandError, match="not a currency code"):
        call_command("import_catalog", fixture_store.base_url, "--store", "Maple", "--currency", "dollars")


def test_the_admin_form_takes_a_currency(admin_client, db, django_capture_on_commit_callbacks) -> None:
    store = Store.objects.create(name="Admin store", currency="EUR")
    upload = SimpleUploadedFile("products.csv", b"id,title,price\nA,Shirt,1075.00\n", content_type="text/csv")

    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            "/admin/scraper/importjob/add/",
            {"store": store.pk, "kind": "auto", "currency": "usd", "source_file": upload},
        )

    assert response.status_code == 302
    job = ImportJob.objects.latest("pk")
    assert job.options == {"currency": "USD"}
    job = run_import(job, images="inline")
    product = Product.objects.get(store=store)
    assert (product.price, product.currency) == (Decimal("1075.00"), "USD")
    assert job.warnings == []
    form_page = admin_client.get("/admin/scraper/importjob/add/").content.decode()
    assert 'name="currency"' in form_page
    bad = admin_client.post(
        "/admin/scraper/importjob/add/", {"store": store.pk, "kind": "auto", "currency": "$$"}
    )
    assert "is not a currency code" in bad.content.decode()


# --- Broken feeds --------------------------------------------------------------------------------------


def test_a_feed_with_html_entities_imports_with_a_warning_and_duplicates_are_row_errors(
    fixture_store: FixtureStore, shop: Store
) -> None:
    feed = (FIXTURES / "merchant_prestashop_atom.xml").read_bytes()
    feed = feed.replace(b"https://lumiere.example/", f"{fixture_store.base_url}/img/".encode())

    job = import_file(shop, "feed.xml", feed)

    assert job.status == ImportJob.Status.PARTIAL  # the duplicate
    assert (job.created, job.failed) == (2, 1)
    assert Product.objects.get(store=shop, external_id="101").title == "Chemise en lin forêt"
    assert Product.objects.get(store=shop, external_id="102").title == "Hamilton"  # not overwritten
    error = job.errors.get()
    assert error.source_ref == "item 3 (id 102)" and "duplicate id '102'" in error.reason
    assert len(job.warnings) == 1 and "&ecirc;" in job.warnings[0]
    assert Product.objects.get(store=shop, external_id="101").images.filter(status="stored").count() == 2


# --- Shopify admin CSV export --------------------------------------------------------------------------


def test_a_shopify_export_imports_live_products_with_their_url_and_variants(
    fixture_store: FixtureStore, db
) -> None:
    store = Store.objects.create(name="Harbour", currency="USD", base_url="https://harbour.example/")
    export = (FIXTURES / "shopify_export_full.csv").read_bytes()
    export = export.replace(b"https://cdn.shopify.example/files/", f"{fixture_store.base_url}/img/".encode())

    job = import_file(store, "products_export_1.csv", export)

    assert job.status == ImportJob.Status.SUCCEEDED, list(job.errors.values_list("reason", flat=True))
    assert (job.created, job.skipped, job.failed) == (1, 3, 0)  # draft, archived, unpublished
    product = Product.objects.get(store=store)
    assert product.url == "https://harbour.example/products/linen-camp-shirt"
    assert product.category.name == "Shirts & Tops"
    assert product.attributes["colours"] == ["Sand", "Olive"]
    assert product.images.filter(status="stored").count() == 3


# --- Sitemaps ------------------------------------------------------------------------------------------


def test_relative_sitemap_locations_are_resolved_against_the_sitemap(
    fixture_store: FixtureStore, shop: Store
) -> None:
    job = import_url(shop, fixture_store.url("/product-sitemap.xml"))

    assert job.status == ImportJob.Status.SUCCEEDED, list(job.errors.values_list("reason", flat=True))
    assert (job.kind, job.created) == ("sitemap", 9)
    handle = fixture_store.catalog.product(3).handle
    assert Product.objects.filter(store=shop, url=fixture_store.url(f"/p/{handle}")).exists()


@pytest.mark.parametrize("kind", ["auto", "sitemap"])
def test_a_product_page_given_as_the_source_imports_that_page(
    fixture_store: FixtureStore, shop: Store, kind: str
) -> None:
    source = fixture_store.catalog.product(3)

    job = import_url(shop, fixture_store.url(f"/p/{source.handle}"), kind=kind)

    assert job.status == ImportJob.Status.SUCCEEDED, list(job.errors.values_list("reason", flat=True))
    assert (job.kind, job.created, job.failed) == ("sitemap", 1, 0)
    assert Product.objects.get(store=shop).title == source.title
    assert fixture_store.request_count("/sitemap.xml") == 0  # the page alone, not the whole store


# --- Text encodings ------------------------------------------------------------------------------------


def test_a_shift_jis_file_does_not_overwrite_good_titles_with_mojibake(shop: Store) -> None:
    csv = "sku,name,price\nJ-1,抹茶碗 職人手作り,3200\n"
    import_file(shop, "utf8.csv", csv.encode())

    job = import_file(shop, "sjis.csv", csv.replace("3200", "3300").encode("cp932"))

    product = Product.objects.get(store=shop, external_id="J-1")
    assert (product.title, product.price) == ("抹茶碗 職人手作り", Decimal("3300.00"))
    assert (job.updated, job.failed) == (1, 0)
    assert any("Shift_JIS" in warning for warning in job.warnings)


# --- A ZIP holding a CSV and its photos ----------------------------------------------------------------


def catalog_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "export/styles.csv",
            "id,productDisplayName,price,image\n"
            "15970,Navy Blue Shirt,29.99,15970.jpg\n"
            "15971,Red Scarf,9.99,photos/15971.JPG\n"
            "15972,Lost Photo Sneaker,59.00,nope.jpg\n",
        )
        archive.writestr("export/15970.jpg", jpeg_bytes((20, 30, 110)))
        archive.writestr("export/photos/15971.jpg", jpeg_bytes((200, 30, 40)))
        archive.writestr("__MACOSX/export/._15970.jpg", b"resource fork")
    return buffer.getvalue()


def test_a_zip_of_a_csv_and_its_photos_imports_from_the_command(tmp_path: Path, shop: Store) -> None:
    path = tmp_path / "catalog.zip"
    path.write_bytes(catalog_zip())

    call_command(
        "import_catalog", str(path), "--store", str(shop.pk), "--sync", "--no-progress", stdout=io.StringIO()
    )

    job = ImportJob.objects.get(store=shop)
    assert (job.kind, job.status) == ("csv", ImportJob.Status.PARTIAL)
    assert (job.created, job.failed, job.images_downloaded + job.images_reused, job.images_failed) == (
        3,
        0,
        2,
        1,
    )
    assert Product.objects.get(store=shop, external_id="15970").images.get().status == "stored"
    assert Product.objects.get(store=shop, external_id="15971").images.count() == 1  # case differs: found
    lost = Product.objects.get(store=shop, external_id="15972")  # kept without its photo
    assert lost.title == "Lost Photo Sneaker" and lost.images.count() == 0
    error = job.errors.get()
    assert (error.stage, error.external_id) == ("image", "15972")
    assert "'nope.jpg' is not in the archive" in error.reason and "export/nope.jpg" in error.reason


def test_a_zip_of_a_csv_and_its_photos_uploaded_in_the_admin(
    admin_client, shop: Store, django_capture_on_commit_callbacks
) -> None:
    upload = SimpleUploadedFile("catalog.zip", catalog_zip(), content_type="application/zip")
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            "/admin/scraper/importjob/add/", {"store": shop.pk, "kind": "auto", "source_file": upload}
        )
    assert response.status_code == 302

    job = run_import(ImportJob.objects.latest("pk"), images="inline")

    stored = job.images_downloaded + job.images_reused  # reused: the same bytes were stored before
    assert (job.kind, job.created, stored, job.images_failed) == ("csv", 3, 2, 1)


def test_an_uploaded_csv_naming_photo_files_keeps_its_products_and_says_how_to_fix_it(shop: Store) -> None:
    job = import_file(shop, "styles.csv", b"id,title,image\n15970,Navy Blue Shirt,15970.jpg\n")

    assert (job.created, job.failed, job.images_failed) == (1, 0, 1)
    error = job.errors.get()
    assert error.stage == "image" and "upload a ZIP holding the CSV and the photos" in error.reason


# --- Dry run -------------------------------------------------------------------------------------------


def test_a_dry_run_writes_nothing_downloads_nothing_and_writes_the_json(
    fixture_store: FixtureStore, shop: Store, tmp_path: Path
) -> None:
    out = tmp_path / "preview.json"

    call_command(
        "import_catalog", fixture_store.url("/feed-variants.xml"), "--store", "Not yet there", "--dry-run",
        "--json", str(out), stdout=io.StringIO(),
    )  # fmt: skip

    assert not Store.objects.filter(name="Not yet there").exists()
    assert ImportJob.objects.count() == 0 and Product.objects.count() == 0
    assert image_requests(fixture_store) == 0
    preview = json.loads(out.read_text())
    assert set(preview) >= {"products", "errors", "warnings"}
    assert len(preview["products"]) == PRODUCT_COUNT and preview["errors"] == []
    source = fixture_store.catalog.product(5)
    product = next(p for p in preview["products"] if p["external_id"] == str(source.id))
    assert product == {
        "external_id": str(source.id),
        "title": source.title,
        "price": source.min_price,
        "currency": "USD",
        "url": fixture_store.url(f"/p/{source.handle}"),
        "category": f"{source.department} > {source.product_type}",
        "in_stock": source.in_stock,
        "images": [fixture_store.url(f"/img/{name}.jpg") for name in source.image_names],
        "variants": [
            {"external_id": f"{source.id}-{size}", "colour": source.colour.capitalize(), "size": size,
             "price": price, "in_stock": available}
            for size, price, available in zip(("S", "M", "L"), source.prices, source.available, strict=False)
        ],
    }  # fmt: skip


def test_a_dry_run_lists_errors_and_the_currency_guess(shop: Store, tmp_path: Path) -> None:
    path = tmp_path / "products.csv"
    path.write_text("id,title,price,image\nA,Shirt,12.00,shirt.jpg\n,No id,3.00,\nB,Bad,ten,\n")
    out = io.StringIO()

    call_command("import_catalog", str(path), "--store", str(shop.pk), "--dry-run", "--json", "-", stdout=out)

    preview = json.loads(out.getvalue())
    assert [p["external_id"] for p in preview["products"]] == ["A"]
    assert preview["products"][0]["currency"] == "USD"  # the store's: a guess, and it says so
    assert {e["row"] for e in preview["errors"]} == {"row 3", "row 4", "row 2: image shirt.jpg"}
    assert any("(USD) was assumed" in warning for warning in preview["warnings"])
    assert Product.objects.count() == 0 and ImportJob.objects.count() == 0


def test_the_admin_preview_shows_what_would_be_imported_and_writes_nothing(admin_client, shop: Store) -> None:
    csv = (
        b"id,title,price,color,size,item_group_id\n"
        b"T-S,<b>Tee</b> - Navy / S,10.00,Navy,S,T\n"
        b"T-M,<b>Tee</b> - Navy / M,12.00,Navy,M,T\n"
    )
    upload = SimpleUploadedFile("tees.csv", csv, content_type="text/csv")

    response = admin_client.post(
        "/admin/scraper/importjob/add/",
        {"store": shop.pk, "kind": "auto", "source_file": upload, "_preview": "Preview"},
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="import-preview"' in page and "Preview: 1 product" in page
    assert "&lt;b&gt;Tee&lt;/b&gt;" in page and "<b>Tee</b>" not in page  # escaped
    assert "Navy / S, Navy / M" in page
    assert "10.00 USD" in page
    assert ImportJob.objects.count() == 0 and Product.objects.count() == 0


def test_a_preview_of_a_slow_source_stops_at_its_time_budget(
    fixture_store: FixtureStore, shop: Store
) -> None:
    job = ImportJob(
        store=shop, kind="csv", source_url=fixture_store.url("/trickle?bytes=400&interval_s=0.05")
    )

    preview = preview_import(job, time_budget_s=2)

    assert preview["products"] == []
    assert "not complete after" in preview["errors"][0]["reason"]  # cut off, not waited for (20 s)


def test_a_page_with_json_ld_nested_100000_deep_is_one_row_error_in_a_sitemap_import(
    fixture_store: FixtureStore, shop: Store
) -> None:
    job = import_url(shop, fixture_store.url("/deep-sitemap.xml"))

    assert (job.status, job.created, job.failed) == (ImportJob.Status.PARTIAL, 2, 1)
    error = job.errors.get()
    assert error.source_ref == fixture_store.url("/deep") and "nested too deeply" in error.reason
