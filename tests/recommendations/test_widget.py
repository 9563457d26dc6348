"""The similar-products widget in real rendered pages, and the storefront "search by photo" page."""

import re

import pytest
from django.db import connection
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

from tests.factories import add_image, jpeg_bytes
from tests.recommendations.vectors import clustered_vectors, create_catalog, create_space

pytestmark = pytest.mark.django_db

DIMENSIONS = 16


@pytest.fixture
def products(store):
    space = create_space(DIMENSIONS)
    items = create_catalog(store, clustered_vectors(30, DIMENSIONS, clusters=2, seed=21), space=space)
    for i, product in enumerate(items):
        product.title = f"Lookalike tee {i:02d}"
        product.save()
        add_image(product, jpeg_bytes((20 * i, 90, 160)))
    return items


def widget_ids(html: str) -> list[int]:
    section = re.search(r'<section class="similar-products".*?</section>', html, re.S)
    assert section, "no similar-products widget in the page"
    return [
        int(pk)
        for pk in re.findall(r'class="product-card similar-product" data-product-id="(\d+)"', section[0])
    ]


def test_product_page_shows_the_similar_products(client, products):
    from recommendations.selectors import similar_products

    product = products[0]
    html = client.get(product.get_absolute_url()).content.decode()

    expected = [item.product for item in similar_products(product=product, limit=8)]
    assert widget_ids(html) == [p.pk for p in expected] and len(expected) == 8
    for neighbour in expected:
        assert neighbour.title in html and f'href="{neighbour.get_absolute_url()}"' in html
        assert neighbour.primary_image.image.url in html
    assert f"{expected[0].price} {expected[0].currency}" in html
    assert product.pk not in widget_ids(html)


def test_widget_renders_nothing_without_an_embedding(client, make_product):
    product = make_product(title="Brand new arrival")
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    assert (
        "Brand new arrival" in response.content.decode()
        and "similar-products" not in response.content.decode()
    )


def test_widget_works_in_any_template_and_its_queries_do_not_grow_with_the_limit(products):
    template = Template("{% load recommendation_tags %}<div>{% similar_products product limit=n %}</div>")

    def render(n: int) -> tuple[str, int]:
        with CaptureQueriesContext(connection) as queries:
            html = template.render(Context({"product": products[0], "n": n}))
        return html, len(queries.captured_queries)

    two, two_queries = render(2)
    eight, eight_queries = render(8)
    assert len(widget_ids(two)) == 2 and len(widget_ids(eight)) == 8
    assert two_queries == eight_queries  # images and products are fetched in one query each, not per card


def test_widget_template_can_be_overridden(products, tmp_path, settings):
    folder = tmp_path / "recommendations"
    folder.mkdir()
    (folder / "similar_products.html").write_text(
        "<ul id='mine'>{% for card in cards %}<li>{{ card.title }}|{{ card.url }}</li>{% endfor %}</ul>"
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    with override_settings(TEMPLATES=templates):
        html = Template("{% load recommendation_tags %}{% similar_products product limit=3 %}").render(
            Context({"product": products[0]})
        )
    assert html.startswith("<ul id='mine'>") and html.count("<li>Lookalike tee") == 3


def test_search_by_photo_page_points_at_the_api(client):
    response = client.get(reverse("recommendations:search-by-photo"))
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        'action="/api/search/by-image/"' in html and 'name="image"' in html and "csrfmiddlewaretoken" in html
    )
    assert "csrftoken" in response.cookies


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_search_by_photo_page_in_a_browser(live_server, page, store, tmp_path):
    from recommendations import services
    from recommendations.conf import app_setting
    from tests.factories import create_product

    colours = [(200, 30, 30), (30, 160, 60), (40, 60, 200), (230, 200, 40)]
    products = [
        create_product(store=store, title=f"Cushion {i}", image=jpeg_bytes(colour, 128))
        for i, colour in enumerate(colours)
    ]
    space = services.prepare_space(app_setting("ENCODER"), app_setting("WEIGHTS"))
    services.embed_images([p.images.get().pk for p in products], space=space)
    photo = tmp_path / "my-photo.jpg"
    photo.write_bytes(jpeg_bytes(colours[2], 128))

    page.goto(live_server.url + reverse("recommendations:search-by-photo"))
    page.set_input_files("#photo-search-image", str(photo))
    page.click("button[type=submit]")
    page.wait_for_selector("#photo-search-results .similar-product")
    first = page.locator("#photo-search-results .similar-product").first
    assert first.get_attribute("data-product-id") == str(products[2].pk)
    assert "Cushion 2" in first.inner_text()
    assert "similar products" in page.inner_text("#photo-search-status")

    page.set_input_files(
        "#photo-search-image", {"name": "x.jpg", "mimeType": "image/jpeg", "buffer": b"no photo"}
    )
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('photo-search-status').textContent.includes('JPEG')")
    assert page.locator("#photo-search-results .similar-product").count() == 0
