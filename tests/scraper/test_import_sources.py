"""Whole imports over real HTTP from the fixture store on 127.0.0.1, run in this process (images inline).

What they pin down: counters and the error log, an idempotent second run, changed data updated, a full
re-sync that marks products out of stock only when the whole source was read, retries of failed pages,
every kind of bad image recorded on its image row with the reason, and nothing valid lost.
"""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from pathlib import Path

from django.core.files.base import ContentFile

from scraper.catalog import CatalogWriter, ImageWork
from scraper.conf import build_client
from scraper.downloads import _fetch_all, _Fetched, download_images
from scraper.models import ImportJob
from scraper.services import request_cancel, retry_failed_rows, run_import, start_import
from shop.models import Category, Product, ProductImage, Store
from tests.factories import stored_bytes
from tests.scraper.fixture_store import FixtureStore, png_pixel_bomb

FIXTURES = Path(__file__).parent / "fixtures"
PRODUCT_COUNT = 24


def import_url(shop: Store, url: str, *, kind: str = "auto", full_sync: bool = False, **options) -> ImportJob:
    job = start_import(
        store=shop, kind=kind, source_url=url, full_sync=full_sync, options=options, queue=False
    )
    return run_import(job, images="inline")


def import_file(
    shop: Store, name: str, data: bytes, *, kind: str = "auto", full_sync: bool = False
) -> ImportJob:
    job = start_import(
        store=shop, kind=kind, source_file=ContentFile(data, name=name), full_sync=full_sync, queue=False
    )
    return run_import(job, images="inline")


def counters(job: ImportJob) -> dict[str, int]:
    names = ["seen", "created", "updated", "unchanged", "failed", "skipped", "marked_out_of_stock"]
    names += ["images_downloaded", "images_reused", "images_failed"]
    return {name: getattr(job, name) for name in names}


def image_requests(store: FixtureStore) -> int:
    return sum(count for path, count in store.request_counts().items() if path.startswith("/img/"))


def expected_images(store: FixtureStore) -> int:
    return sum(len(product.image_names) for product in store.catalog.products())


# --- Shopify -----------------------------------------------------------------------------------------


def test_shopify_import_then_an_identical_second_run_changes_nothing(
    fixture_store: FixtureStore, shop: Store
) -> None:
    job = import_url(shop, fixture_store.base_url)  # the home page: detected as Shopify

    assert job.kind == ImportJob.Kind.SHOPIFY
    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    image_count = expected_images(fixture_store)
    assert counters(job) == {
        "seen": PRODUCT_COUNT, "created": PRODUCT_COUNT, "updated": 0, "unchanged": 0, "failed": 0,
        "skipped": 0, "marked_out_of_stock": 0, "images_downloaded": image_count, "images_reused": 0,
        "images_failed": 0,
    }  # fmt: skip
    source = fixture_store.catalog.product(9)
    product = Product.objects.get(store=shop, external_id=str(source.id))
    assert (product.title, product.brand, product.price, product.currency) == (
        source.title, source.brand, Decimal(source.min_price), "USD",  # the store's currency
    )  # fmt: skip
    assert product.in_stock is source.in_stock
    assert product.category.name == source.product_type
    assert product.attributes["tags"] == [source.colour, source.department.lower()]
    images = list(product.images.order_by("position"))
    assert [image.source_url.rsplit("/", 1)[1] for image in images] == [
        f"{n}.jpg" for n in source.image_names
    ]
    assert all(image.status == ProductImage.Status.STORED and image.width == 96 for image in images)
    assert Product.objects.filter(store=shop, in_stock=False).count() == sum(
        not p.in_stock for p in fixture_store.catalog.products()
    )

    rows_before = list(ProductImage.objects.order_by("pk").values_list("pk", "image", "updated_at"))
    updated_before = list(Product.objects.order_by("pk").values_list("updated_at", flat=True))
    images_before = image_requests(fixture_store)
    again = import_url(shop, fixture_store.base_url)

    assert again.status == ImportJob.Status.SUCCEEDED
    assert counters(again) | {"unchanged": 0} == counters(job) | {
        "created": 0, "images_downloaded": 0, "unchanged": 0,
    }  # fmt: skip
    assert again.unchanged == PRODUCT_COUNT
    assert image_requests(fixture_store) == images_before  # not one image downloaded again
    assert list(ProductImage.objects.order_by("pk").values_list("pk", "image", "updated_at")) == rows_before
    assert list(Product.objects.order_by("pk").values_list("updated_at", flat=True)) == updated_before


