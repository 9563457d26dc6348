"""The embedding admin: spaces with counts, status columns without per-row queries, re-embed actions."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.admin.sites import site
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from recommendations import services
from recommendations.models import EmbeddingSpace, ImageEmbedding, ProductEmbedding
from shop.models import Product, ProductImage
from tests.factories import create_product

pytestmark = pytest.mark.django_db


@pytest.fixture
def embedded_catalog(store):
    """Six products: four embedded in the active space, one failed, one not embedded yet."""
    space = EmbeddingSpace.objects.create(
        encoder="efficientnet_lite0", weights_id="t", dimensions=4, state="active"
    )
    products = [create_product(store=store, title=f"Shirt {index}") for index in range(6)]
    for index, product in enumerate(products[:5]):
        image = product.images.get()
        failed = index == 4
        ImageEmbedding.objects.create(
            space=space,
            image=image,
            product=product,
            sha256=image.sha256,
            vector=None if failed else np.eye(4, dtype=np.float32)[index % 4],
            status="failed" if failed else "embedded",
            failure_reason="truncated or corrupt image data" if failed else "",
        )
        if not failed:
            ProductEmbedding.objects.create(
                space=space, product=product, vector=np.eye(4, dtype=np.float32)[index % 4]
            )
    return space, products


def queued_ids() -> list[int]:
    ids = sorted({pk for pending in services._pending.ids.values() for pk in pending})
    services._pending.ids = {}  # this test's transaction never commits: nothing is sent
    return ids


def test_catalog_admins_are_extended_not_replaced():
    product_admin = site.get_model_admin(Product)
    image_admin = site.get_model_admin(ProductImage)
    assert type(product_admin).__name__ == "ProductAdminWithEmbeddings"
    assert type(image_admin).__name__ == "ProductImageAdminWithEmbeddings"
    # The shop's own configuration is kept.
    assert product_admin.list_per_page == 50 and product_admin.show_full_result_count is False


def test_product_list_shows_the_status_without_a_query_per_row(admin_client, embedded_catalog, store):
    url = reverse("admin:shop_product_changelist")
    admin_client.get(url)  # the session and content types are cached afterwards
    with CaptureQueriesContext(connection) as six_products:
        response = admin_client.get(url)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("✓ embedded") == 4
    assert html.count("✗ failed") == 1 and 'title="truncated or corrupt image data"' in html
    assert html.count(">pending<") == 1

    for _ in range(6):
        create_product(store=store)
    with CaptureQueriesContext(connection) as twelve_products:
        assert admin_client.get(url).content.decode().count(">pending<") == 7
    assert len(twelve_products) == len(six_products)


def test_image_list_and_product_page_show_embeddings(admin_client, embedded_catalog):
    space, products = embedded_catalog
    html = admin_client.get(reverse("admin:shop_productimage_changelist")).content.decode()
    assert html.count("✓ embedded") == 4 and html.count("✗ failed") == 1

    page = admin_client.get(reverse("admin:shop_product_change", args=[products[4].pk])).content.decode()
    assert "Embeddings (per image and space)" in page
    assert "truncated or corrupt image data" in page


def test_space_list_counts_and_refuses_to_activate_an_incomplete_space(admin_client, embedded_catalog):
    space, _ = embedded_catalog
    building = EmbeddingSpace.objects.create(encoder="efficientnet_lite0", weights_id="u", dimensions=4)

    html = admin_client.get(reverse("admin:recommendations_embeddingspace_changelist")).content.decode()
    # 4 embedded + 1 failed, of 6 catalog images; the bar and the counts that the page's script updates.
    assert (
        f'data-space="{space.pk}" data-finished="0">'
        '<progress value="5" max="6" style="width:10rem"></progress> '
        '<span data-field="done">5</span> / <span data-field="total">6</span>, '
        '<span data-field="failed">1</span> failed' in html
    )
    assert f'data-space="{building.pk}" data-finished="0"><progress value="0" max="6"' in html
    progress = admin_client.get(reverse("admin:recommendations_embeddingspace_progress")).json()
    counts = {"embedded": 4, "failed": 1, "done": 5, "total": 6, "products": 4}
    empty = {"embedded": 0, "failed": 0, "done": 0, "total": 6, "products": 0}
    assert sorted(progress["spaces"], key=lambda row: row["id"]) == [
        {"id": space.pk, "state": "active", **counts},
        {"id": building.pk, "state": "building", **empty},
    ]

    response = admin_client.post(
        reverse("admin:recommendations_embeddingspace_changelist"),
        {"action": "activate", "_selected_action": [building.pk]},
        follow=True,
    )
    assert "is missing 6 images" in response.content.decode()
    building.refresh_from_db()
    assert building.state == "building"


def test_reembed_actions_queue_the_images(admin_client, embedded_catalog):
    _, products = embedded_catalog
    queued_ids()
    admin_client.post(
        reverse("admin:shop_product_changelist"),
        {"action": "reembed_products", "_selected_action": [products[0].pk, products[5].pk]},
    )
    assert queued_ids() == sorted(products[i].images.get().pk for i in (0, 5))

    failed = ImageEmbedding.objects.get(status="failed")
    admin_client.post(
        reverse("admin:recommendations_imageembedding_changelist"),
        {"action": "reembed", "_selected_action": [failed.pk]},
    )
    assert queued_ids() == [failed.image_id]
    assert services._pending.ids == {}
