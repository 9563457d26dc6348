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