def test_changed_prices_are_updated_and_a_full_resync_marks_missing_products_out_of_stock(
    fixture_store: FixtureStore, shop: Store
) -> None:
    import_url(shop, fixture_store.base_url, kind="shopify")
    fixture_store.catalog.price_offset_cents = 100
    job = import_url(shop, fixture_store.base_url, kind="shopify")
    assert (job.updated, job.unchanged, job.created) == (PRODUCT_COUNT, 0, 0)
    source = fixture_store.catalog.product(3)
    assert Product.objects.get(external_id=str(source.id)).price == Decimal(source.min_price)

    fixture_store.catalog.size = 20  # four products left the shop
    gone = [fixture_store.catalog.product(index) for index in range(20, 24)]
    not_full = import_url(shop, fixture_store.base_url, kind="shopify")
    assert not_full.marked_out_of_stock == 0
    assert Product.objects.filter(store=shop).count() == PRODUCT_COUNT  # never deleted

    full = import_url(shop, fixture_store.base_url, kind="shopify", full_sync=True)
    assert full.status == ImportJob.Status.SUCCEEDED
    assert full.marked_out_of_stock == sum(product.in_stock for product in gone)
    for product in gone:
        assert Product.objects.get(external_id=str(product.id)).in_stock is False
    assert Product.objects.filter(store=shop).count() == PRODUCT_COUNT


def test_a_page_that_fails_stops_the_walk_blocks_the_resync_and_can_be_retried(
    fixture_store: FixtureStore, shop: Store, settings
) -> None:
    settings.SCRAPER = {**settings.SCRAPER, "SHOPIFY_PAGE_SIZE": 10}
    import_url(shop, fixture_store.base_url, kind="shopify")
    out_of_stock_before = set(Product.objects.filter(in_stock=False).values_list("pk", flat=True))
    fixture_store.catalog.size = 20
    fixture_store.fail_next("/products.json?page=2&limit=10", status=404)

    job = import_url(shop, fixture_store.base_url, kind="shopify", full_sync=True)

    assert job.status == ImportJob.Status.PARTIAL
    assert (job.seen, job.unchanged, job.failed, job.marked_out_of_stock) == (10, 10, 1, 0)
    error = job.errors.get()
    assert (error.stage, error.reason) == ("fetch", "HTTP 404")
    assert error.source_ref == error.retry_url == fixture_store.url("/products.json?page=2&limit=10")
    assert "no product was marked out of stock" in job.message
    assert set(Product.objects.filter(in_stock=False).values_list("pk", flat=True)) == out_of_stock_before

    retried = retry_failed_rows(job, images="inline")

    assert retried.status == ImportJob.Status.SUCCEEDED
    assert (retried.seen, retried.unchanged, retried.failed) == (20, 20, 0)  # pages 2 and 3 read now
    assert job.errors.get().retried is True


def test_server_errors_and_rate_limits_on_pages_are_retried_with_backoff(
    fixture_store: FixtureStore, shop: Store
) -> None:
    fixture_store.fail_next("/products.json?page=1&limit=250", status=500)
    job = import_url(shop, fixture_store.base_url + "/products.json", kind="shopify")
    assert job.status == ImportJob.Status.SUCCEEDED
    assert fixture_store.request_count("/products.json") == 2  # a 500, then the 200

    fixture_store.fail_next("/products.json?page=1&limit=250", status=429)  # with Retry-After: 1
    job = import_url(shop, fixture_store.base_url + "/products.json", kind="shopify")
    assert (job.status, job.unchanged) == (ImportJob.Status.SUCCEEDED, PRODUCT_COUNT)
    assert fixture_store.request_count("/products.json") == 4


def test_a_store_that_does_not_answer_fails_the_job_with_the_reason(
    fixture_store: FixtureStore, shop: Store
) -> None:
    fixture_store.fail_next("/products.json?page=1&limit=250", status=503, times=10)
    job = import_url(shop, fixture_store.base_url + "/products.json", kind="shopify")
    assert job.status == ImportJob.Status.FAILED
    assert job.message == "HTTP 503"
    assert job.errors.get().retry_url.endswith("/products.json?page=1&limit=250")


# --- Images that go wrong ----------------------------------------------------------------------------


