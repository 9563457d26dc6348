"""The three plugin apps inside a shop with its own catalog models (``tests/own_shop``).

Not collected by the main test run, whose settings install the bundled ``shop``: ``tests/test_own_catalog.py``
runs this file in its own pytest process with ``--ds=tests.own_shop.settings``. Everything is real: the
migrations against ``catalogue.Item``, EfficientNet-Lite0 forward passes on Myntra photos, pgvector
queries, the REST API, the template tag, a campaign's landing page and a CSV import.
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
from django.template import Context, Template

from campaigns.models import Campaign, Creative
from campaigns.services import embed_creative, save_creative
from lookalike import catalog
from recommendations import selectors
from recommendations.models import ImageEmbedding, ProductEmbedding
from scraper.models import ImportJob
from tests.own_shop.models import Department, Item, ItemPhoto, Seller

DATA_DIR = Path(os.environ.get("LOOKALIKE_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
MYNTRA = DATA_DIR / "myntra"

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
def catalogue(db, settings, tmp_path):
    """Four watches and four shirts in two departments, one watch sold out, and an item whose photo is
    not an image, all embedded with ``manage.py embed_catalog``."""
    settings.MEDIA_ROOT = tmp_path
    watches, shirts = Department.objects.create(name="Watches"), Department.objects.create(name="Shirts")
    items: dict[str, list[Item]] = {"Watches": [], "Shirts": []}
    for department, article_type in ((watches, "Watches"), (shirts, "Shirts")):
        for index, (title, data) in enumerate(myntra_photos(article_type, 4)):
            item = Item.objects.create(
                name=title, price_incl_tax=Decimal(20 + 10 * index), department=department
            )
            ItemPhoto.objects.create(item=item, original=ContentFile(data, name=f"{item.pk}.jpg"))
            items[article_type].append(item)
    Item.objects.filter(pk=items["Watches"][3].pk).update(is_available=False)
    broken = Item.objects.create(name="Broken photo", price_incl_tax=Decimal(5), department=watches)
    ItemPhoto.objects.create(item=broken, original=ContentFile(b"not a picture", name="broken.jpg"))

    out = io.StringIO()
    call_command("embed_catalog", "--no-progress", stdout=out)
    return items, broken, out.getvalue()


def test_the_apps_migrated_against_the_shops_own_models():
    assert catalog.product_model() is Item and catalog.image_model() is ItemPhoto
    assert ImportJob._meta.get_field("store").related_model is Seller
    assert Campaign._meta.get_field("categories").related_model is Department
    assert ProductEmbedding._meta.get_field("product").related_model is Item
    assert ImageEmbedding._meta.get_field("image").related_model is ItemPhoto


def test_embedding_records_the_broken_photo_and_embeds_the_rest(catalogue):
    items, broken, output = catalogue
    assert "Embedded 8, skipped 0 unchanged, failed 1" in output
    failed = ImageEmbedding.objects.get(status="failed")
    assert failed.image.item == broken and failed.failure_reason
    assert ProductEmbedding.objects.count() == 8


def test_similar_items_come_from_the_shops_catalog_with_its_field_names(catalogue):
    items, _, _ = catalogue
    watch = items["Watches"][0]

    result = selectors.find_similar_products(product=watch, limit=3)

    found = [scored.product for scored in result.items]
    assert all(isinstance(product, Item) for product in found)
    assert watch not in found
    assert items["Watches"][3] not in found  # sold out (is_available=False), in stock only by default
    # ImageNet features put the two other in-stock watches before any shirt.
    assert set(found[:2]) == set(items["Watches"][1:3])

    shirts_only = selectors.ProductFilter(category_ids=[items["Shirts"][0].department_id])
    ranked = selectors.find_similar_products(product=watch, limit=3, filters=shirts_only)
    assert {scored.product.department.name for scored in ranked.items} == {"Shirts"}

    cheap = selectors.ProductFilter(max_price=Decimal(25))
    prices = [s.product.price_incl_tax for s in selectors.similar_products(product=watch, filters=cheap)]
    assert prices and max(prices) <= Decimal(25)


def test_api_and_widget_speak_the_shops_fields(catalogue, client):
    items, _, _ = catalogue
    watch = items["Watches"][0]

    response = client.get(f"/api/products/{watch.pk}/similar/", {"limit": 2, "category": "same"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 2
    names = {item.pk: item.name for item in items["Watches"]}
    for result in body["results"]:
        assert result["title"] == names[result["id"]]
        assert result["url"] == f"/items/{result['id']}/"
        assert result["image_url"].endswith(".jpg")
        assert result["brand"] == "" and result["store"] is None  # roles this catalog does not have

    html = Template("{% load recommendation_tags %}{% similar_products product limit=2 %}").render(
        Context({"product": watch})
    )
    linked = [int(pk) for pk in re.findall(r'href="/items/(\d+)/"', html)]
    assert len(linked) == 2 and set(linked) <= set(names)


def test_precomputed_neighbours_work_on_the_shops_catalog(catalogue):
    items, _, _ = catalogue
    call_command("compute_neighbours", "--k", "5", "--no-progress", stdout=io.StringIO())

    result = selectors.find_similar_products(product=items["Shirts"][0], limit=3)

    assert result.source == selectors.PRECOMPUTED
    assert len(result.items) == 3 and all(isinstance(s.product, Item) for s in result.items)


def test_a_campaign_landing_page_shows_the_shops_products_in_its_layout(catalogue, client):
    items, _, _ = catalogue
    campaign = Campaign.objects.create(name="Watches", slug="watches", status=Campaign.Status.LIVE)
    campaign.categories.add(items["Watches"][0].department)
    creative = save_creative(
        creative=Creative(campaign=campaign, name="Ad", slug="ad"),
        image_data=myntra_photos("Watches", 6)[5][1],  # a watch that is not in the catalog
    )
    assert embed_creative(creative_id=creative.pk) == "embedded"

    response = client.get(
        f"/c/{campaign.slug}/", HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="own-shop-layout"' in html  # LOOKALIKE["BASE_TEMPLATE"]
    shown = [int(pk) for pk in re.findall(rf'href="/c/{campaign.slug}/go/(\d+)/', html)]
    in_stock_watches = {item.pk for item in items["Watches"][:3]}
    assert shown and set(shown) <= in_stock_watches
    redirect = client.get(f"/c/{campaign.slug}/go/{shown[0]}/", HTTP_USER_AGENT="Mozilla/5.0 Firefox/133.0")
    assert redirect.status_code == 302 and redirect["Location"].startswith(f"/items/{shown[0]}/")


def test_a_csv_import_writes_the_shops_own_models(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    photos = myntra_photos("Shirts", 2)
    for index, (_, data) in enumerate(photos):
        (tmp_path / f"shirt-{index}.jpg").write_bytes(data)
    rows = ["id,title,price,category,image"]
    rows += [
        f"S{index},{title.replace(',', ' ')},{19 + index},Shirts,shirt-{index}.jpg"
        for index, (title, _) in enumerate(photos)
    ]
    (tmp_path / "catalog.csv").write_text("\n".join(rows) + "\n")

    call_command(
        "import_catalog", str(tmp_path / "catalog.csv"), "--store", "Outlet", "--sync", "--no-progress"
    )

    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.SUCCEEDED, list(job.errors.values_list("reason", flat=True))
    seller = Seller.objects.get(name="Outlet")
    imported = Item.objects.filter(seller=seller).order_by("sku")
    assert [(item.sku, item.price_incl_tax) for item in imported] == [
        ("S0", Decimal(19)),
        ("S1", Decimal(20)),
    ]
    assert [item.photos.get().original.read() for item in imported] == [data for _, data in photos]
