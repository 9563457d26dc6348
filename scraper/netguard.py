"""Which addresses the scraper may connect to, and the connection layer that enforces it.

Catalog URLs come from merchants, feeds and redirects, so a host is refused when any of its addresses
is loopback, private, link-local (cloud metadata at 169.254.169.254), multicast, reserved,
unspecified, shared (100.64.0.0/10), IPv6 unique-local or link-local, or an IPv4 address of those
kinds embedded in IPv6 (mapped, 6to4, Teredo, NAT64) — unless the host is allow-listed.

DNS rebinding: ``GuardedTransport`` resolves the name again when it connects, checks those addresses
and connects to a checked address (TLS still verifies the certificate against the host name), so a
name that answered with a public address to the client's check and with 127.0.0.1 a moment later
still cannot reach 127.0.0.1. Environment proxies are ignored for the same reason.

Nothing here knows about fetch policies or retries; ``scraper.http`` turns these errors into
``FetchRefused`` / ``FetchConnectionError``.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import httpcore
import httpx

_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The host is, or resolves to, an address the scraper must not connect to."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class HostUnresolvable(Exception):
    """DNS gave no address; ``retryable`` when the resolver said "try again" (EAI_AGAIN)."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(reason)


def address_refusal(address: str) -> str | None:
    """Why connecting to this IP address is refused, or ``None`` when it is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip.teredo:
            embedded = ip.teredo[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = address_refusal(str(embedded))
            if reason:
                return f"{reason} inside the IPv6 address {ip}"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (the range of cloud metadata services)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


DEFAULT_DNS_TIMEOUT_S = 5.0
# getaddrinfo() has no timeout and cannot be interrupted: it runs in these threads, and the caller waits
# at most its deadline. A lookup that hangs keeps its thread until the system resolver gives up; with
# every thread stuck, new lookups wait in the queue and time out too, so nothing waits past its deadline.
_RESOLVER_THREADS = 16
_resolver: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): threads do not survive a fork
_resolver_lock = threading.Lock()
_request = threading.local()  # the deadline of the request this thread is sending, if any


@contextlib.contextmanager
def request_deadline(monotonic_s: float) -> Iterator[None]:
    """Every network step this thread takes inside the block (DNS, connect, TLS, each read and write)
    ends by ``monotonic_s``: a server that trickles one byte a second cannot outlast it."""
    previous = getattr(_request, "deadline", None)
    _request.deadline = monotonic_s if previous is None else min(previous, monotonic_s)
    try:
        yield
    finally:
        _request.deadline = previous


def _within_deadline(timeout_s: float | None) -> float | None:
    deadline = getattr(_request, "deadline", None)
    if deadline is None:
        return timeout_s
    left_s = deadline - time.monotonic()
    return left_s if timeout_s is None else min(timeout_s, left_s)


def _resolver_pool() -> ThreadPoolExecutor:
    global _resolver
    with _resolver_lock:
        if _resolver is None or _resolver[0] != os.getpid():  # first use, or a forked worker process
            _resolver = (os.getpid(), ThreadPoolExecutor(_RESOLVER_THREADS, thread_name_prefix="scraper-dns"))
        return _resolver[1]


def resolve(host: str, port: int, *, timeout_s: float = DEFAULT_DNS_TIMEOUT_S) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo`` with a deadline (``timeout_s``, and the request's deadline if sooner);
    ``HostUnresolvable`` (retryable) when it passes."""
    wait_s = _within_deadline(timeout_s)
    if wait_s is not None and wait_s <= 0:
        raise HostUnresolvable(f"no time left to resolve host {host!r}", retryable=True)
    future = _resolver_pool().submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return future.result(timeout=wait_s)
    except FutureTimeout:
        future.cancel()  # still queued: it never runs
        raise HostUnresolvable(
            f"DNS lookup for {host!r} did not answer within {wait_s:g} s", retryable=True
        ) from None
    except socket.gaierror as error:
        raise HostUnresolvable(
            f"cannot resolve host {host!r}: {error.strerror}", retryable=error.errno == socket.EAI_AGAIN
        ) from None


