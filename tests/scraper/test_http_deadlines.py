"""Deadlines on every network step: a body or headers trickled a byte at a time, and a DNS lookup that
hangs, against the fixture store on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from django.core.files.base import ContentFile

from scraper.http import FetchConnectionError, FetchPolicy, FetchTimeout, GuardedClient
from scraper.models import ImportJob
from scraper.services import run_import, start_import
from shop.models import Product, ProductImage, Store
from tests.scraper.fixture_store import FixtureStore, run_fixture_store

POLICY = FetchPolicy(
    allow_hosts=frozenset({"127.0.0.1"}),
    connect_timeout_s=2.0,
    read_timeout_s=1.0,  # each byte comes well within it: only the total deadline can stop a trickle
    total_timeout_s=1.5,
    dns_timeout_s=0.5,
    backoff_base_s=0.01,
    max_retries=2,
)


@pytest.fixture(scope="module")
def store() -> Iterator[FixtureStore]:
    with run_fixture_store(product_count=4) as running:
        yield running


@pytest.mark.parametrize("headers", ["0", "1"])
def test_a_trickling_server_does_not_outlast_the_deadline(store: FixtureStore, headers: str) -> None:
    url = store.url(f"/trickle?bytes=40&interval_s=0.2&headers={headers}")  # 8 s of body, or more of headers
    with GuardedClient(POLICY) as client, pytest.raises(FetchTimeout) as caught:
        client.get(url, kind="page")

    assert "not complete after 1.5 s" in caught.value.reason
    assert caught.value.attempts == 1  # the whole attempt was spent: not tried again at once


@pytest.fixture
def hanging_dns(monkeypatch) -> Iterator[threading.Event]:
    """Names under ``hang.test`` never resolve (as a resolver that does not answer): the system's
    resolver cannot be made to hang from a test, so the lookup function is the one thing replaced."""
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if str(host).endswith(".hang.test"):
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield release
    release.set()


def test_a_hanging_dns_lookup_fails_at_its_deadline(hanging_dns: threading.Event) -> None:
    with GuardedClient(POLICY) as client, pytest.raises(FetchConnectionError) as caught:
        client.get("http://shop.hang.test/products.json", kind="feed")
    assert "did not answer within 0.5 s" in caught.value.reason and caught.value.retryable


def test_an_import_keeps_moving_when_dns_hangs_for_some_photos(
    store: FixtureStore, hanging_dns: threading.Event, db, settings
) -> None:
    settings.SCRAPER = {**getattr(settings, "SCRAPER", {}), "DNS_TIMEOUT_S": 0.5, "DOWNLOAD_THREADS": 2}
    shop = Store.objects.create(name="DNS", currency="USD")
    rows = ["id,title,image_urls"]
    for n in range(4):
        rows.append(f"OK-{n},Fine {n},{store.url(f'/img/ok-{n}.jpg')}")
        rows.append(f"HANG-{n},Hung {n},http://img{n}.hang.test/photo.jpg|{store.url(f'/img/also-{n}.jpg')}")
    job = start_import(
        store=shop, source_file=ContentFile("\n".join(rows).encode(), name="c.csv"), queue=False
    )

    job = run_import(job, images="inline")

    assert job.status == ImportJob.Status.PARTIAL
    assert (job.created, job.images_downloaded, job.images_failed) == (8, 8, 4)
    assert Product.objects.filter(store=shop).count() == 8
    failed = ProductImage.objects.filter(status="failed")
    assert failed.count() == 4
    assert all("did not answer within 0.5 s" in image.failure_reason for image in failed)
