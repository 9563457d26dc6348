"""Cached similar items (API JSON and widget HTML): served until the catalog changes, then made again."""

from __future__ import annotations

import pytest
from django.template import Context, Template

from shop.models import Product
from tests.recommendations.test_api import DIMENSIONS, catalog, similar_url  # noqa: F401  (fixture)
from tests.recommendations.vectors import clustered_vectors, create_catalog, create_space

pytestmark = pytest.mark.django_db


def titles(client, product_id: int, query: str = "") -> list[str]:
    response = client.get(similar_url(product_id) + query)
    assert response.status_code == 200
    return [item["title"] for item in response.json()["results"]]


def test_api_answers_are_cached_until_a_product_is_saved(
    client,
    catalog,  # noqa: F811  (the fixture imported above)
    django_capture_on_commit_callbacks,
):
    query = catalog["products"][0]
    first = titles(client, query.pk, "?limit=5")
    top = Product.objects.get(title=first[0])

    # A change that sends no signal is not seen: the answer comes from the cache, whatever the spelling
    # of the same parameters (the key is made from validated values, not from the raw query string).
    Product.objects.filter(pk=top.pk).update(title="Renamed quietly")
    assert titles(client, query.pk, "?limit=05&unknown=1") == first

    # A save (an import, the admin) makes every cached answer stale once it commits.
    with django_capture_on_commit_callbacks(execute=True):
        top.title = "Renamed"
        top.save()
    assert titles(client, query.pk, "?limit=5")[0] == "Renamed"

    with django_capture_on_commit_callbacks(execute=True):
        top.in_stock = False
        top.save()
    assert "Renamed" not in titles(client, query.pk, "?limit=5")


def test_widget_html_is_cached_per_product_until_the_catalog_changes(
    store, django_capture_on_commit_callbacks, settings
):
    space = create_space(DIMENSIONS)
    products = create_catalog(store, clustered_vectors(6, DIMENSIONS, clusters=1, seed=3), space=space)
    widget = Template("{% load recommendation_tags %}{% similar_products product limit=3 %}")

    def render(product) -> str:
        return widget.render(Context({"product": product}))

    html = render(products[0])
    assert html.count('similar-product"') == 3
    neighbour = Product.objects.get(pk=html.split('data-product-id="')[1].split('"')[0])
    Product.objects.filter(pk=neighbour.pk).update(title="<b>quiet</b>")
    assert render(products[0]) == html  # from the cache

    with django_capture_on_commit_callbacks(execute=True):
        neighbour.title = "<script>alert(1)</script>"
        neighbour.save()
    fresh = render(products[0])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in fresh and "<script>" not in fresh  # still escaped

    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "SIMILAR_CACHE_S": 0}
    Product.objects.filter(pk=neighbour.pk).update(title="Uncached")
    assert "Uncached" in render(products[0])
