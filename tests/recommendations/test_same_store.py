"""Similar items keep to the viewed product's own store unless a setting or a parameter widens them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.template import Context, Template
from django.urls import reverse

from recommendations.neighbours import compute_neighbours
from recommendations.selectors import find_similar_products
from tests.recommendations.vectors import create_catalog, create_space

pytestmark = pytest.mark.django_db

DIMENSIONS = 8


@pytest.fixture
def two_stores(store):
    """Sunglasses in the test store; espresso cups in another store whose vectors sit even closer to them."""
    from shop.models import Store

    cafe = Store.objects.create(name="Cafe supplies")
    rng = np.random.default_rng(3)
    base = np.eye(DIMENSIONS)[0]
    glasses = base + 0.2 * rng.normal(size=(12, DIMENSIONS))
    cups = base + 0.05 * rng.normal(size=(12, DIMENSIONS))
    space = create_space(DIMENSIONS)
    own = create_catalog(store, (glasses / np.linalg.norm(glasses, axis=1, keepdims=True)), space=space)
    other = create_catalog(cafe, (cups / np.linalg.norm(cups, axis=1, keepdims=True)), space=space)
    return {"own": own, "other": other, "store": store, "cafe": cafe}


def store_ids(items) -> set[int]:
    return {item.product.store_id for item in items}


def test_selector_defaults_to_the_products_own_store_and_can_widen(two_stores, settings):
    query = two_stores["own"][0]
    assert store_ids(find_similar_products(product=query, limit=8).items) == {two_stores["store"].pk}
    # By primary key too (the API passes only the id).
    assert store_ids(find_similar_products(product=query.pk, limit=8).items) == {two_stores["store"].pk}
    wide = find_similar_products(product=query, limit=8, same_store=False).items
    assert two_stores["cafe"].pk in store_ids(wide)
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "SIMILAR_SAME_STORE": False}
    assert two_stores["cafe"].pk in store_ids(find_similar_products(product=query, limit=8).items)


def test_stored_neighbours_are_filtered_by_store(two_stores):
    compute_neighbours(k=20)
    query = two_stores["own"][0]
    narrow = find_similar_products(product=query, limit=8)
    assert narrow.source == "precomputed" and store_ids(narrow.items) == {two_stores["store"].pk}
    wide = find_similar_products(product=query, limit=8, same_store=False)
    assert wide.source == "precomputed" and two_stores["cafe"].pk in store_ids(wide.items)


def test_api_store_parameter(client, two_stores):
    query = two_stores["own"][0]
    url = reverse("recommendations:api-similar-products", args=[query.pk])

    def stores(**params) -> set[int]:
        response = client.get(url, {"limit": 8, **params})
        assert response.status_code == 200, response.content
        return {item["store"] for item in response.json()["results"]}

    own, cafe = two_stores["store"].pk, two_stores["cafe"].pk
    assert stores() == {own} and stores(store="same") == {own}
    assert cafe in stores(store="any")
    assert stores(store=str(cafe)) == {cafe}
    assert client.get(url, {"store": "elsewhere"}).status_code == 400


def test_widget_store_argument(two_stores):
    query = two_stores["own"][0]
    cafe_ids = {p.pk for p in two_stores["other"]}

    def shown(markup: str) -> set[int]:
        html = Template("{% load recommendation_tags %}" + markup).render(Context({"product": query}))
        return {int(pk) for pk in re.findall(r'data-product-id="(\d+)"', html)}

    assert not shown("{% similar_products product limit=8 %}") & cafe_ids
    assert shown('{% similar_products product limit=8 store="any" %}') & cafe_ids
