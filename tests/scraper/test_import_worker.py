"""An import end to end through the queue: a real Celery worker process, the fixture store over HTTP."""

from __future__ import annotations

import time

import pytest

from scraper.models import ImportJob
from scraper.services import start_import
from shop.models import Product, ProductImage, Store
from tests.scraper.fixture_store import run_fixture_store

PRODUCT_COUNT = 12


def wait_until_finished(job: ImportJob, timeout_s: float = 90.0) -> ImportJob:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.finished_at is not None:
            return job
        time.sleep(0.2)
    raise AssertionError(
        f"import #{job.pk} did not finish: {job.status}, {job.images_done}/{job.images_queued}"
    )


@pytest.mark.django_db(transaction=True)
def test_shopify_import_runs_on_the_worker_with_images_fanned_out(celery_worker) -> None:
    with run_fixture_store(product_count=PRODUCT_COUNT) as fixture:
        shop = Store.objects.create(name="Queued store", currency="USD")
        image_count = sum(len(product.image_names) for product in fixture.catalog.products())

        job = wait_until_finished(start_import(store=shop, source_url=fixture.base_url))

        assert (job.kind, job.status, job.created) == ("shopify", ImportJob.Status.SUCCEEDED, PRODUCT_COUNT)
        assert (job.images_queued, job.images_downloaded, job.images_failed) == (image_count, image_count, 0)
        assert job.walk_finished_at <= job.finished_at  # finished by the last image task
        assert ProductImage.objects.filter(status="stored").count() == image_count
        assert Product.objects.filter(store=shop).count() == PRODUCT_COUNT
        image_requests = {path: n for path, n in fixture.request_counts().items() if path.startswith("/img/")}
        assert len(image_requests) == image_count and set(image_requests.values()) == {1}

        again = wait_until_finished(start_import(store=shop, source_url=fixture.base_url, full_sync=True))

        assert (again.status, again.unchanged, again.created, again.updated) == (
            "succeeded",
            PRODUCT_COUNT,
            0,
            0,
        )
        assert (again.images_queued, again.marked_out_of_stock) == (0, 0)
        assert (
            sum(n for path, n in fixture.request_counts().items() if path.startswith("/img/")) == image_count
        )


@pytest.mark.django_db(transaction=True)
def test_an_inline_import_stores_photos_in_the_background_while_it_writes_on(settings) -> None:
    """``import_catalog --sync`` outside a transaction: each batch's photos are stored by a thread of their
    own (its own connection) while the next batch is written; every photo lands once, nothing is lost."""
    import threading

    from django.db.models.signals import post_save

    from scraper.services import run_import

    settings.SCRAPER = {**settings.SCRAPER, "BATCH_SIZE": 5}
    storing_threads: set[str] = set()

    def note_thread(sender, instance, **kwargs) -> None:
        if instance.status == "stored":
            storing_threads.add(threading.current_thread().name)

    post_save.connect(note_thread, sender=ProductImage, dispatch_uid="test-storing-thread")
    try:
        with run_fixture_store(product_count=23) as fixture:
            shop = Store.objects.create(name="Inline store", currency="USD")
            image_count = sum(len(product.image_names) for product in fixture.catalog.products())
            job = run_import(
                start_import(store=shop, source_url=fixture.base_url, queue=False), images="inline"
            )
            image_requests = [n for path, n in fixture.request_counts().items() if path.startswith("/img/")]
    finally:
        post_save.disconnect(sender=ProductImage, dispatch_uid="test-storing-thread")

    assert (job.status, job.created, job.finished_at is not None) == (ImportJob.Status.SUCCEEDED, 23, True)
    assert (job.images_queued, job.images_downloaded, job.images_failed) == (image_count, image_count, 0)
    stored = ProductImage.objects.filter(product__store=shop, status="stored")
    assert stored.count() == image_count and all(
        image.image.storage.exists(image.image.name) for image in stored
    )
    assert len(image_requests) == image_count and set(image_requests) == {1}
    assert storing_threads and all(name.startswith("import-images") for name in storing_threads)
