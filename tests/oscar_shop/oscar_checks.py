"""Lookalike inside a django-oscar 4.2 store (``tests/oscar_shop``), configured by settings only.

Not collected by the main test run: ``tests/test_oscar_shop.py`` copies this folder (with the scraper tests'
``fixture_store.py``) out of the source tree and runs this file with ``--ds=oscar_shop.settings`` in a
virtualenv where Lookalike is installed from its wheel. Everything is real: Oscar's migrations and
catalogue (product classes, partners, stock records, parent and child products, categories),
EfficientNet-Lite0 on Myntra photos, pgvector, Oscar's own product page with the widget through a
template override, the API with filters answered from stock records and categories, a campaign landing
page, the for-you page, precomputed neighbours, and a Shopify import through
``lookalike.oscar_writer.OscarWriter``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from oscar.apps.catalogue.categories import create_from_breadcrumbs
from oscar.apps.catalogue.models import Product, ProductClass, ProductImage
from oscar.apps.partner.models import Partner, StockRecord

from campaigns.models import Campaign, Creative
from campaigns.services import embed_creative, save_creative
from lookalike import catalog
from recommendations import selectors
from recommendations.models import ProductEmbedding
from scraper.models import ImportJob

DATA_DIR = Path(os.environ["LOOKALIKE_DATA_DIR"])
MYNTRA = DATA_DIR / "myntra"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

if not MYNTRA.exists():
    pytest.fail(f"no Myntra photos under {DATA_DIR} (set LOOKALIKE_DATA_DIR)", pytrace=False)


def myntra_photos(article_type: str, count: int) -> list[tuple[str, bytes]]:
    with (MYNTRA / "labels.csv").open(newline="") as labels:
        rows = [row for row in csv.DictReader(labels) if row["articleType"] == article_type]
    rows.sort(key=lambda row: int(row["id"]))
    photos: dict[bytes, str] = {}  # the set repeats some photos under other products: one of each
    for row in rows:
        photos.setdefault((MYNTRA / "images" / row["image"]).read_bytes(), row["productDisplayName"])
        if len(photos) == count:
            break
    return [(title, data) for data, title in photos.items()]


@pytest.fixture
def store(db, settings, tmp_path):
    """An Oscar catalogue: four watches (one sold out) and, among the shirts, a parent "Oxford shirt" whose
    two sizes are child products with stock records of their own (size L with a photo of its own, so it is
    embedded too); one partner sells everything."""
    settings.MEDIA_ROOT = tmp_path
    partner = Partner.objects.create(name="Lookalike Outlet")
    clothing = ProductClass.objects.create(name="Clothing", track_stock=True)
    watches_category = create_from_breadcrumbs("Accessories > Watches")
    shirts_category = create_from_breadcrumbs("Clothing > Shirts")

    def product(title: str, photo: bytes, category, **fields) -> Product:
        made = Product.objects.create(title=title, product_class=clothing, **fields)
        made.categories.add(category)
        ProductImage.objects.create(product=made, original=ContentFile(photo, name=f"p{made.pk}.jpg"))
        return made

    def stock(item: Product, price: str, count: int = 5) -> None:
        StockRecord.objects.create(
            product=item,
            partner=partner,
            partner_sku=f"SKU-{item.pk}",
            price=Decimal(price),
            num_in_stock=count,
        )

    watches = []
    for index, (title, photo) in enumerate(myntra_photos("Watches", 4)):
        watch = product(title, photo, watches_category)
        stock(watch, f"{40 + 10 * index}.00", count=0 if index == 3 else 5)
        watches.append(watch)
    shirts = []
    photos = myntra_photos("Shirts", 5)
    oxford = product("Oxford shirt", photos[0][1], shirts_category, structure=Product.PARENT)
    for size, price in (("M", "31.00"), ("L", "27.50")):
        child = Product.objects.create(title=f"Oxford shirt {size}", parent=oxford, structure=Product.CHILD)
        stock(child, price)
    ProductImage.objects.create(product=child, original=ContentFile(photos[4][1], name="variant.jpg"))
    shirts.append(oxford)
    for title, photo in photos[1:4]:
        shirt = product(title, photo, shirts_category)
        stock(shirt, "25.00")
        shirts.append(shirt)

    out = io.StringIO()
    call_command("embed_catalog", "--no-progress", stdout=out)
    assert "Embedded 9" in out.getvalue(), out.getvalue()
    return {
        "variant": child,
        "partner": partner,
        "watches": watches,
        "shirts": shirts,
        "watches_category": watches_category,
        "shirts_category": shirts_category,
    }


def test_lookalike_migrated_against_oscars_models():
    assert catalog.product_model() is Product and catalog.image_model() is ProductImage
    assert ProductEmbedding._meta.get_field("product").related_model is Product
    assert ImportJob._meta.get_field("store").related_model is Partner
    out = io.StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


def test_oscars_product_page_shows_similar_items(store, client):
    watch = store["watches"][0]

    response = client.get(watch.get_absolute_url())

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="content_inner"' in html  # Oscar's own layout and page, overridden only in one block
    section = html[html.index('class="lookalike-similar"') :]
    linked = set(re.findall(r'href="(/catalogue/[^"]+)"', section))
    other_watches = {w.get_absolute_url() for w in store["watches"][1:3]}
    assert other_watches <= linked  # the two in-stock watches, ahead of any shirt
    assert store["watches"][3].get_absolute_url() not in linked  # sold out: no stock record has stock
    assert watch.get_absolute_url() not in linked


def test_the_api_filters_on_stock_records_and_oscar_categories(store, client):
    watch, shirts = store["watches"][0], store["shirts"]

    cheap = client.get(f"/api/products/{watch.pk}/similar/", {"max_price": "30", "limit": 8}).json()
    # Shirts at 25.00, and the parent Oxford shirt at its cheapest size's 27.50; no watch costs that little.
    prices = {item["id"]: Decimal(item["price"]) for item in cheap["results"]}
    assert set(prices) == {shirt.pk for shirt in shirts}
    assert prices[shirts[0].pk] == Decimal("27.50")
    assert {item["currency"] for item in cheap["results"]} == {"EUR"}

    category = store["watches_category"].pk
    watches = client.get(f"/api/products/{watch.pk}/similar/", {"category": category, "limit": 8}).json()
    assert {item["id"] for item in watches["results"]} == {w.pk for w in store["watches"][1:3]}
    assert all(item["category"] == category for item in watches["results"])

    everything = client.get(
        f"/api/products/{watch.pk}/similar/", {"in_stock": "false", "store": store["partner"].pk, "limit": 8}
    ).json()
    assert store["watches"][3].pk in {item["id"] for item in everything["results"]}
    assert not any(item["id"] for item in everything["results"] if item["title"].startswith("Oxford shirt "))


def test_a_campaign_landing_page_links_to_oscar_product_pages(store, client):
    campaign = Campaign.objects.create(name="Watches", slug="watches", status=Campaign.Status.LIVE)
    campaign.categories.add(store["watches_category"].get_parent())  # "Accessories": watches lie below it
    creative = save_creative(
        creative=Creative(campaign=campaign, name="Ad", slug="ad"),
        image_data=myntra_photos("Watches", 6)[5][1],  # a watch that is not in the catalogue
    )
    assert embed_creative(creative_id=creative.pk) == "embedded"

    response = client.get("/c/watches/", HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="content_inner"' in html  # LOOKALIKE["BASE_TEMPLATE"]: Oscar's layout
    shown = [int(pk) for pk in re.findall(r'href="/c/watches/go/(\d+)/', html)]
    assert shown and set(shown) <= {w.pk for w in store["watches"][:3]}
    redirect = client.get(f"/c/watches/go/{shown[0]}/", HTTP_USER_AGENT=BROWSER)
    assert redirect.status_code == 302
    assert redirect["Location"].startswith(Product.objects.get(pk=shown[0]).get_absolute_url())


def test_the_for_you_page_follows_oscar_product_views(store, client):
    for watch in store["watches"][:2]:
        assert client.get(watch.get_absolute_url()).status_code == 200  # recorded by the middleware

    response = client.get("/for-you/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="content_inner"' in html
    assert 'data-cold-start="false"' in html
    picked = [int(pk) for pk in re.findall(r'href="/for-you/go/(\d+)/', html)]
    assert store["watches"][2].pk in picked  # the in-stock watch not seen yet
    followed = client.get(f"/for-you/go/{picked[0]}/?source=for-you")
    assert followed.status_code == 302
    assert followed["Location"] == Product.objects.get(pk=picked[0]).get_absolute_url()


def test_precomputed_neighbours_answer_on_oscars_catalogue(store):
    call_command("compute_neighbours", "--k", "5", "--no-progress", stdout=io.StringIO())

    result = selectors.find_similar_products(product=store["watches"][1], limit=2)

    assert result.source == selectors.PRECOMPUTED
    assert {item.product for item in result.items} == {store["watches"][0], store["watches"][2]}
    # The variant's photo has a vector, but a variant is never recommended on its own.
    shirts = selectors.find_similar_products(product=store["shirts"][1], limit=3)
    assert shirts.source == selectors.PRECOMPUTED
    assert store["variant"] not in {item.product for item in shirts.items}
    live = selectors.find_similar_products(product=store["shirts"][1], limit=8, diversity=0.1)
    assert live.items and store["variant"] not in {item.product for item in live.items}


def test_a_shopify_catalog_imports_into_oscar(db, settings, tmp_path):
    from .fixture_store import run_fixture_store  # copied beside this file by tests/test_oscar_shop.py

    settings.MEDIA_ROOT = tmp_path
    with run_fixture_store(product_count=4) as shop:
        call_command(
            "import_catalog",
            f"{shop.base_url}/products.json",
            "--store",
            "Fixture Partner",
            "--kind",
            "shopify",
            "--sync",
            "--no-progress",
            stdout=io.StringIO(),
        )
        expected = list(shop.catalog.products())
        # The prices are in the currency the store publishes at /meta.json, not the host's default.
        published = shop.shop_currency
    assert published and published != settings.OSCAR_DEFAULT_CURRENCY

    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.SUCCEEDED, list(job.errors.values_list("reason", flat=True))
    partner = Partner.objects.get(name="Fixture Partner")
    for source in expected:
        record = StockRecord.objects.select_related("product").get(
            partner=partner, partner_sku=str(source.id)
        )
        product = record.product
        assert (product.title, product.structure) == (source.title, Product.STANDALONE)
        assert record.price == Decimal(source.min_price) and record.price_currency == published
        assert (record.num_in_stock > 0) == source.in_stock
        assert [c.name for c in product.categories.all()] == [source.product_type]
        images = list(product.images.order_by("display_order"))
        assert len(images) == len(source.image_names)
        assert all(image.original.size > 0 for image in images)
    # Imported products are found by the catalog interface like any other: the price comes from the record.
    cheapest = min(expected, key=lambda p: Decimal(p.min_price))
    loaded = catalog.products(read=["price"]).get(stockrecords__partner_sku=str(cheapest.id))
    assert catalog.role_value(loaded, "price") == Decimal(cheapest.min_price)
