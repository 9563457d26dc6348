import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_home_lists_products_paginated_and_by_category(client, make_product):
    from shop.models import Category

    mugs = Category.from_path(["Home", "Mugs"])
    lamps = Category.from_path(["Home", "Lamps"])
    for i in range(30):
        make_product(title=f"Mug {i:02d}", category=mugs)
    make_product(title="Desk lamp", category=lamps)
    page1 = client.get(reverse("shop:home")).content.decode()
    assert page1.count('class="product-card"') == 24 and "Page 1 of 2" in page1
    lamps_page = client.get(lamps.get_absolute_url()).content.decode()
    assert "Desk lamp" in lamps_page and "Mug 01" not in lamps_page
    home_page = client.get(reverse("shop:category", kwargs={"path": "home"})).content.decode()
    assert "Page 1 of 2" in home_page


def test_product_page(client, make_product):
    product = make_product(title="Round cushion", price="24.00", in_stock=False)
    html = client.get(product.get_absolute_url()).content.decode()
    assert "Round cushion" in html and "24.00" in html and "Out of stock" in html
    assert client.get(reverse("shop:product", args=[999999])).status_code == 404


def test_home_lists_newest_first_and_categories_by_name(client, make_product, settings):
    from shop.models import Category

    # This test's products are never committed, so no catalog-version bump would replace a listing that an
    # earlier test left in the cache.
    settings.STOREFRONT_CACHE_S = 0

    casual = Category.from_path(["Men", "Casual shoes"])
    make_product(title="Aardvark slipper", category=casual)
    newer = make_product(title="Zebra sneaker", category=casual)
    out_of_stock = make_product(title="Newest but sold out", in_stock=False)
    html = client.get(reverse("shop:home")).content.decode()
    # In stock first, then newest first (not by title).
    assert html.index("Zebra sneaker") < html.index("Aardvark slipper") < html.index(out_of_stock.title)
    page = client.get(casual.get_absolute_url()).content.decode()
    assert "<h1>Casual shoes</h1>" in page and "men &gt; casual-shoes" not in page
    assert '<a href="/category/men/">Men</a>' in page
    assert '<span aria-current="page">Casual shoes</span>' in page
    product_page = client.get(newer.get_absolute_url()).content.decode()
    assert f'<a href="{casual.get_absolute_url()}">Casual shoes</a>' in product_page