def test_bad_images_are_recorded_on_the_image_and_in_the_log_and_no_product_is_lost(
    fixture_store: FixtureStore, shop: Store, settings
) -> None:
    settings.SCRAPER = {**settings.SCRAPER, "READ_TIMEOUT_S": 0.5, "MAX_RETRIES": 1}
    fixture_store.document("bomb.png", png_pixel_bomb)  # built before the clock runs
    key = uuid.uuid4().hex
    cases = {
        "good": ("/img/navy-shirts-0-0.jpg", None),
        "truncated": ("/img/broken/truncated.jpg", "corrupt or truncated"),
        "html": ("/img/broken/html.jpg", "expected an image but the body is not one"),
        "huge": ("/img/broken/huge.jpg", "Content-Length is 67,108,864 bytes"),
        "endless": ("/img/broken/endless.jpg", "over the image limit of 20,971,520 bytes"),
        "bomb": ("/img/broken/bomb.png", "too many pixels"),
        "metadata": ("/redirect-metadata", "169.254.169.254 is a link-local address"),
        "private": ("/redirect-private", "10.0.0.1 is a private address"),
        "robots": ("/private/photo.jpg", "robots.txt disallows /private/photo.jpg"),
        "missing": ("/img/nothing-here.png", "HTTP 404"),
        "flaky": (f"/flaky?key={key}&image=red-dresses-1-0", None),  # 500, then the image
        "ratelimited": (f"/ratelimited?key={key}&image=teal-jeans-2-0", None),  # 429 Retry-After: 1
        "slow": ("/slow?delay_s=2&image=pink-shoes-5-0", "timed out"),
    }
    rows = ["id,title,price,image_url"] + [
        f"{name},{name.capitalize()} thing,9.99,{fixture_store.url(path)}"
        for name, (path, _) in cases.items()
    ]

    job = import_file(shop, "catalog.csv", "\n".join(rows).encode())

    assert job.status == ImportJob.Status.PARTIAL
    assert (job.created, job.failed) == (len(cases), 0)  # every product is in, whatever its image did
    bad = {name: reason for name, (_, reason) in cases.items() if reason}
    assert (job.images_downloaded, job.images_failed) == (len(cases) - len(bad), len(bad))
    for name, (path, reason) in cases.items():
        image = ProductImage.objects.get(product__external_id=name)
        assert image.source_url == fixture_store.url(path)
        if reason is None:
            assert (image.status, image.failure_reason, image.width) == ("stored", "", 96), name
            assert stored_bytes(image.image)[:3] == b"\xff\xd8\xff"
        else:
            assert image.status == "failed" and not image.image, name
            assert reason in image.failure_reason, (name, image.failure_reason)
    log = {error.external_id: error for error in job.errors.all()}
    assert set(log) == set(bad)
    for name, reason in bad.items():
        assert log[name].stage == "image" and reason in log[name].reason
        assert log[name].source_ref == fixture_store.url(cases[name][0])
    assert log["slow"].retryable and not log["html"].retryable
    assert fixture_store.request_count("/private/photo.jpg") == 0


def test_retry_downloads_failed_images_again(fixture_store: FixtureStore, shop: Store) -> None:
    fixture_store.fail_next("/img/olive-jeans-2-0.jpg", status=404)
    csv = f"id,title,image_url\nP-1,Olive jeans,{fixture_store.url('/img/olive-jeans-2-0.jpg')}\n"
    job = import_file(shop, "catalog.csv", csv.encode())
    assert (job.status, job.images_failed) == (ImportJob.Status.PARTIAL, 1)
    failed_row = ProductImage.objects.get()

    retried = retry_failed_rows(job, images="inline")

    assert retried.status == ImportJob.Status.SUCCEEDED
    assert (retried.images_failed, retried.images_downloaded) == (0, 1)
    stored = ProductImage.objects.get()
    assert (stored.pk, stored.status, stored.failure_reason) == (failed_row.pk, "stored", "")


