"""The ``SCRAPER`` settings dict, with its defaults in code, and the objects built from it.

Every key is optional; ``settings.SCRAPER = {"DOMAIN_MIN_INTERVAL_S": 1.0}`` changes only that one.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from scraper.http import FetchPolicy, GuardedClient
    from scraper.ratelimit import DomainThrottle, LocalThrottle

MIB = 1024**2


def _env_hosts() -> list[str]:
    """Hosts exempt from the address checks, from ``LOOKALIKE_SCRAPER_ALLOW_HOSTS`` (comma separated).

    Read at call time, so a test can allow-list 127.0.0.1 before it starts a worker process.
    """
    return [
        host.strip()
        for host in os.environ.get("LOOKALIKE_SCRAPER_ALLOW_HOSTS", "").split(",")
        if host.strip()
    ]


DEFAULTS: dict[str, Any] = {
    # --- How the crawler introduces itself
    "USER_AGENT": "LookalikeBot/1.0 (+https://example.com/lookalike-bot)",  # put your contact page here
    # The token robots.txt groups are matched against.
    "ROBOTS_USER_AGENT": "LookalikeBot",
    "RESPECT_ROBOTS": True,
    "ROBOTS_TTL_S": 3600.0,
    # A robots.txt that answered 5xx/429 or timed out means "disallow all" for this long.
    "ROBOTS_ERROR_TTL_S": 600.0,
    # A larger Crawl-delay is capped, not obeyed (a shop asking for 1 request/hour never finishes).
    "MAX_CRAWL_DELAY_S": 30.0,
    # --- Safety: hosts exempt from the private-address checks (tests: 127.0.0.1). Never a real host.
    "ALLOW_HOSTS": None,  # None: LOOKALIKE_SCRAPER_ALLOW_HOSTS, else none
    # --- Timeouts and retries of one request
    "CONNECT_TIMEOUT_S": 5.0,
    "DNS_TIMEOUT_S": 5.0,  # a name lookup that hangs fails after this
    "READ_TIMEOUT_S": 20.0,  # longest silence between two reads
    "TOTAL_TIMEOUT_S": 90.0,  # one attempt, headers and body
    "MAX_RETRIES": 4,  # on 5xx, 429, timeouts and connection errors; never on other 4xx
    "BACKOFF_BASE_S": 0.5,
    "BACKOFF_MAX_S": 30.0,
    # A longer Retry-After is not slept through: the Celery task retries later instead.
    "MAX_RETRY_AFTER_S": 120.0,
    "MAX_REDIRECTS": 5,
    # --- Size caps
    "MAX_PAGE_BYTES": 5 * MIB,
    "MAX_FEED_BYTES": 50 * MIB,
    "MAX_IMAGE_BYTES": 20 * MIB,
    "MAX_IMAGE_PIXELS": 40_000_000,  # decompression-bomb guard: 8000 x 5000
    "MAX_UPLOAD_BYTES": 200 * MIB,  # a CSV, feed or ZIP uploaded in the admin
    "ZIP_MAX_FILES": 10_000,
    "ZIP_MAX_TOTAL_BYTES": 2 * 1024 * MIB,
    # --- Politeness, per domain and shared by every worker through Redis (REDIS_URL)
    "DOMAIN_MIN_INTERVAL_S": 0.5,  # between the starts of two requests to one domain
    "DOMAIN_MAX_CONCURRENCY": 2,  # requests to one domain in flight at once
    # How long a worker that died mid-request holds its slot; must exceed the longest request. A slot is
    # held for one attempt, which TOTAL_TIMEOUT_S bounds: None = TOTAL_TIMEOUT_S + 15 s, so a dead worker
    # does not keep a domain waiting much longer than a live one could.
    "THROTTLE_LEASE_S": None,
    # False: no Redis; the throttle and the robots.txt cache hold per process only (one worker).
    "SHARED_STATE": True,
    # The Redis/Valkey holding that shared state. None: settings.REDIS_URL, else CELERY_BROKER_URL.
    "REDIS_URL": None,
    # --- Crawl limits per import
    "SHOPIFY_PAGE_SIZE": 250,
    "MAX_SHOPIFY_PAGES": 2_000,
    "MAX_SITEMAP_DEPTH": 3,  # an index of indexes of sitemaps; deeper is refused
    "MAX_SITEMAPS": 500,
    "MAX_PRODUCT_PAGES": 100_000,
    # Images kept per product, in the source's order (the first is the main one).
    "MAX_IMAGES_PER_PRODUCT": 10,
    # --- Work sizes
    # Records written per transaction (a killed import loses at most one batch): a Shopify page. Larger
    # batches cost fewer queries per record (100 took 5 % longer on bench/import.py).
    "BATCH_SIZE": 250,
    "IMAGE_TASK_CHUNK_SIZE": 50,  # image URLs per scraper.fetch_images task
    # Images downloaded at once by one import run in-process (--sync); the domain cap still applies.
    "DOWNLOAD_THREADS": 4,
    # A retryable image failure (timeout, 5xx, 429) is tried again by a later task this many times.
    "IMAGE_TASK_RETRIES": 3,
    "IMPORT_TASK_RETRIES": 3,
    # The lease of a running import job (scraper.leases): its worker renews the heartbeat every third of
    # this; a job silent longer is started over by the sweeper (scraper.requeue_stale_jobs, Celery beat),
    # and can be cancelled at once from the admin.
    "STALE_JOB_S": 60,
    # --- How records reach the catalog (LOOKALIKE names the models and fields): an import path to a
    # ``scraper.catalog.CatalogWriter`` subclass. django-oscar: "lookalike.oscar.OscarWriter".
    "CATALOG_WRITER": "scraper.catalog.CatalogWriter",
}


def app_setting(name: str) -> Any:
    user = getattr(settings, "SCRAPER", None) or {}
    value = user.get(name, DEFAULTS[name])
    if name == "ALLOW_HOSTS" and value is None:
        return _env_hosts()
    return value


def fetch_policy(**overrides: Any) -> FetchPolicy:
    """The ``FetchPolicy`` the settings describe; ``overrides`` replace single fields."""
    from scraper.http import FetchPolicy

    values: dict[str, Any] = {
        "user_agent": app_setting("USER_AGENT"),
        "robots_user_agent": app_setting("ROBOTS_USER_AGENT"),
        "connect_timeout_s": float(app_setting("CONNECT_TIMEOUT_S")),
        "dns_timeout_s": float(app_setting("DNS_TIMEOUT_S")),
        "read_timeout_s": float(app_setting("READ_TIMEOUT_S")),
        "total_timeout_s": float(app_setting("TOTAL_TIMEOUT_S")),
        "max_page_bytes": int(app_setting("MAX_PAGE_BYTES")),
        "max_feed_bytes": int(app_setting("MAX_FEED_BYTES")),
        "max_image_bytes": int(app_setting("MAX_IMAGE_BYTES")),
        "max_image_pixels": int(app_setting("MAX_IMAGE_PIXELS")),
        "max_redirects": int(app_setting("MAX_REDIRECTS")),
        "max_retries": int(app_setting("MAX_RETRIES")),
        "backoff_base_s": float(app_setting("BACKOFF_BASE_S")),
        "backoff_max_s": float(app_setting("BACKOFF_MAX_S")),
        "max_retry_after_s": float(app_setting("MAX_RETRY_AFTER_S")),
        "allow_hosts": frozenset(app_setting("ALLOW_HOSTS") or ()),
        "respect_robots": bool(app_setting("RESPECT_ROBOTS")),
        "robots_ttl_s": float(app_setting("ROBOTS_TTL_S")),
        "robots_error_ttl_s": float(app_setting("ROBOTS_ERROR_TTL_S")),
        "max_crawl_delay_s": float(app_setting("MAX_CRAWL_DELAY_S")),
    }
    values.update(overrides)
    return FetchPolicy(**values)


@functools.cache
def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def redis_url() -> str:
    url = app_setting("REDIS_URL") or getattr(settings, "REDIS_URL", None)
    return str(url or settings.CELERY_BROKER_URL)


def redis_key_prefix() -> str:
    """Keys under the cache's prefix, so test runs sharing one Valkey do not share throttles."""
    cache_prefix = settings.CACHES.get("default", {}).get("KEY_PREFIX") or "lookalike"
    return f"{cache_prefix}:scraper"


