"""The similar-items REST API and image search: contract, filters, limits and error answers."""

import io
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.utils import override_settings
from django.urls import reverse
from PIL import Image

from recommendations.serializers import SimilarProductSerializer
from tests.factories import add_image, jpeg_bytes
from tests.recommendations.vectors import clustered_vectors, create_catalog, create_space

pytestmark = pytest.mark.django_db

DIMENSIONS = 16


def settings_with(**values):
    from django.conf import settings

    return override_settings(RECOMMENDATIONS={**settings.RECOMMENDATIONS, **values})


def similar_url(product_id: int) -> str:
    return reverse("recommendations:api-similar-products", args=[product_id])


SEARCH_URL = "/api/search/by-image/"


@pytest.fixture
def catalog(store):
    """20 products in two categories and two brands, prices 10..29, every 4th out of stock, with images."""
    from shop.models import Category

    shirts, shoes = Category.from_path(["Shirts"]), Category.from_path(["Shoes"])
    space = create_space(DIMENSIONS)
    vectors = clustered_vectors(20, DIMENSIONS, clusters=2, seed=11)
    products = create_catalog(
        store,
        vectors,
        space=space,
        categories=[shirts, shoes],
        prices=[f"{10 + i}.00" for i in range(20)],
        in_stock=[i % 4 != 3 for i in range(20)],
    )
    for i, product in enumerate(products):
        product.brand = "Acme" if i % 2 else "Zed"
        product.save()
        add_image(product, jpeg_bytes((10 * i, 100, 200 - 5 * i)))
    return {"space": space, "products": products, "shirts": shirts, "shoes": shoes}


