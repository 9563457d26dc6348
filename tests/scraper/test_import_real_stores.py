"""Imports shaped like real stores' files, over real HTTP from the fixture store on 127.0.0.1: variants
grouped by item_group_id, currency, structured data, broken feeds, Shopify exports, sitemaps, DNS."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from scraper.models import ImportJob
from shop.models import Product, Store
from tests.scraper.fixture_store import FixtureStore, run_fixture_store
from tests.scraper.test_import_sources import expected_images, image_requests, import_url

PRODUCT_COUNT = 12


@pytest.fixture
def fixture_store() -> Iterator[FixtureStore]:
    with run_fixture_store(product_count=PRODUCT_COUNT) as running:
        yield running


@pytest.fixture
def shop(db) -> Store:
    return Store.objects.create(name="Fixture store", currency="USD")


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
    assert set(
        Product.objects.filter(store=shop, attributes__colours__contains=["Navy"]).values_list(
            "external_id", flat=True
        )
    ) == navy


def test_shopify_variants_keep_their_colour_and_size(fixture_store: FixtureStore, shop: Store) -> None:
    job = import_url(shop, fixture_store.base_url)

    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    source = fixture_store.catalog.product(2)
    product = Product.objects.get(store=shop, external_id=str(source.id))
    assert product.attributes["colours"] == [source.colour]
    assert [(v["size"], v["price"], v["in_stock"]) for v in product.attributes["variants"]] == list(
        zip(("S", "M", "L"), source.prices, source.available, strict=False)
    )
