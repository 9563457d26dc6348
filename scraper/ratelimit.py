"""Politeness shared by every worker: a minimum interval between requests to one domain, and a cap on
how many requests to it are in flight at once. State lives in Redis (or Valkey), so ten Celery workers
crawling the same shop behave like one polite client::

    throttle = DomainThrottle(redis.Redis.from_url(REDIS_URL), min_interval_s=1.0, max_concurrency=2)
    with throttle.slot("shop.example") as grant:
        ...  # make the request

Interval: an atomic Lua script hands out start times one ``min_interval_s`` apart, using the Redis
server's clock (so worker clocks need not agree); each caller sleeps until its start time. Callers
queue in arrival order instead of polling. Taking a turn (lease and start time) is one round trip to
Redis, giving it back another.

Concurrency: a sorted set of leases scored by expiry time. A worker that dies mid-request holds its
lease until it expires (``lease_s``), never forever; ``lease_s`` must exceed the longest request
(the HTTP client's ``total_timeout_s`` times its attempts is a safe bound).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis

# One round trip per turn. KEYS: leases, next start. ARGV: token, max concurrency, lease ms, interval ms.
# When fewer than ARGV[2] unexpired leases exist: adds a lease, reserves the next start time
# (max(now, previous start + interval); skipped for a zero interval) and returns {1, start_ms, now_ms};
# otherwise returns {0, 0, now_ms}. Times come from the Redis server's clock.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return {0, 0, now}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
local interval = tonumber(ARGV[4])
if interval <= 0 then
  return {1, now, now}
end
local start = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
redis.call('SET', KEYS[2], start + interval, 'PX', start + interval - now + 1000)
return {1, start, now}
"""


class ThrottleTimeout(TimeoutError):
    """No concurrency slot for the domain came free within ``acquire_timeout_s``."""


@dataclass(frozen=True, slots=True)
class SlotGrant:
    """The turn a caller was given: ``start_ms`` is on the Redis server's clock (ms since the epoch)."""

    domain: str
    start_ms: int
    waited_s: float


class DomainThrottle:
    """Per-domain minimum interval and concurrency cap, shared through a Redis client.

    ``redis_client`` is a ``redis.Redis`` (or ``valkey.Valkey``) instance; it is used from many
    threads, which redis-py's connection pool allows.
    """

    def __init__(
        self,
        redis_client: Redis | Any,
        *,
        min_interval_s: float,
        max_concurrency: int,
        lease_s: float = 300.0,
        acquire_timeout_s: float = 600.0,
        poll_interval_s: float = 0.05,
        key_prefix: str = "lookalike:throttle",
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if min_interval_s < 0:
            raise ValueError("min_interval_s cannot be negative")
        self.min_interval_s = min_interval_s
        self.max_concurrency = max_concurrency
        self.lease_s = lease_s
        self.acquire_timeout_s = acquire_timeout_s
        self.poll_interval_s = poll_interval_s
        self.key_prefix = key_prefix
        self._redis = redis_client
        self._acquire = redis_client.register_script(_ACQUIRE)

    @contextmanager
    def slot(self, domain: str, *, min_interval_s: float | None = None) -> Iterator[SlotGrant]:
        """Wait for a concurrency lease and then for this domain's next start time; hold the lease
        until the block ends. ``min_interval_s`` raises the interval for this request (a robots.txt
        ``Crawl-delay``); it never lowers it. Raises ``ThrottleTimeout`` if no lease comes free.
        """
        domain = domain.lower().rstrip(".")
        lease_key = f"{self.key_prefix}:leases:{domain}"
        next_key = f"{self.key_prefix}:next:{domain}"
        interval_ms = int(max(self.min_interval_s, min_interval_s or 0.0) * 1000)
        token = uuid.uuid4().hex
        waited_from = time.monotonic()
        deadline = waited_from + self.acquire_timeout_s
        while True:
            acquired, start_ms, now_ms = self._acquire(
                keys=[lease_key, next_key],
                args=[token, self.max_concurrency, int(self.lease_s * 1000), interval_ms],
            )
            if acquired:
                break
            if time.monotonic() > deadline:
                raise ThrottleTimeout(
                    f"no request slot for {domain} within {self.acquire_timeout_s:.0f} s "
                    f"({self.max_concurrency} in flight)"
                )
            # Jitter keeps workers that polled together from colliding again on every poll.
            time.sleep(self.poll_interval_s * (0.5 + random.random()))
        try:
            if start_ms > now_ms:
                time.sleep((int(start_ms) - int(now_ms)) / 1000)
            yield SlotGrant(domain=domain, start_ms=int(start_ms), waited_s=time.monotonic() - waited_from)
        finally:
            self._redis.zrem(lease_key, token)


class LocalThrottle:
    """The same rules as ``DomainThrottle`` within one process, without Redis (``SHARED_STATE`` off)."""

    def __init__(
        self, *, min_interval_s: float, max_concurrency: int, acquire_timeout_s: float = 600.0
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.min_interval_s = min_interval_s
        self.max_concurrency = max_concurrency
        self.acquire_timeout_s = acquire_timeout_s
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextmanager
    def slot(self, domain: str, *, min_interval_s: float | None = None) -> Iterator[SlotGrant]:
        domain = domain.lower().rstrip(".")
        waited_from = time.monotonic()
        with self._lock:
            semaphore = self._slots.setdefault(domain, threading.BoundedSemaphore(self.max_concurrency))
        if not semaphore.acquire(timeout=self.acquire_timeout_s):
            raise ThrottleTimeout(f"no request slot for {domain} within {self.acquire_timeout_s:.0f} s")
        try:
            interval_s = max(self.min_interval_s, min_interval_s or 0.0)
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next_start.get(domain, 0.0))
                self._next_start[domain] = start + interval_s
            if start > now:
                time.sleep(start - now)
            yield SlotGrant(
                domain=domain, start_ms=int(time.time() * 1000), waited_s=time.monotonic() - waited_from
            )
        finally:
            semaphore.release()