def test_similar_products_answer_with_scores_and_product_fields(client, catalog):
    query = catalog["products"][0]
    response = client.get(similar_url(query.pk), {"limit": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["product"] == query.pk and body["count"] == 5 and len(body["results"]) == 5
    assert body["source"] in ("index", "exact") and body["reason"] == ""
    assert body["space"] == {"id": catalog["space"].pk, "encoder": "test", "dimensions": DIMENSIONS}
    first = body["results"][0]
    assert (
        set(first)
        == set(SimilarProductSerializer().fields)
        == {
            "id",
            "title",
            "url",
            "image_url",
            "price",
            "currency",
            "in_stock",
            "brand",
            "category",
            "store",
            "score",
            "match",
        }
    )
    assert first["image_url"].startswith("http://testserver/") and first["url"] == f"/products/{first['id']}/"
    scores = [item["score"] for item in body["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert query.pk not in [item["id"] for item in body["results"]]
    assert all(item["in_stock"] for item in body["results"])  # in stock only by default


def test_filters_through_query_parameters(client, catalog):
    products, shirts, shoes = catalog["products"], catalog["shirts"], catalog["shoes"]
    query = products[0]  # a shirt

    def results(**params):
        response = client.get(similar_url(query.pk), {"limit": 19, **params})
        assert response.status_code == 200, response.content
        return response.json()["results"]

    assert any(not item["in_stock"] for item in results(in_stock="false"))
    assert {item["category"] for item in results(category="same")} == {shirts.pk}
    assert {item["category"] for item in results(category=shoes.pk)} == {shoes.pk}
    assert {item["category"] for item in results(exclude_category="same")} == {shoes.pk}
    assert len(results(category="any")) == len(results())
    priced = results(min_price="15", max_price="20.50")
    assert priced and all(15 <= float(item["price"]) <= 20.5 for item in priced)
    assert {item["brand"] for item in results(brand="Acme")} == {"Acme"}
    assert results(store=query.store_id + 1000) == []
    assert len(results(store=query.store_id)) == len(results())
    diverse = client.get(similar_url(query.pk), {"limit": 5, "diversity": "0.5"}).json()
    assert diverse["count"] == 5 and diverse["source"] != "precomputed"


def test_unknown_product_is_404_and_product_without_embedding_is_empty_with_reason(
    client, catalog, make_product
):
    assert client.get(similar_url(10**9)).status_code == 404
    fresh = make_product(title="Just imported")
    response = client.get(similar_url(fresh.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["results"] == [] and body["count"] == 0 and body["source"] == "none"
    assert "no embedding" in body["reason"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"diversity": "1.5"}, "diversity"),
        ({"diversity": "-0.1"}, "diversity"),
        ({"category": "shirts"}, "category"),
        ({"exclude_category": "any"}, "exclude_category"),
        ({"min_price": "-1"}, "min_price"),
        ({"min_price": "30", "max_price": "20"}, "max_price"),
        ({"in_stock": "maybe"}, "in_stock"),
        ({"store": "0"}, "store"),
    ],
)
def test_bad_parameters_are_400_with_field_errors(client, catalog, params, field):
    response = client.get(similar_url(catalog["products"][0].pk), params)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "Invalid parameters." and list(body["errors"]) == [field]


def test_openapi_schema_documents_both_endpoints(client):
    response = client.get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    similar = schema["paths"]["/api/products/{id}/similar/"]["get"]
    assert {p["name"] for p in similar["parameters"]} >= {
        "id",
        "limit",
        "in_stock",
        "category",
        "exclude_category",
        "min_price",
        "max_price",
        "store",
        "brand",
        "diversity",
    }
    assert {"200", "400", "404"} <= set(similar["responses"])
    search = schema["paths"]["/api/search/by-image/"]["post"]
    assert "multipart/form-data" in search["requestBody"]["content"]
    assert {"200", "400", "413", "415"} <= set(search["responses"])
    assert client.get(reverse("api-docs")).status_code == 200


def png_bytes(size_px: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size_px, size_px), (20, 120, 220)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(client, data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg", **fields):
    return client.post(
        SEARCH_URL, {"image": SimpleUploadedFile(name, data, content_type=content_type), **fields}
    )


def test_image_search_refuses_bad_uploads_with_clear_answers(client, catalog):
    response = client.post(SEARCH_URL, {"limit": "3"})
    assert response.status_code == 400 and "image" in response.json()["errors"]

    # The type is read from the bytes: a text file named .jpg and declared image/jpeg is refused.
    response = upload(client, b"just some text, not a photo" * 10)
    assert response.status_code == 415 and "JPEG, PNG, WebP or GIF" in response.json()["detail"]
    # A header that looks like a PNG but is broken.
    response = upload(client, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, name="broken.png")
    assert response.status_code == 400 and "cannot be read" in response.json()["detail"]

    with settings_with(IMAGE_SEARCH_MAX_BYTES=2_000):
        response = upload(client, jpeg_bytes(size_px=256) + b"\x00" * 5_000)
        assert response.status_code == 413 and "2,000 bytes" in response.json()["detail"]
    with settings_with(IMAGE_SEARCH_MAX_BYTES=2_000):
        # Refused from the declared length, before the body is read.
        response = upload(client, b"\xff\xd8\xff" + b"\x00" * 200_000)
        assert response.status_code == 413 and "The upload is" in response.json()["detail"]
    with settings_with(IMAGE_SEARCH_MAX_PIXELS=1_000):
        response = upload(client, png_bytes(64), name="photo.png", content_type="image/png")
        assert response.status_code == 413 and "64x64 pixels" in response.json()["detail"]

    response = upload(client, jpeg_bytes(), category="same")
    assert response.status_code == 400 and "category" in response.json()["errors"]

    # Not multipart at all.
    response = client.post(SEARCH_URL, data=b"{}", content_type="application/json")
    assert response.status_code == 415


def test_image_search_is_rate_limited(client, catalog):
    with settings_with(IMAGE_SEARCH_RATE="2/minute"):
        codes = [upload(client, b"not an image").status_code]
        codes += [
            client.post(SEARCH_URL, {"image": SimpleUploadedFile("x.jpg", b"not an image")}).status_code
            for _ in range(2)
        ]
    assert codes == [415, 415, 429]


def test_image_search_without_an_active_space_says_why(client, store):
    response = upload(client, jpeg_bytes())
    assert response.status_code == 200
    assert response.json()["results"] == [] and "No embedding space is active" in response.json()["reason"]


def test_vectors_survive_the_round_trip_to_json(client, catalog):
    # Scores in the answer are the cosine similarities of the stored (half precision) vectors.
    products = catalog["products"]
    body = client.get(similar_url(products[0].pk), {"limit": 3, "in_stock": "false"}).json()
    from recommendations.selectors import product_vectors

    vectors = product_vectors([p.pk for p in products])
    query = vectors[products[0].pk]
    for item in body["results"]:
        other = vectors[item["id"]]
        cosine = float(query @ other / np.linalg.norm(query) / np.linalg.norm(other))
        assert item["score"] == pytest.approx(cosine, abs=2e-3)


def distinct_photos(count: int) -> list[bytes]:
    """Photos that an image model tells apart: different colours, sizes and placements of a shape."""
    photos = []
    for i in range(count):
        image = Image.new("RGB", (160, 160), (250, 250, 250))
        colour = ((70 * i) % 256, (150 + 40 * i) % 256, (230 - 50 * i) % 256)
        box = (10 + 12 * i, 20 + 7 * i, 80 + 10 * i, 150 - 5 * i)
        image.paste(colour, box)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        photos.append(buffer.getvalue())
    return photos


@pytest.fixture
def embedded_catalog(store):
    """Six products whose photos went through the real embedding pipeline (efficientnet_lite0)."""
    from recommendations import services
    from recommendations.conf import app_setting
    from tests.factories import create_product

    photos = distinct_photos(6)
    products = [
        create_product(store=store, title=f"Printed tee {i}", image=photo) for i, photo in enumerate(photos)
    ]
    space = services.prepare_space(app_setting("ENCODER"), app_setting("WEIGHTS"))
    images = [product.images.get() for product in products]
    report = services.embed_images([image.pk for image in images], space=space)
    assert report.embedded == 6
    return products, photos


def test_image_search_finds_the_product_in_the_photo(client, embedded_catalog):
    products, photos = embedded_catalog
    response = upload(client, photos[3], limit="3")
    assert response.status_code == 200
    body = response.json()
    assert body["product"] is None and body["source"] in ("index", "exact") and body["count"] == 3
    assert body["results"][0]["id"] == products[3].pk and body["results"][0]["score"] > 0.99
    assert body["space"]["encoder"] == "efficientnet_lite0"

    # Checked by content: the same picture as a PNG called "notes.txt", declared text/plain, is accepted.
    png = io.BytesIO()
    Image.open(io.BytesIO(photos[2])).save(png, "PNG")
    response = upload(client, png.getvalue(), name="notes.txt", content_type="text/plain")
    assert response.status_code == 200 and response.json()["results"][0]["id"] == products[2].pk

    # A JPEG whose header is fine but whose data stops half-way cannot be embedded.
    response = upload(client, photos[1][: len(photos[1]) // 2])
    assert response.status_code == 400 and "cannot be read" in response.json()["detail"]

    # Filters apply to image search too.
    products[3].in_stock = False
    products[3].save()
    response = upload(client, photos[3], limit="3")
    assert products[3].pk not in [item["id"] for item in response.json()["results"]]
    response = upload(client, photos[3], limit="3", in_stock="false")
    assert response.json()["results"][0]["id"] == products[3].pk
