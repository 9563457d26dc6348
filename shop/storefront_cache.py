"""The storefront's product listings, cached as HTML until the catalog changes.

A listing (the category tree and one page of product cards) is the same for every visitor, and costs a
count over the catalog, a sort and a query per category to make. It is cached per category and page with
the catalog version it was made from; saving a product, an image or a category bumps the version (after
commit, ``shop.receivers``), so every listing is made again on its next request. What sends no signal
(``QuerySet.update()``, deletions) shows within ``STOREFRONT_CACHE_S``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings

from lookalike import versioned_cache

VERSION_KEY = "shop:catalog-version"


def cache_timeout_s() -> int:
    return int(getattr(settings, "STOREFRONT_CACHE_S", 60))


def bump_version() -> None:
    versioned_cache.bump_version(VERSION_KEY)


def cached(key: str, build: Callable[[], Any]) -> Any:
    """The entry under ``key`` if made from the current version, else ``build()`` stored."""
    if not cache_timeout_s():
        return build()
    return versioned_cache.cached(VERSION_KEY, key, build, timeout_s=cache_timeout_s())
