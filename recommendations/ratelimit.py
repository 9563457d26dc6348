"""Who is asking, how often, how many at once: the client's address, per-address rate limits of the public
endpoints, and slots that cap expensive work running at the same time on one machine.

``client_ip`` is the one place that reads a client address. ``X-Forwarded-For`` is set by whoever sends
the request, so it is believed only as far as ``TRUSTED_PROXIES`` (a Django setting, from
``DJANGO_TRUSTED_PROXIES``) says: with N proxies in front of Django, each appending the address it received
the request from, the client is the N-th entry from the right; everything left of it may be forged.

Limits are windows counted in the shared cache (Redis / Valkey), so every web process and machine counts
together; a client's window starts at its first request (not at a clock boundary, which would let a burst
straddling it through twice). A rate is ``"N/second|minute|hour|day"`` or None (no limit);
``RATE_LIMITS_ENABLED = False`` (``LOOKALIKE_RATE_LIMITS=off``) turns them all off, for a load test or when
a CDN limits instead.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import math
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from rest_framework.throttling import BaseThrottle

PERIODS_S = {"s": 1, "second": 1, "m": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
KEY_PREFIX = "rl"


def client_ip(request: HttpRequest | None) -> str:
    """The client's address: ``REMOTE_ADDR``, or the forwarded one that the trusted proxies vouch for."""
    if request is None:
        return ""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    proxies = int(getattr(settings, "TRUSTED_PROXIES", 0) or 0)
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    candidate = forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:  # a proxy that forwards garbage: count it under the proxy's own address
        return remote


@dataclass(frozen=True)
class Rate:
    count: int
    period_s: int


@functools.cache
def parse_rate(rate: str) -> Rate:
    """``"60/minute"`` → Rate(60, 60); raises ValueError for anything else."""
    count, _, period = rate.partition("/")
    if not count.strip().isdigit() or period.strip().lower() not in PERIODS_S:
        raise ValueError(f"{rate!r} is not a rate such as '60/minute'")
    return Rate(count=int(count), period_s=PERIODS_S[period.strip().lower()])


def is_rate_or_none(value: object) -> bool:
    """What a rate setting may hold: None (no limit) or a rate ``parse_rate`` reads; for system checks."""
    try:
        return value is None or bool(parse_rate(value))  # a non-string raises AttributeError
    except (ValueError, AttributeError):
        return False


# One round trip, atomic: a counter that never got its expiry would block its client for good.
_COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"""


def increment(key: str, period_s: int) -> tuple[int, float]:
    """Add one to a counter that lives ``period_s`` from its first increment (atomic across processes):
    (the count, seconds until it expires). ``key`` is a full cache key (``cache.make_key``)."""
    backend: Any = getattr(cache, "_cache", None)
    get_client = getattr(backend, "get_client", None)
    if get_client is not None:  # django.core.cache.backends.redis
        count, ttl_ms = get_client(key, write=True).eval(_COUNT_SCRIPT, 1, key, period_s * 1000)
        return int(count), max(int(ttl_ms), 0) / 1000
    if cache.add(key, 1, timeout=period_s):
        return 1, float(period_s)
    try:
        return int(cache.incr(key)), float(period_s)
    except ValueError:  # expired in between
        cache.add(key, 1, timeout=period_s)
        return 1, float(period_s)


def check(scope: str, ident: str, rate: str | None) -> float | None:
    """Count one request of ``ident`` in ``scope``; None when allowed, else the seconds until it would be."""
    if not rate or not getattr(settings, "RATE_LIMITS_ENABLED", True):
        return None
    limit = parse_rate(rate)
    key = cache.make_and_validate_key(f"{KEY_PREFIX}:{scope}:{limit.period_s}:{ident}")
    count, remaining_s = increment(key, limit.period_s)
    return None if count <= limit.count else remaining_s


class Busy(RuntimeError):
    """Every slot stayed taken for the whole wait."""


@contextlib.contextmanager
def concurrency_slot(name: str, *, slots: int, lease_s: int, wait_s: float) -> Iterator[None]:
    """Hold one of ``slots`` slots named ``name`` on this machine (all its processes together) while the
    block runs; waits up to ``wait_s`` for one, then raises ``Busy``. A slot is a cache key with an expiry
    (``lease_s``), so a process killed while holding one frees it when the lease runs out."""
    token = secrets.token_hex(8)
    host = socket.gethostname()
    keys = [f"slot:{name}:{host}:{index}" for index in range(max(1, slots))]
    deadline = time.monotonic() + wait_s
    while True:
        held = next((key for key in keys if cache.add(key, token, timeout=lease_s)), None)
        if held is not None:
            break
        if time.monotonic() >= deadline:
            raise Busy(f"all {len(keys)} {name} slots are taken")
        time.sleep(0.05)
    try:
        yield
    finally:
        if cache.get(held) == token:
            cache.delete(held)


def too_many_requests(retry_after_s: float) -> HttpResponse:
    wait_s = max(1, math.ceil(retry_after_s))
    response = HttpResponse(
        f"Too many requests from your address. Try again in {wait_s} s.",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(wait_s)
    response["Cache-Control"] = "private, no-store"
    return response


def rate_limited(scope: str, rate: Callable[[], str | None]) -> Callable[[Callable[..., HttpResponse]], Any]:
    """Decorate a view: more than ``rate()`` requests per client address in ``scope`` are answered 429."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            retry_after_s = check(scope, client_ip(request), rate())
            if retry_after_s is not None:
                return too_many_requests(retry_after_s)
            return view(request, *args, **kwargs)

        return limited

    return decorate


class AddressRateThrottle(BaseThrottle):
    """The same limit for REST views: subclasses name ``scope`` and return their rate from ``get_rate``."""

    scope = ""

    def get_rate(self) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        self.retry_after_s = check(self.scope, client_ip(request), self.get_rate())
        return self.retry_after_s is None

    def wait(self) -> float | None:
        return self.retry_after_s
