from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from shop.models import Category, Product, Store

pytestmark = pytest.mark.django_db


def test_external_id_is_unique_per_store_only(store, make_product):
    make_product(external_id="sku-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.create(store=store, external_id="sku-1", title="Duplicate")
    other = Store.objects.create(name="Other")
    assert Product.objects.create(store=other, external_id="sku-1", title="Same id, other store").pk


def test_category_paths_and_subtree_queries(make_product):
    shirts = Category.from_path(["Men", "Shirts"])
    polos = Category.from_path(["Men", "Shirts", "Polos"])
    women = Category.from_path(["Women"])
    assert shirts.path == "men/shirts/" and polos.parent == shirts and str(polos) == "men > shirts > polos"
    assert Category.from_path(["Men", "Shirts"]) == shirts  # idempotent
    a = make_product(category=shirts)
    b = make_product(category=polos)
    make_product(category=women)
    men = Category.objects.get(path="men/")
    assert set(Product.objects.in_category(men)) == {a, b}
    assert set(Category.objects.subtree(men)) == {men, shirts, polos}


def test_product_querysets(store, make_product):
    cheap = make_product(price="5.00")
    dear = make_product(price="500.00", in_stock=False)
    other_store = Store.objects.create(name="Elsewhere")
    elsewhere = make_product(store=other_store, price="50.00")
    assert set(Product.objects.in_stock()) == {cheap, elsewhere}
    assert set(Product.objects.for_store(store)) == {cheap, dear}
    assert list(Product.objects.price_between(Decimal("10"), Decimal("100"))) == [elsewhere]
    assert set(Product.objects.price_between(min_price=Decimal("10"))) == {dear, elsewhere}
    assert set(Product.objects.price_between(max_price=Decimal("10"))) == {cheap}


def test_primary_image_is_lowest_position(make_product):
    from tests.factories import add_image, jpeg_bytes

    product = make_product(image=None)
    second = add_image(product, jpeg_bytes((0, 0, 255)), position=1)
    first = add_image(product, jpeg_bytes((0, 255, 0)), position=0)
    assert product.primary_image == first
    prefetched = Product.objects.with_primary_image().get(pk=product.pk)
    assert prefetched.primary_image == first and prefetched.ordered_images == [first, second]
    assert first.width == 64 and first.sha256 and first.image.name.startswith("products/")
