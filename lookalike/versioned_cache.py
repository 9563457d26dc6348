"""Cache entries that go stale together: a version counter in the cache, bumped when their source changes.

Each entry is stored as ``(version, value)``; an entry made under an older version is rebuilt on its next
read. Bumping is one ``INCR``, however many entries depend on the counter, and reading costs no extra round
trip (``get_many`` fetches the counter with the entry). A missing counter (evicted, or never set) starts at
the current time in nanoseconds rather than 1, so that it never repeats a version an old entry carries.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction

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


def bump_after_commit(version_key: str) -> None:
    """``bump_version`` once the current transaction commits (at once outside one); inside
    ``coalesced_bumps()``, once for the whole block."""
    keys = getattr(_coalescing, "keys", None)
    if keys is not None:
        keys[version_key] = None
        return
    transaction.on_commit(functools.partial(bump_version, version_key))


@contextlib.contextmanager
def coalesced_bumps() -> Iterator[None]:
    """Bulk writes: receivers call ``bump_after_commit`` for every saved row, and an import writes hundreds
    of rows per transaction (one INCR each was a tenth of its time). Inside this block the counters are
    collected, and each is registered once when the block ends without an error; after an error the
    rows are not written, and writing them again bumps again. Per thread; nested blocks are one."""
    if getattr(_coalescing, "keys", None) is not None:
        yield
        return
    _coalescing.keys = {}
    try:
        yield
        keys = list(_coalescing.keys)
    finally:
        _coalescing.keys = None
    for key in keys:
        transaction.on_commit(functools.partial(bump_version, key))


_coalescing = threading.local()


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
    return cached_with(version_key, key, build, timeout_s=timeout_s, keep=keep)[0]


def cached_with(
    version_key: str,
    key: str,
    build: Callable[[], T],
    *,
    timeout_s: int,
    keep: Callable[[T], bool] = lambda value: True,
    also: Sequence[str] = (),
) -> tuple[T, dict[str, Any]]:
    """``cached``, plus the entries found under the keys ``also`` (fetched in the same round trip, for a
    caller that knows which entries it will read next)."""
    found = cache.get_many([version_key, key, *also])
    version, entry = found.get(version_key), found.get(key)
    extra = {name: found[name] for name in also if name in found}
    if version is not None and entry is not None and entry[0] == version:
        return entry[1], extra
    if version is None:
        version = _start(version_key)
    value = build()
    if keep(value):
        cache.set(key, (version, value), timeout=timeout_s)
    return value, extra
