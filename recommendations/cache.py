"""Cached similar-items answers: the API's JSON and the widget's HTML, per product, until the catalog changes.

Each entry is stored with the catalog version it was made from; ``bump_catalog_version`` (on any save of a
catalog product or image, an embedding batch that stored vectors, a space switch or a neighbours run)
makes every entry stale at once, and one ``get_many`` round trip reads the version and the entry together.
What sends no signal (``QuerySet.update()``, deletions) shows within ``SIMILAR_CACHE_S``, the entries' time
to live. Keys are built from validated parameters, never from the raw query string, so a client cannot
fill the cache with variants of one request.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from django.core.cache import cache

from recommendations.conf import app_setting

CATALOG_VERSION_KEY = "recommendations:catalog-version"


def catalog_version() -> int:
    version = cache.get(CATALOG_VERSION_KEY)
    if version is None:
        # A fresh start value (not 1), so that an evicted counter never repeats an old version.
        cache.add(CATALOG_VERSION_KEY, time.time_ns(), timeout=None)
        version = cache.get(CATALOG_VERSION_KEY)
    return int(version or 0)


def bump_catalog_version() -> None:
    """Make every cached similar-items answer stale."""
    try:
        cache.incr(CATALOG_VERSION_KEY)
    except ValueError:  # missing: evicted or never set
        cache.set(CATALOG_VERSION_KEY, time.time_ns(), timeout=None)


def entry_key(kind: str, *parts: Any) -> str:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()
    return f"recommendations:{kind}:{digest}"


def cached(key: str, build: Callable[[], Any]) -> Any:
    """The entry under ``key`` if it was made from the current catalog version, else ``build()`` stored."""
    timeout_s = app_setting("SIMILAR_CACHE_S")
    if not timeout_s:
        return build()
    found = cache.get_many([CATALOG_VERSION_KEY, key])
    version = found.get(CATALOG_VERSION_KEY)
    entry = found.get(key)
    if version is not None and entry is not None and entry[0] == version:
        return entry[1]
    if version is None:
        version = catalog_version()
    value = build()
    cache.set(key, (version, value), timeout=timeout_s)
    return value