def test_an_image_is_downloaded_once_and_its_file_stored_once(
    fixture_store: FixtureStore, shop: Store
) -> None:
    shared = fixture_store.url("/img/grey-shoes-7-0.jpg")
    same_bytes = fixture_store.url(f"/flaky?key={uuid.uuid4().hex}&image=grey-shoes-7-0")  # 500, then same
    csv = f"id,title,image_url\nA,First,{shared}\nB,Second,{shared}\nC,Third,{same_bytes}\n"

    job = import_file(shop, "catalog.csv", csv.encode())

    assert fixture_store.request_count("/img/grey-shoes-7-0.jpg") == 1
    assert (job.images_downloaded, job.images_reused) == (2, 1)  # two downloads, one file
    files = set(ProductImage.objects.values_list("image", flat=True))
    assert len(files) == 1 and ProductImage.objects.count() == 3
    assert len(set(ProductImage.objects.values_list("sha256", flat=True))) == 1

    other = Store.objects.create(name="Second store", currency="EUR")
    again = import_file(other, "catalog.csv", csv.encode())  # another store, the same photos
    assert (again.images_downloaded, again.images_reused) == (0, 3)
    assert fixture_store.request_count("/img/grey-shoes-7-0.jpg") == 1


def test_images_that_changed_are_replaced_and_reordered(fixture_store: FixtureStore, shop: Store) -> None:
    a, b, c = (fixture_store.url(f"/img/{name}.jpg") for name in ("red-a", "red-b", "red-c"))
    import_file(shop, "catalog.csv", f"id,title,image_urls\nP,Red,{a}|{b}\n".encode())
    first_b = ProductImage.objects.get(source_url=b)

    job = import_file(shop, "catalog.csv", f"id,title,image_urls\nP,Red,{b}|{c}\n".encode())

    assert (job.updated, job.images_downloaded) == (1, 1)
    assert list(ProductImage.objects.order_by("position").values_list("source_url", "position")) == [
        (b, 0),
        (c, 1),
    ]
    assert ProductImage.objects.get(source_url=b).pk == first_b.pk  # kept, not downloaded again


def test_a_retryable_image_failure_is_deferred_for_a_later_task(
    fixture_store: FixtureStore, shop: Store
) -> None:
    product = Product.objects.create(store=shop, external_id="X", title="X")
    url = fixture_store.url("/img/teal-x.jpg")
    fixture_store.fail_next("/img/teal-x.jpg", status=503, times=10)
    with build_client() as client:
        work = [ImageWork(product.pk, url, 0)]
        outcome = download_images(CatalogWriter(store=shop), client, work, retry_later=True, threads=2)
    assert [item.url for item in outcome.deferred] == [url]
    assert not outcome.counts and not ProductImage.objects.exists()  # nothing recorded yet


def test_downloads_stop_when_the_caller_stops_reading(fixture_store: FixtureStore, shop: Store) -> None:
    # The store step raised (a database error, a cancelled job): the photos not started are dropped and
    # the download threads end instead of fetching the rest for nobody.
    names = [f"/img/navy-stop-{n}.jpg" for n in range(60)]
    with build_client() as client:
        results = _fetch_all(
            CatalogWriter(store=shop), client, [fixture_store.url(n) for n in names], threads=2
        )
        url, first = next(results)
        results.close()

    assert isinstance(first, _Fetched) and first.info.width > 0
    fetched = sum(fixture_store.request_count(name) for name in names)
    assert 1 <= fetched < len(names)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("images-")]


# --- Sitemaps and Merchant feeds -----------------------------------------------------------------------


def test_sitemap_crawl_reads_json_ld_and_opengraph_pages(fixture_store: FixtureStore, shop: Store) -> None:
    job = import_url(shop, fixture_store.base_url + "/", kind="sitemap")

    assert job.status == ImportJob.Status.SUCCEEDED, list(job.errors.values_list("source_ref", "reason"))
    assert (job.created, job.skipped, job.failed) == (PRODUCT_COUNT, 1, 0)  # /about has no product data
    for index in (0, 1, 2, 3):  # JSON-LD graph, OpenGraph only, invalid JSON-LD (OpenGraph), ImageObject
        source = fixture_store.catalog.product(index)
        product = Product.objects.get(store=shop, external_id=str(source.id))
        assert (product.title, product.price, product.brand) == (
            source.title,
            Decimal(source.min_price),
            source.brand,
        )
        assert product.images.filter(status="stored").count() == len(source.image_names)
    assert fixture_store.request_count("/sitemap-products.xml.gz") == 1
    assert fixture_store.request_count("/robots.txt") == 1


def test_merchant_feed_import(fixture_store: FixtureStore, shop: Store) -> None:
    job = import_url(shop, fixture_store.url("/feed.xml"))

    assert (job.kind, job.status, job.created) == ("merchant_feed", ImportJob.Status.SUCCEEDED, PRODUCT_COUNT)
    source = fixture_store.catalog.product(5)
    product = Product.objects.get(external_id=str(source.id))
    assert product.category == Category.from_path([source.department, source.product_type])
    assert product.attributes["color"] == source.colour
    assert "availability" not in product.attributes  # "in_stock" says nothing that in_stock does not


