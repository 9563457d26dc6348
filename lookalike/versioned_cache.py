"""Cache entries that go stale together: a version counter in the cache, bumped when their source changes.

Each entry is stored as ``(version, value)``; an entry made under an older version is rebuilt on its next
read. Bumping is one ``INCR``, however many entries depend on the counter, and reading costs no extra round
trip (``get_many`` fetches the counter with the entry). A missing counter (evicted, or never set) starts at
the current time in nanoseconds rather than 1, so that it never repeats a version an old entry carries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache

T = TypeVar("T")


def _start(version_key: str) -> int:
    cache.add(version_key, time.time_ns(), timeout=None)
    return int(cache.get(version_key) or 0)


def current_version(version_key: str) -> int:
    version = cache.get(version_key)
    return int(version) if version is not None else _start(version_key)


def bump_version(version_key: str) -> None:
    """Make every entry of this counter stale."""
    try:
        cache.incr(version_key)
    except ValueError:  # missing: evicted or never set
        cache.set(version_key, time.time_ns(), timeout=None)


def cached(
    version_key: str,
    key: str,
    build: Callable[[], T],
    *,
    timeout_s: int,
    keep: Callable[[T], bool] = lambda value: True,
) -> T:
    """The entry under ``key`` if it was made under the current version, else ``build()`` (stored when
    ``keep(value)``)."""
    found = cache.get_many([version_key, key])
    version, entry = found.get(version_key), found.get(key)
    if version is not None and entry is not None and entry[0] == version:
        return entry[1]
    if version is None:
        version = _start(version_key)
    value = build()
    if keep(value):
        cache.set(key, (version, value), timeout=timeout_s)
    return value
