import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:shop_product_changelist"))
    assert response.status_code == 200
    return len(queries)


def test_product_changelist_query_count_does_not_grow_with_products(staff_client, make_product):
    from shop.models import Category

    category = Category.from_path(["Home", "Mugs"])
    for _ in range(3):
        make_product(category=category)
    few = changelist_queries(staff_client)
    for _ in range(30):
        make_product(category=category)
    many = changelist_queries(staff_client)
    assert many == few, f"N+1: {few} queries for 3 products, {many} for 33"


def test_changelist_shows_thumbnails_price_stock_and_searches(staff_client, make_product):
    make_product(title="Crimson mug", price="12.50", external_id="MUG-1")
    make_product(title="Blue lamp", external_id="LAMP-9")
    response = staff_client.get(reverse("admin:shop_product_changelist"), {"q": "crimson"})
    html = response.content.decode()
    assert "Crimson mug" in html and "Blue lamp" not in html
    assert "<img src=" in html and "12.50" in html
    response = staff_client.get(reverse("admin:shop_product_changelist"), {"q": "LAMP-9"})
    assert "Blue lamp" in response.content.decode()
    response = staff_client.get(reverse("admin:shop_product_changelist"), {"in_stock__exact": "1"})
    assert response.status_code == 200


def test_change_form_renders_images_inline(staff_client, make_product):
    product = make_product(title="Striped cushion")
    response = staff_client.get(reverse("admin:shop_product_change", args=[product.pk]))
    html = response.content.decode()
    assert response.status_code == 200 and "Striped cushion" in html and 'width="96"' in html


def test_non_staff_user_is_refused(client):
    user = User.objects.create_user("shopper", password="pw")
    client.force_login(user)
    response = client.get(reverse("admin:shop_product_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