def resolve_public_addresses(host: str, port: int, *, timeout_s: float = DEFAULT_DNS_TIMEOUT_S) -> list[str]:
    """The host's addresses, all checked. Raises ``AddressRefused`` if any is not public (a name that
    resolves to both a public and a private address is as suspicious as one that resolves only to the
    latter) and ``HostUnresolvable`` when DNS has no answer, or none within ``timeout_s``."""
    infos = resolve(host, port, timeout_s=timeout_s)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        reason = address_refusal(address)
        if reason and host == address:
            raise AddressRefused(f"{host} is {reason}")
        if reason:
            raise AddressRefused(f"{host} resolves to {address}, {reason}")
    return addresses


def peer_refusal(response: httpx.Response) -> str | None:
    """Why the address a response actually came from is refused, or ``None`` (also when unknown)."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return None
    reason = address_refusal(str(peer[0]))
    return f"connected to {peer[0]}, {reason}" if reason else None


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the request's deadline (``request_deadline``):
    the read timeout alone bounds only the silence between two bytes."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    @staticmethod
    def _timeout(timeout: float | None, error: type[Exception]) -> float | None:
        left_s = _within_deadline(timeout)
        if left_s is not None and left_s <= 0:
            raise error("the request's deadline passed")
        return left_s

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        timeout = self._timeout(timeout, httpcore.ConnectTimeout)
        stream = self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedNetworkBackend(httpcore.SyncBackend):
    """Resolves (with a deadline), checks and connects to a checked address in one step, so the address
    that was checked is the address connected to, whatever DNS answers the second time."""

    def __init__(self, allow_hosts: frozenset[str], dns_timeout_s: float = DEFAULT_DNS_TIMEOUT_S) -> None:
        self._allow_hosts = allow_hosts
        self._dns_timeout_s = dns_timeout_s

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        name = host.strip("[]")
        if name.lower() in self._allow_hosts:  # tests: no address checks, but the same DNS deadline
            infos = resolve(name, port, timeout_s=self._dns_timeout_s)
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        else:
            addresses = resolve_public_addresses(name, port, timeout_s=self._dns_timeout_s)
        last_error: Exception | None = None
        for address in addresses:
            connect_timeout = _within_deadline(timeout)
            if connect_timeout is not None and connect_timeout <= 0:
                raise httpcore.ConnectTimeout("the request's deadline passed")
            try:
                stream = super().connect_tcp(address, port, connect_timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                last_error = error
                continue
            return _DeadlineStream(stream)
        raise last_error or httpcore.ConnectError(f"no address to connect to for {host}")


@functools.cache
def _ssl_context(verify_tls: bool) -> ssl.SSLContext:
    """Loading the CA bundle takes a noticeable fraction of a second; one context serves every client."""
    return httpx.create_ssl_context(verify=verify_tls, trust_env=False)


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose every TCP connection goes through the address checks above."""

    def __init__(
        self,
        *,
        allow_hosts: frozenset[str],
        verify_tls: bool,
        max_connections: int = 64,
        dns_timeout_s: float = DEFAULT_DNS_TIMEOUT_S,
    ) -> None:
        ssl_context = _ssl_context(verify_tls)
        super().__init__(verify=ssl_context, trust_env=False, retries=0)
        # httpx builds its connection pool without a way to choose the network backend; this swaps the
        # pool for one that connects through the guarded backend. httpx is pinned in requirements.txt.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=16,
            keepalive_expiry=5.0,
            retries=0,
            network_backend=_GuardedNetworkBackend(allow_hosts, dns_timeout_s),
        )


__all__ = [
    "AddressRefused",
    "GuardedTransport",
    "HostUnresolvable",
    "address_refusal",
    "peer_refusal",
    "request_deadline",
    "resolve",
    "resolve_public_addresses",
]
