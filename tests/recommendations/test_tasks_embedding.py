"""Embedding tasks and receivers: routing, queueing after commit, and a real Celery worker doing the work."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.core.files.base import ContentFile

from config.celery import app
from recommendations import selectors, services
from recommendations.models import EmbeddingSpace, ImageEmbedding, ProductEmbedding
from recommendations.tasks import embed_catalog_task, embed_images_task, finish_reembedding_task
from tests.factories import add_image, create_product
from tests.recommendations.embedding_helpers import ENCODER, coloured_jpeg

WORKER_TIMEOUT_S = 180  # the worker builds the model on its first task; the machine may be busy


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_embedding_tasks_are_routed_to_the_embeddings_queue():
    def queue_of(task) -> str:
        return app.amqp.router.route({}, task.name)["queue"].name

    assert queue_of(embed_images_task) == "embeddings"
    assert queue_of(embed_catalog_task) == "embeddings"
    assert queue_of(finish_reembedding_task) == "default"  # queries only: no model needed
    assert embed_images_task.acks_late


@pytest.mark.django_db
def test_images_are_queued_after_commit_only_when_their_file_changes(
    store, django_capture_on_commit_callbacks
):
    product = create_product(store=store, image=None)

    def queued(action: Callable[[], object]) -> list[int]:
        # Earlier tests' transactions never commit either: their ids are still waiting in this thread.
        services._pending.ids = {}
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            action()
        ids = sorted({pk for ids in services._pending.ids.values() for pk in ids}) if callbacks else []
        services._pending.ids = {}  # sent by no one: this test's transaction never commits
        return ids

    image = None

    def create() -> None:
        nonlocal image
        image = add_image(product, coloured_jpeg(0))

    assert queued(create) == [image.pk]
    assert queued(lambda: image.save()) == []  # nothing changed
    image.source_url = "https://store.example/other-url.jpg"
    assert queued(lambda: image.save()) == []  # the URL says nothing about the pixels
    assert queued(lambda: image.save(update_fields=["source_url"])) == []  # not even read back

    def new_file() -> None:
        image.image.save("replaced.jpg", ContentFile(coloured_jpeg(1)), save=False)
        image.sha256 = "0" * 64
        image.save()

    assert queued(new_file) == [image.pk]
    image.position = 3
    assert queued(lambda: image.save()) == [image.pk]  # may change the product's primary image
    waiting = product.images.model(product=product, source_url="https://store.example/later.jpg")
    assert queued(waiting.save) == []  # no file yet: the download will save it again


@pytest.mark.django_db(transaction=True)
def test_a_worker_embeds_new_images_and_switches_encoders_when_complete(celery_worker, store):
    old = services.prepare_space(ENCODER, "DEFAULT")
    products = []
    for index in range(3):
        product = create_product(store=store, image=None)
        add_image(product, coloured_jpeg(index))  # committed: the receiver queues it for the worker
        products.append(product)

    wait_for(
        lambda: ProductEmbedding.objects.filter(space=old).count() == 3, "the worker to embed the new images"
    )
    assert ImageEmbedding.objects.filter(space=old, status="embedded").count() == 3

    new = services.start_reembedding(ENCODER, "random")
    assert new.state == EmbeddingSpace.State.BUILDING  # queries stay on the old space meanwhile

    wait_for(lambda: EmbeddingSpace.objects.get(pk=new.pk).state == "active", "the new space to be activated")
    assert EmbeddingSpace.objects.get(pk=old.pk).state == "retired"
    assert ImageEmbedding.objects.filter(space=new, status="embedded").count() == 3
    assert ProductEmbedding.objects.filter(space=new).count() == 3
    result = selectors.find_similar_products(product=products[0], limit=5)
    assert result.space == EmbeddingSpace.objects.get(pk=new.pk)
    assert {item.product.pk for item in result.items} == {products[1].pk, products[2].pk}

    # A task delivered twice (acks_late after a lost worker) changes nothing.
    image_ids = [product.images.get().pk for product in products]
    report = embed_images_task.delay(image_ids, space_id=new.pk).get(timeout=WORKER_TIMEOUT_S)
    assert (report["embedded"], report["skipped"]) == (0, 3)
    assert ImageEmbedding.objects.filter(space=new).count() == 3
