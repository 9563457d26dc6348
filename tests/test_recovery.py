"""Self-healing: a worker killed mid-batch, another one running, and nothing lost or done twice.

The workers run with short leases (LOOKALIKE_TEST_SETTINGS) and a short sweep interval so that the test
takes seconds; production's defaults (60 s leases, 30 s sweeps) bound recovery the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery.utils.nodenames import host_format
from django.db import transaction
from django.utils import timezone

from config.celery import app as celery_app
from recommendations import leases, services
from recommendations.models import EmbeddingBatch, ImageEmbedding, ProductEmbedding
from scraper.models import ImportJob
from scraper.services import _claim, start_import
from shop.models import Product, ProductImage
from tests.factories import add_image, create_product
from tests.recommendations.embedding_helpers import ENCODER, noisy_jpeg
from tests.scraper.fixture_store import run_fixture_store

ROOT = Path(__file__).resolve().parent.parent
LEASE_S = 3
PRODUCTS = 64
IMPORTED = 20
RECOVERY_DEADLINE_S = 120
QUEUES = ("default", "scrape", "embeddings")
SHORT_LEASES = {
    # One image per model call: a batch of 8 writes its vectors in 8 steps, so it can be killed halfway.
    "RECOMMENDATIONS": {"BATCH_LEASE_S": LEASE_S, "BATCH_SIZE": 1},
    # A polite pause between pages keeps the import walking long enough to be killed in the middle of it.
    # (The killed worker's requests keep their domain slots until the throttle's own lease runs out: the
    # test's cap of 4 leaves slots free.)
    "SCRAPER": {"STALE_JOB_S": LEASE_S, "DOMAIN_MIN_INTERVAL_S": 0.2},
}


def start_worker(name: str, *, beat: bool, tmp_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "LOOKALIKE_USE_TEST_DB": "1",
        "LOOKALIKE_TEST_SETTINGS": json.dumps(SHORT_LEASES),
        "LOOKALIKE_SWEEP_INTERVAL_S": "1",
        "LOOKALIKE_SCRAPER_ALLOW_HOSTS": "127.0.0.1",  # the fixture store
    }
    run_id = os.environ["LOOKALIKE_TEST_RUN_ID"]
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", ",".join(QUEUES),
        "-c", "3", "-n", f"{name}-{run_id}@%h", "--without-gossip", "--without-mingle", "-l", "info",
    ]  # fmt: skip
    if beat:
        command += ["--beat", "--schedule", str(tmp_path / "beat-schedule")]
    # Its own process group: killing the group kills the pool's children too, as a crashed machine would.
    # The worker writes to its own copy of the log's descriptor; this one is closed at once.
    with open(tmp_path / f"{name}.log", "w") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_group(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(condition: Callable[[], bool], what: str, *, timeout_s: float, logs: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")
        time.sleep(0.2)


@pytest.fixture
def workers(tmp_path) -> Iterator[dict[str, subprocess.Popen]]:
    """The test's own workers, and no other on its queues: the run's shared worker (``celery_worker`` in
    tests/conftest.py, still running when an earlier test started it) would otherwise take the victim's
    batches, the import and the sweepers' messages, so it stops consuming until the test ends."""
    shared = [host_format(f"test-{os.environ['LOOKALIKE_TEST_RUN_ID']}@%h")]
    for queue in QUEUES:
        celery_app.control.cancel_consumer(queue, destination=shared, reply=True, timeout=1)
    started: dict[str, subprocess.Popen] = {}
    try:
        yield started
    finally:
        for process in started.values():
            stop_group(process)
        for queue in QUEUES:
            celery_app.control.add_consumer(queue, destination=shared, reply=True, timeout=1)