def domain_throttle() -> DomainThrottle | LocalThrottle:
    """The per-domain throttle: shared through Redis, or per process with ``SHARED_STATE`` off."""
    from scraper.ratelimit import DomainThrottle, LocalThrottle

    if not app_setting("SHARED_STATE"):
        return LocalThrottle(
            min_interval_s=float(app_setting("DOMAIN_MIN_INTERVAL_S")),
            max_concurrency=int(app_setting("DOMAIN_MAX_CONCURRENCY")),
        )
    return DomainThrottle(
        _redis_client(redis_url()),
        min_interval_s=float(app_setting("DOMAIN_MIN_INTERVAL_S")),
        max_concurrency=int(app_setting("DOMAIN_MAX_CONCURRENCY")),
        lease_s=float(app_setting("THROTTLE_LEASE_S") or float(app_setting("TOTAL_TIMEOUT_S")) + 15.0),
        key_prefix=f"{redis_key_prefix()}:throttle",
    )


def build_client(**policy_overrides: Any) -> GuardedClient:
    """A guarded client with the settings' policy, the shared throttle and the shared robots.txt cache."""
    from scraper.http import GuardedClient

    shared = bool(app_setting("SHARED_STATE"))
    return GuardedClient(
        fetch_policy(**policy_overrides),
        domain_throttle(),
        robots_redis=_redis_client(redis_url()) if shared else None,
        robots_key_prefix=f"{redis_key_prefix()}:robots",
    )