def test_a_truncated_feed_keeps_what_was_read_and_marks_nothing_out_of_stock(shop: Store) -> None:
    Product.objects.create(
        store=shop, external_id="OLD-1", title="Listed in a feed that broke", in_stock=True
    )

    job = import_file(shop, "feed.xml", (FIXTURES / "merchant_truncated.xml").read_bytes(), full_sync=True)

    assert job.status == ImportJob.Status.PARTIAL
    assert job.created >= 1 and job.marked_out_of_stock == 0
    assert "truncated or malformed" in job.message
    assert Product.objects.get(external_id="OLD-1").in_stock is True


# --- Cancellation ------------------------------------------------------------------------------------------


def test_cancel_stops_the_import_between_batches(fixture_store: FixtureStore, shop: Store, settings) -> None:
    settings.SCRAPER = {**settings.SCRAPER, "SHOPIFY_PAGE_SIZE": 5}
    job = start_import(store=shop, kind="shopify", source_url=fixture_store.base_url, queue=False)

    def cancel_after_first_page(current: ImportJob) -> None:
        if current.seen >= 5:
            request_cancel(current)

    finished = run_import(job, images="inline", on_progress=cancel_after_first_page)

    assert finished.status == ImportJob.Status.CANCELLED
    assert finished.created == 5 and Product.objects.count() == 5
    assert fixture_store.request_count("/products.json") == 1


def test_every_stored_image_is_announced_by_post_save_for_the_embedding_receiver(
    fixture_store: FixtureStore, shop: Store
) -> None:
    """Rows are written in bulk, yet each one sends post_save as Model.save() would: that is how the
    recommendation app queues embedding without the scraper calling it."""
    from django.db.models.signals import post_save

    announced: list[tuple[bool, bool]] = []

    def record(sender, instance, created, **kwargs) -> None:
        announced.append((created, bool(instance.image) and instance.pk is not None))

    post_save.connect(record, sender=ProductImage, dispatch_uid="test-announced")
    try:
        job = import_url(shop, fixture_store.base_url, kind="shopify")
    finally:
        post_save.disconnect(sender=ProductImage, dispatch_uid="test-announced")

    assert job.images_downloaded == ProductImage.objects.count() > 0
    assert announced == [(True, True)] * job.images_downloaded


def test_retrying_images_of_a_truncated_upload_does_not_make_it_complete(
    fixture_store: FixtureStore, shop: Store
) -> None:
    fixture_store.fail_next("/img/navy-a.jpg", status=404)
    url = fixture_store.url("/img/navy-a.jpg")
    feed = (
        '<?xml version="1.0"?><rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>'
        f"<item><g:id>N-1</g:id><title>Navy</title><g:image_link>{url}</g:image_link></item>"
        "<item><g:id>N-2</g:id><title>Cut off"
    ).encode()
    job = import_file(shop, "feed.xml", feed, full_sync=True)
    assert (job.status, job.created, job.images_failed) == (ImportJob.Status.PARTIAL, 1, 1)

    retried = retry_failed_rows(job, images="inline")

    assert (retried.images_failed, retried.images_downloaded) == (0, 1)
    assert retried.status == ImportJob.Status.PARTIAL  # the file is still cut off
    assert not retried.source_complete and "truncated or malformed" in retried.message


def test_sitemap_limits_stop_the_crawl_and_say_so(fixture_store: FixtureStore, shop: Store, settings) -> None:
    settings.SCRAPER = {**settings.SCRAPER, "MAX_SITEMAP_DEPTH": 0}
    job = import_url(shop, fixture_store.url("/sitemap.xml"), kind="sitemap", full_sync=True)
    assert (job.status, job.created, job.marked_out_of_stock) == (ImportJob.Status.FAILED, 0, 0)
    assert {error.reason for error in job.errors.all()} == {"sitemap nested deeper than 0 levels; not read"}

    settings.SCRAPER = {**settings.SCRAPER, "MAX_SITEMAP_DEPTH": 3, "MAX_PRODUCT_PAGES": 5}
    job = import_url(shop, fixture_store.url("/sitemap.xml"), kind="sitemap")
    assert (job.status, job.created) == (ImportJob.Status.PARTIAL, 5)
    assert "only the first 5 were read" in job.errors.get().reason