def owned_by(process: subprocess.Popen, lease_owner: str) -> bool:
    """A lease token is host:pid:nonce, written by one of the worker's pool processes."""
    try:
        return os.getpgid(int(lease_owner.split(":")[1])) == process.pid
    except (IndexError, ValueError, ProcessLookupError):
        return False


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(workers, store, tmp_path, settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "TASK_CHUNK_SIZE": 8}
    victim = workers["victim"] = start_worker("victim", beat=False, tmp_path=tmp_path)
    space = services.prepare_space(ENCODER, "DEFAULT")
    with transaction.atomic():
        for index in range(PRODUCTS):
            add_image(create_product(store=store, image=None), noisy_jpeg(seed=index))
    # Committed: PRODUCTS / 8 embedding batches are queued.

    def victim_mid_batch() -> list[int]:
        """Batches the victim is running, with some of their images embedded and some not."""
        running = EmbeddingBatch.objects.filter(status=EmbeddingBatch.Status.RUNNING)
        held = []
        for batch in running:
            done = ImageEmbedding.objects.filter(space=space, image_id__in=batch.image_ids).count()
            if owned_by(victim, batch.lease_owner) and 0 < done < len(batch.image_ids):
                held.append(batch.pk)
        return held

    wait_for(lambda: bool(victim_mid_batch()), "the model to be loaded", timeout_s=180, logs=tmp_path)
    with run_fixture_store(product_count=IMPORTED) as fixture:
        job = start_import(store=store, source_url=fixture.url("/sitemap.xml"))
        imported_photos = sum(len(product.image_names) for product in fixture.catalog.products())

        def victim_is_mid_batch() -> bool:
            job.refresh_from_db()
            importing = job.status == ImportJob.Status.RUNNING and job.seen > 0
            return importing and bool(victim_mid_batch())

        wait_for(victim_is_mid_batch, "the worker to be mid-batch", timeout_s=180, logs=tmp_path)
        killed_batches = victim_mid_batch()
        # The other worker (with Celery beat, which runs the sweepers) is up when the victim dies.
        rescuer = workers["rescuer"] = start_worker("rescuer", beat=True, tmp_path=tmp_path)
        stop_group(victim, signal.SIGKILL)

        def everything_done() -> bool:
            job.refresh_from_db()
            unfinished = EmbeddingBatch.objects.exclude(status=EmbeddingBatch.Status.DONE).exists()
            return job.finished_at is not None and not unfinished

        wait_for(everything_done, "recovery", timeout_s=RECOVERY_DEADLINE_S, logs=tmp_path)

    # Every stored image has exactly one vector (the constraint forbids two; none is missing).
    images = ProductImage.objects.exclude(image="")
    assert images.count() == ProductImage.objects.count() == PRODUCTS + imported_photos
    embedded = ImageEmbedding.objects.filter(space=space, status=ImageEmbedding.Status.EMBEDDED)
    assert sorted(embedded.values_list("image_id", flat=True)) == sorted(images.values_list("pk", flat=True))
    assert ProductEmbedding.objects.filter(space=space).count() == Product.objects.count()

    # The batch the killed worker held was taken over once by the other worker, and finished once.
    for batch in EmbeddingBatch.objects.filter(pk__in=killed_batches):
        assert batch.attempts == 2
        assert owned_by(rescuer, batch.lease_owner)

    # The import was started over and finished with each product and photo counted once.
    assert job.status == ImportJob.Status.SUCCEEDED, job.message
    assert Product.objects.filter(store=store).count() == PRODUCTS + IMPORTED
    assert (job.seen, job.created + job.updated + job.unchanged) == (IMPORTED, IMPORTED)
    assert job.images_done == job.images_queued


@pytest.mark.django_db
def test_a_redelivered_batch_takes_over_an_expired_lease_and_skips_a_live_or_finished_one(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "BATCH_LEASE_S": 60, "BATCH_MAX_ATTEMPTS": 3}
    batch = EmbeddingBatch.objects.create(image_ids=[1, 2])
    first = leases.claim_batch(batch.pk)
    assert first is not None
    assert leases.claim_batch(batch.pk) is None  # the first worker's lease is live: hands off
    assert leases.requeue_expired_batches() == 0

    EmbeddingBatch.objects.filter(pk=batch.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = leases.claim_batch(batch.pk)  # the first worker died: the redelivered message takes over
    assert second is not None and second != first
    assert not leases.renew_batch(batch.pk, first)  # the first worker, were it alive, lost its lease
    leases.finish_batch(batch.pk, first)
    assert EmbeddingBatch.objects.get(pk=batch.pk).status == EmbeddingBatch.Status.RUNNING
    leases.finish_batch(batch.pk, second)
    assert EmbeddingBatch.objects.get(pk=batch.pk).status == EmbeddingBatch.Status.DONE
    assert leases.claim_batch(batch.pk) is None  # a late redelivery finds it done


@pytest.mark.django_db
def test_a_batch_whose_workers_keep_dying_is_failed_not_retried_forever(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "BATCH_MAX_ATTEMPTS": 2}
    batch = EmbeddingBatch.objects.create(image_ids=[1])
    for _ in range(2):
        assert leases.claim_batch(batch.pk) is not None
        EmbeddingBatch.objects.filter(pk=batch.pk).update(lease_expires_at=timezone.now())
    assert leases.requeue_expired_batches() == 0
    assert EmbeddingBatch.objects.get(pk=batch.pk).status == EmbeddingBatch.Status.FAILED


@pytest.mark.django_db
def test_a_redelivered_import_takes_over_a_silent_job_and_skips_a_live_one(store, settings):
    settings.SCRAPER = {**settings.SCRAPER, "STALE_JOB_S": 60}
    job = start_import(store=store, source_url="https://store.example/products.json", queue=False)
    first = _claim(job.pk)
    assert first is not None and first.status == ImportJob.Status.RUNNING
    assert _claim(job.pk) is None  # its worker is alive (fresh heartbeat): the duplicate hands off

    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    taken = _claim(job.pk)
    assert taken is not None and taken.started_at > first.started_at  # a new run
    # The old run's writes are refused from now on.
    assert not ImportJob.objects.filter(pk=job.pk, started_at=first.started_at).exists()


@pytest.mark.django_db
def test_the_sweeper_forgets_finished_batches_after_a_day_and_keeps_failed_ones():
    old = timezone.now() - timedelta(days=2)
    done = EmbeddingBatch.objects.create(image_ids=[1], status=EmbeddingBatch.Status.DONE, finished_at=old)
    failed = EmbeddingBatch.objects.create(
        image_ids=[2], status=EmbeddingBatch.Status.FAILED, finished_at=old
    )
    recent = EmbeddingBatch.objects.create(
        image_ids=[3], status=EmbeddingBatch.Status.DONE, finished_at=timezone.now()
    )
    leases.requeue_expired_batches()
    remaining = set(EmbeddingBatch.objects.values_list("pk", flat=True))
    assert done.pk not in remaining and {failed.pk, recent.pk} <= remaining
