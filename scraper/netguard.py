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

import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable
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


def resolve_public_addresses(host: str, port: int) -> list[str]:
    """The host's addresses, all checked. Raises ``AddressRefused`` if any is not public (a name that
    resolves to both a public and a private address is as suspicious as one that resolves only to the
    latter) and ``HostUnresolvable`` when DNS has no answer."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise HostUnresolvable(
            f"cannot resolve host {host!r}: {error.strerror}", retryable=error.errno == socket.EAI_AGAIN
        ) from None
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


class _GuardedNetworkBackend(httpcore.SyncBackend):
    """Resolves, checks and connects to a checked address in one step, so the address that was checked
    is the address connected to, whatever DNS answers the second time."""

    def __init__(self, allow_hosts: frozenset[str]) -> None:
        self._allow_hosts = allow_hosts

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if host.lower().strip("[]") in self._allow_hosts:
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        last_error: Exception | None = None
        for address in resolve_public_addresses(host.strip("[]"), port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                last_error = error
        raise last_error or httpcore.ConnectError(f"no address to connect to for {host}")


@functools.cache
def _ssl_context(verify_tls: bool) -> ssl.SSLContext:
    """Loading the CA bundle takes a noticeable fraction of a second; one context serves every client."""
    return httpx.create_ssl_context(verify=verify_tls, trust_env=False)


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose every TCP connection goes through the address checks above."""

    def __init__(self, *, allow_hosts: frozenset[str], verify_tls: bool, max_connections: int = 64) -> None:
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
            network_backend=_GuardedNetworkBackend(allow_hosts),
        )


__all__ = [
    "AddressRefused",
    "GuardedTransport",
    "HostUnresolvable",
    "address_refusal",
    "peer_refusal",
    "resolve_public_addresses",
]
