"""The demo store loads generated products with real image files into the catalog."""

import pytest
from PIL import Image

from shop.demo_catalog import generate_demo_catalog
from shop.models import Product, ProductImage
from shop.services import load_demo_catalog

pytestmark = pytest.mark.django_db


def test_demo_catalog_loads_products_categories_and_images():
    records = generate_demo_catalog(n_products=24, image_px=96)
    store = load_demo_catalog(records)
    assert store.products.count() == 24
    assert Product.objects.filter(category__isnull=True).count() == 0
    images = ProductImage.objects.filter(product__store=store)
    assert images.count() == sum(len(r.images) for r in records)
    first = images.first()
    with first.image.open("rb") as handle:
        assert Image.open(handle).size == (96, 96) == (first.width, first.height)
    stock = dict(store.products.values_list("external_id", "in_stock"))
    assert stock == {r.external_id: r.in_stock for r in records}
    # Loading again changes nothing.
    load_demo_catalog(records)
    assert (
        store.products.count() == 24
        and ProductImage.objects.filter(product__store=store).count() == images.count()
    )
