"""The ``CAMPAIGNS`` settings dict, with its defaults in code."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Where shoppers go when they open an ended campaign that has no fallback URL of its own.
    "FALLBACK_URL": "/",
    # How long a rendered landing page is kept; any change to the campaign, its creatives or the stock of
    # the catalog invalidates it earlier. New products appear at the latest after this.
    "CACHE_TIMEOUT_S": 600,
    # A landing page's creative and campaign are looked up in the cache (one Redis round trip instead of a
    # query): saving a campaign, a creative or an embedding space refreshes them at once; changes that send
    # no signal (QuerySet.update()) show within this. 0: a query on every request.
    "CREATIVE_CACHE_S": 5,
    # A cached landing page's products are checked against the catalog (still there, still in stock) at
    # most once per this many seconds per page, shared by all workers; stock changes saved through the ORM
    # invalidate the page at once, this bounds how long a bulk QuerySet.update() that sends no signal can go
    # unseen. 0: one query on every request.
    "STOCK_RECHECK_S": 1,
    # True when the shop's layout (LOOKALIKE["BASE_TEMPLATE"]) shows nothing that depends on the visitor (no
    # basket, signed-in user, messages or CSRF token): it is then rendered once per worker, without the
    # request, and only the cached blocks are put in it. False: rendered per request around them.
    "CACHE_LAYOUT": False,
    # A reload within this window (same session, creative, event kind and product) is counted once.
    "DEDUP_WINDOW_S": 30 * 60,
    # How long after a click an add-to-cart or purchase is still credited to the campaign.
    "ATTRIBUTION_MAX_AGE_S": 7 * 24 * 3600,
    # At most this many add-to-carts and purchases (different order ids) are credited to one click's
    # attribution token; more are answered "not recorded". None: no limit.
    "MAX_CONVERSIONS": {"add_to_cart": 20, "purchase": 3},
    # First-party cookies: a random anonymous session key and the signed attribution of the last click.
    "SESSION_COOKIE": "lk_sid",
    "SESSION_COOKIE_MAX_AGE_S": 90 * 24 * 3600,
    "ATTRIBUTION_COOKIE": "lk_attr",
    # Query parameter carrying the attribution token to product pages on another host (store calls the
    # event endpoint with it). Empty: never added to URLs.
    "TOKEN_PARAM": "lk_token",
    # Ad-platform click ids passed from the landing page to product pages (utm_* always are).
    "CLICK_ID_PARAMS": [
        "gclid",
        "gbraid",
        "wbraid",
        "dclid",
        "fbclid",
        "msclkid",
        "ttclid",
        "twclid",
        "li_fat_id",
    ],
    # User agents whose visits are not counted (case-insensitive regular expression). Ad platforms fetch
    # landing pages to review and preview them; link unfurlers and monitoring tools do too.
    "BOT_USER_AGENT_PATTERN": (
        r"(?<!cu)bot\b|bot/|crawl|spider|slurp|facebookexternalhit|facebookcatalog|adsbot|mediapartners|"
        r"headlesschrome|phantomjs|lighthouse|pingdom|uptime|monitor|preview|curl/|wget/|python-requests|"
        r"python-httpx|python-urllib|go-http-client|java/|okhttp|libwww|scrapy|httpclient"
    ),
    # Limits on creative images (uploads, URLs and ZIP entries).
    "CREATIVE_MAX_BYTES": 10 * 1024 * 1024,
    "CREATIVE_MAX_PIXELS": 40_000_000,
    # Bulk upload: one campaign per image in a ZIP archive.
    "BULK_MAX_FILES": 200,
    "BULK_MAX_TOTAL_BYTES": 200 * 1024 * 1024,
    "MAX_PRODUCT_COUNT": 100,
    # Hosts exempt from the guarded client's private-address refusal (tests use {"127.0.0.1"}).
    "FETCH_ALLOW_HOSTS": [],
    "FETCH_TIMEOUT_S": 10.0,
    # Requests per client address (recommendations.ratelimit; "N/second|minute|hour|day", None: no limit).
    "LANDING_RATE": "300/minute",
    "CLICK_RATE": "120/minute",
    "EVENTS_RATE": "120/minute",
    # Seconds between two re-queues of the embedding of a creative that is not ready.
    "REQUEUE_INTERVAL_S": 300,
}


def app_setting(name: str) -> Any:
    return getattr(settings, "CAMPAIGNS", {}).get(name, DEFAULTS[name])
