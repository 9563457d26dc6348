"""The storefront's product listings, cached as HTML until the catalog changes.

A listing (the category tree and one page of product cards) is the same for every visitor, and costs a
count over the catalog, a sort and a query per category to make. It is cached per category and page with
the catalog version it was made from; saving a product, an image or a category bumps the version (after
commit, ``shop.receivers``), so every listing is made again on its next request. What sends no signal
(``QuerySet.update()``, deletions) shows within ``STOREFRONT_CACHE_S``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache

VERSION_KEY = "shop:catalog-version"


def cache_timeout_s() -> int:
    return int(getattr(settings, "STOREFRONT_CACHE_S", 60))


def bump_version() -> None:
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # missing: evicted or never set
        cache.set(VERSION_KEY, time.time_ns(), timeout=None)


def cached(key: str, build: Callable[[], Any]) -> Any:
    """The entry under ``key`` if made from the current version, else ``build()`` stored."""
    if not cache_timeout_s():
        return build()
    found = cache.get_many([VERSION_KEY, key])
    version, entry = found.get(VERSION_KEY), found.get(key)
    if version is not None and entry is not None and entry[0] == version:
        return entry[1]
    if version is None:
        # A fresh start value (not 1), so that an evicted counter never repeats an old version.
        cache.add(VERSION_KEY, time.time_ns(), timeout=None)
        version = cache.get(VERSION_KEY)
    value = build()
    cache.set(key, (version, value), timeout=cache_timeout_s())
    return value
