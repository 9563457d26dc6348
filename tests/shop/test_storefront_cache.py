"""The storefront's listings are cached until the catalog changes, with one entry per real page."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from shop.models import Product

pytestmark = pytest.mark.django_db


def test_home_page_is_cached_until_a_product_is_saved(
    client, make_product, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        product = make_product(title="Blue shirt")
    assert "Blue shirt" in client.get("/").content.decode()

    Product.objects.filter(pk=product.pk).update(title="Quietly renamed")  # no signal: still cached
    assert "Blue shirt" in client.get("/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        product.title = "<img src=x onerror=alert(1)> Red shirt"
        product.save()
    page = client.get("/").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt; Red shirt" in page and "<img src=x" not in page


def test_page_numbers_a_client_makes_up_share_the_real_pages_entries(
    client, make_product, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        make_product(title="Only product")
    redis = cache._cache.get_client()  # type: ignore[attr-defined]
    pattern = cache.make_key("shop:listing:*")  # this test run's listings only
    keys_before = set(redis.keys(pattern))
    for page in ("1", "01", "999999", "-3", "x", "1e9", ""):
        response = client.get("/", {"page": page})
        assert response.status_code == 200 and "Only product" in response.content.decode()
    assert len(set(redis.keys(pattern)) - keys_before) <= 1
