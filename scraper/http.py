"""The one way the scraper reaches the network: a guarded, polite HTTP client on top of httpx.

Catalog URLs come from merchants, feeds and redirects, so every request is treated as hostile input:

* Only ``http``/``https``, no credentials in URLs. The host is resolved and refused when any of its
  addresses is loopback, private, link-local (cloud metadata at 169.254.169.254), multicast,
  reserved, unspecified, shared (100.64.0.0/10), IPv6 unique-local or link-local, or an IPv4 address
  of those kinds embedded in IPv6 (mapped, 6to4, Teredo, NAT64) — unless the host is in
  ``FetchPolicy.allow_hosts``. The check runs on every redirect hop (redirects are followed here,
  not by httpx), before anything connects.
* DNS rebinding: the connection layer (``scraper.netguard``) resolves the name again, checks those
  addresses, and connects to a checked address; the peer address of the connection is checked once
  more when the response arrives. Environment proxies are ignored for the same reason.
* Bodies are streamed and capped per kind (Content-Length first, then while reading); each attempt
  also has an overall deadline, so a server trickling bytes cannot hold a worker.
* ``kind="image"`` responses must be images by their magic bytes, within ``max_image_pixels``, and
  (with ``decode_images``) fully decodable, which catches truncated files.
* Retries with exponential backoff and jitter on 5xx, 429, timeouts and connection errors, honouring
  ``Retry-After`` (seconds or an HTTP date). A ``Retry-After`` longer than ``max_retry_after_s`` is not
  slept through: the ``FetchHTTPError`` carries it (``retry_after_s``) so a Celery task can retry later.
* robots.txt is fetched once per origin and cached (``scraper.robots``: in process, and in Redis when a
  client is given).
  404 and other 4xx mean "allow all"; 429, 5xx and network failures mean "disallow all" for
  ``robots_error_ttl_s`` (Google's rule: a site whose robots.txt errors may be in trouble).
  ``Crawl-delay`` raises the throttle's interval for that domain. Matching uses ``urllib.robotparser``:
  prefix rules, first match wins, no ``*``/``$`` wildcards.

Every failure is a ``FetchError`` with a ``reason`` to show in the import log and a ``retryable`` flag.
"""

from __future__ import annotations

import email.utils
import random
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from .netguard import (
    AddressRefused,
    GuardedTransport,
    HostUnresolvable,
    address_refusal,
    peer_refusal,
    request_deadline,
    resolve_public_addresses,
)
from .parsers import detect_feed_format
from .parsers.image_folder import ImageInfo, ImageRejected, ImageTooLarge, inspect_image, sniff_image_type
from .robots import RobotsCache, RobotsRules

if TYPE_CHECKING:
    from .ratelimit import SlotGrant

FetchKind = Literal["page", "feed", "image", "robots"]

_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_ACCEPT = {
    "page": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
    "feed": "application/json,application/xml,text/xml,text/csv,text/tab-separated-values,*/*;q=0.5",
    "image": "image/avif,image/webp,image/jpeg,image/png,image/*;q=0.8",
    "robots": "text/plain,*/*;q=0.5",
}


@dataclass(frozen=True)
class FetchPolicy:
    """Every limit of the client. Defaults suit crawling shops; tests shorten the timeouts."""

    user_agent: str = "LookalikeBot/1.0 (+https://example.com/lookalike-bot)"
    robots_user_agent: str = "LookalikeBot"  # the token robots.txt groups are matched against
    connect_timeout_s: float = 5.0
    dns_timeout_s: float = 5.0  # a name lookup that hangs fails after this (getaddrinfo has no timeout)
    read_timeout_s: float = 20.0  # longest silence between two reads
    total_timeout_s: float = 90.0  # whole attempt, headers and body
    max_page_bytes: int = 5 * 1024**2
    max_feed_bytes: int = 50 * 1024**2
    max_image_bytes: int = 20 * 1024**2
    max_robots_bytes: int = 500 * 1024  # Google reads the first 500 KiB
    max_image_pixels: int = 40_000_000
    decode_images: bool = True
    max_redirects: int = 5
    max_retries: int = 4  # attempts = 1 + max_retries
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    allow_hosts: frozenset[str] = frozenset()  # hosts exempt from the address checks, e.g. {"127.0.0.1"}
    respect_robots: bool = True
    robots_ttl_s: float = 3600.0
    robots_error_ttl_s: float = 600.0
    max_crawl_delay_s: float = 30.0  # a larger Crawl-delay is capped, not obeyed
    verify_tls: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_hosts", frozenset(host.lower() for host in self.allow_hosts))

    def max_bytes(self, kind: FetchKind) -> int:
        return {
            "page": self.max_page_bytes,
            "feed": self.max_feed_bytes,
            "image": self.max_image_bytes,
            "robots": self.max_robots_bytes,
        }[kind]


# --- Errors ------------------------------------------------------------------------------------------


class FetchError(Exception):
    """A URL could not be fetched. ``reason`` is written for the import log; ``retryable`` says
    whether trying again later (a Celery retry) may succeed."""

    default_retryable = False

    def __init__(self, reason: str, *, url: str = "", retryable: bool | None = None) -> None:
        self.reason = reason
        self.url = url
        self.retryable = self.default_retryable if retryable is None else retryable
        self.attempts = 0
        super().__init__(f"{url}: {reason}" if url else reason)


class FetchRefused(FetchError):
    """Refused before connecting: unsafe scheme or address, or robots.txt says no."""


class FetchTooLarge(FetchError):
    """The body (or the image's pixel count) is over the limit for its kind."""


class FetchTimeout(FetchError):
    default_retryable = True


class FetchConnectionError(FetchError):
    default_retryable = True


class FetchUnexpectedContent(FetchError):
    """The body is not what the kind promised, e.g. an HTML error page served as image/jpeg."""


class FetchHTTPError(FetchError):
    """The final response was not 2xx (after retries, for 5xx and 429)."""

    def __init__(
        self, reason: str, *, url: str = "", status: int, retry_after_s: float | None = None
    ) -> None:
        super().__init__(reason, url=url, retryable=status == 429 or status >= 500)
        self.status = status
        self.retry_after_s = retry_after_s


# --- Results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    url: str  # as asked for
    final_url: str  # after redirects
    status: int
    headers: httpx.Headers
    content: bytes
    content_type: str  # as declared by the server, lower case, without parameters
    elapsed_s: float  # from the first attempt to the end of the body, sleeps included
    attempts: int = 1  # requests sent, redirect hops and retries included
    waits_s: tuple[float, ...] = ()  # the sleeps before retries, in order
    redirects: tuple[str, ...] = ()  # the URLs redirected to, in order
    image: ImageInfo | None = None  # kind="image": what the check found (type and size)

    @property
    def sniffed_type(self) -> str | None:
        return sniff_content_type(self.content)

    def text(self) -> str:
        """The body decoded with the charset the server declared, else UTF-8; bad bytes become U+FFFD."""
        encoding = "utf-8"
        for parameter in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                encoding = value.strip().strip('"')
        try:
            return self.content.decode(encoding, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")


def sniff_content_type(content: bytes) -> str | None:
    """What the bytes are, from their first bytes: an image type, ``application/gzip``,
    ``application/zip``, ``application/json`` (Shopify), ``application/xml`` (sitemap, RSS, Atom),
    ``text/html``, ``text/csv`` or ``text/tab-separated-values``; ``None`` when unknown."""
    image_type = sniff_image_type(content)
    if image_type:
        return image_type
    if content.startswith(b"\x1f\x8b"):
        return "application/gzip"
    fmt = detect_feed_format(content)
    if fmt == "merchant":
        return (
            "application/xml"
            if content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")
            else ("text/tab-separated-values")
        )
    return {
        "image_zip": "application/zip",
        "shopify": "application/json",
        "sitemap": "application/xml",
        "product_page": "text/html",
        "csv": "text/csv",
    }.get(fmt or "")


# --- The client --------------------------------------------------------------------------------------


class Throttle(Protocol):
    def slot(
        self, domain: str, *, min_interval_s: float | None = None
    ) -> AbstractContextManager[SlotGrant]: ...


@dataclass
class _Attempts:
    count: int = 0
    waits_s: list[float] = field(default_factory=list)


@dataclass
class _RawResponse:
    status: int
    headers: httpx.Headers
    content: bytes


class GuardedClient:
    """Fetch catalog URLs safely and politely; see the module docstring for every rule.

    ``throttle`` (a ``scraper.ratelimit.DomainThrottle``) spaces requests per domain across workers;
    ``robots_redis`` (a Redis client) shares robots.txt between workers. The client is thread-safe
    and keeps connections alive; close it (or use it as a context manager) when done.
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        throttle: Throttle | None = None,
        *,
        robots_redis: Any | None = None,
        robots_key_prefix: str = "lookalike:robots",
    ) -> None:
        self.policy = policy or FetchPolicy()
        self.throttle = throttle
        self._robots = RobotsCache(robots_redis, robots_key_prefix)
        self._http = httpx.Client(
            transport=GuardedTransport(
                allow_hosts=self.policy.allow_hosts,
                verify_tls=self.policy.verify_tls,
                dns_timeout_s=self.policy.dns_timeout_s,
            ),
            headers={"User-Agent": self.policy.user_agent},
            timeout=httpx.Timeout(
                connect=self.policy.connect_timeout_s,
                read=self.policy.read_timeout_s,
                write=self.policy.read_timeout_s,
                pool=self.policy.connect_timeout_s,
            ),
            follow_redirects=False,
            trust_env=False,
        )

    def __enter__(self) -> GuardedClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def check_url(self, url: str) -> None:
        """Raise ``FetchRefused`` if the URL may not be fetched (scheme, credentials, address).

        Resolves the host name; use it to validate a URL a merchant typed before queuing an import.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise FetchRefused(
                f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'}", url=url
            )
        if parts.username or parts.password:
            raise FetchRefused("URLs with credentials are not fetched", url=url)
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchRefused("the URL has no host", url=url)
        if host in self.policy.allow_hosts:
            return
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise FetchRefused("the URL has an invalid port", url=url) from None
        try:
            resolve_public_addresses(host, port, timeout_s=self.policy.dns_timeout_s)
        except AddressRefused as error:
            raise FetchRefused(error.reason, url=url) from None
        except HostUnresolvable as error:
            raise FetchConnectionError(error.reason, url=url, retryable=error.retryable) from None

    def get(self, url: str, *, kind: FetchKind) -> FetchResult:
        """GET ``url`` and return its body; redirects are followed (each hop checked).

        Raises ``FetchRefused``, ``FetchTooLarge``, ``FetchTimeout``, ``FetchConnectionError``,
        ``FetchUnexpectedContent`` or ``FetchHTTPError``; ``error.attempts`` says how many requests
        were sent.
        """
        started = time.monotonic()
        attempts = _Attempts()
        redirects: list[str] = []
        current = url
        try:
            for _hop in range(self.policy.max_redirects + 1):
                self.check_url(current)
                crawl_delay_s = self._check_robots(current) if kind != "robots" else None
                response = self._get_with_retries(
                    current, kind=kind, attempts=attempts, crawl_delay_s=crawl_delay_s
                )
                location = response.headers.get("location")
                if response.status in _REDIRECT_STATUSES and location:
                    current = urljoin(current, location.strip())
                    redirects.append(current)
                    continue
                if not 200 <= response.status < 300:
                    raise FetchHTTPError(
                        f"HTTP {response.status}",
                        url=current,
                        status=response.status,
                        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
                    )
                image = (
                    self._check_image(response.content, response.headers, url=current)
                    if kind == "image"
                    else None
                )
                return FetchResult(
                    url=url,
                    final_url=current,
                    status=response.status,
                    headers=response.headers,
                    content=response.content,
                    content_type=response.headers.get("content-type", "").split(";")[0].strip().lower(),
                    elapsed_s=time.monotonic() - started,
                    image=image,
                    attempts=attempts.count,
                    waits_s=tuple(attempts.waits_s),
                    redirects=tuple(redirects),
                )
            raise FetchError(f"more than {self.policy.max_redirects} redirects", url=url)
        except FetchError as error:
            error.attempts = attempts.count
            error.url = error.url or current
            raise

    # -- one hop, with retries

    def _get_with_retries(
        self, url: str, *, kind: FetchKind, attempts: _Attempts, crawl_delay_s: float | None
    ) -> _RawResponse:
        retries_left = self.policy.max_retries
        backoff_step = 0
        while True:
            attempts.count += 1
            try:
                response = self._send(url, kind=kind, crawl_delay_s=crawl_delay_s)
            except (FetchTimeout, FetchConnectionError) as error:
                if not error.retryable or retries_left <= 0:
                    raise
                retries_left -= 1
                backoff_step += 1
                self._sleep(self._backoff_s(backoff_step), attempts)
                continue
            if response.status != 429 and response.status < 500:
                return response
            retry_after_s = parse_retry_after(response.headers.get("retry-after"))
            if retries_left <= 0 or (
                retry_after_s is not None and retry_after_s > self.policy.max_retry_after_s
            ):
                return response  # the caller turns it into a FetchHTTPError carrying retry_after_s
            retries_left -= 1
            backoff_step += 1
            self._sleep(
                retry_after_s if retry_after_s is not None else self._backoff_s(backoff_step), attempts
            )

    def _backoff_s(self, step: int) -> float:
        ceiling_s = min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2 ** (step - 1))
        # "Equal jitter": at least half the backoff, so retries still spread out, never all at once.
        return ceiling_s / 2 + random.uniform(0, ceiling_s / 2)

    @staticmethod
    def _sleep(wait_s: float, attempts: _Attempts) -> None:
        attempts.waits_s.append(wait_s)
        time.sleep(wait_s)

    def _send(self, url: str, *, kind: FetchKind, crawl_delay_s: float | None) -> _RawResponse:
        host = (urlsplit(url).hostname or "").lower()
        slot = self.throttle.slot(host, min_interval_s=crawl_delay_s) if self.throttle else nullcontext()
        with slot:
            deadline = time.monotonic() + self.policy.total_timeout_s
            with request_deadline(deadline):
                return self._send_by(url, kind=kind, host=host, deadline=deadline)

    def _send_by(self, url: str, *, kind: FetchKind, host: str, deadline: float) -> _RawResponse:
        """One attempt; every network step of it (DNS, connect, each read) ends by ``deadline``."""
        try:
            request = self._http.build_request("GET", url, headers={"Accept": _ACCEPT[kind]})
            response = self._http.send(request, stream=True)
        except httpx.TimeoutException as error:
            if time.monotonic() >= deadline:
                raise self._deadline_error(url, "the response's headers") from None
            raise FetchTimeout(f"timed out ({type(error).__name__})", url=url) from None
        except httpx.TransportError as error:
            raise FetchConnectionError(
                f"connection failed: {error or type(error).__name__}", url=url
            ) from None
        except httpx.HTTPError as error:
            raise FetchError(f"request failed: {error}", url=url) from None
        except AddressRefused as error:  # the connection layer's own check (DNS answered differently)
            raise FetchRefused(error.reason, url=url) from None
        except HostUnresolvable as error:
            raise FetchConnectionError(error.reason, url=url, retryable=error.retryable) from None
        try:
            self._check_peer(response, host=host, url=url)
            content = b""
            if 200 <= response.status_code < 300:
                content = self._read_body(response, url=url, kind=kind, deadline=deadline)
            return _RawResponse(status=response.status_code, headers=response.headers, content=content)
        finally:
            response.close()

    def _check_peer(self, response: httpx.Response, *, host: str, url: str) -> None:
        if host in self.policy.allow_hosts:
            return
        reason = peer_refusal(response)
        if reason:
            raise FetchRefused(reason, url=url)

    def _read_body(self, response: httpx.Response, *, url: str, kind: FetchKind, deadline: float) -> bytes:
        max_bytes = self.policy.max_bytes(kind)
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchTooLarge(
                f"Content-Length is {int(declared):,} bytes; the {kind} limit is {max_bytes:,} bytes", url=url
            )
        chunks: list[bytes] = []
        size_bytes = 0
        try:
            # Chunks as they arrive (a chunk size would buffer a trickling body out of sight of the
            # deadline); the connection itself also stops reading at the deadline.
            for chunk in response.iter_bytes():
                size_bytes += len(chunk)
                if size_bytes > max_bytes:
                    raise FetchTooLarge(f"body is over the {kind} limit of {max_bytes:,} bytes", url=url)
                if time.monotonic() > deadline:
                    raise self._deadline_error(url, f"the body ({size_bytes:,} bytes read)")
                chunks.append(chunk)
        except httpx.TimeoutException:
            if time.monotonic() >= deadline:
                raise self._deadline_error(url, f"the body ({size_bytes:,} bytes read)") from None
            raise FetchTimeout(f"timed out reading the body ({size_bytes:,} bytes read)", url=url) from None
        except httpx.DecodingError as error:
            raise FetchError(f"undecodable Content-Encoding: {error}", url=url) from None
        except httpx.TransportError as error:
            raise FetchConnectionError(f"connection lost reading the body: {error}", url=url) from None
        return b"".join(chunks)

    def _deadline_error(self, url: str, what: str) -> FetchTimeout:
        # Not retried at once: a server that took the whole attempt would take the next one too.
        return FetchTimeout(
            f"{what} not complete after {self.policy.total_timeout_s:g} s (SCRAPER['TOTAL_TIMEOUT_S'])",
            url=url,
            retryable=False,
        )

    def _check_image(self, content: bytes, headers: httpx.Headers, *, url: str) -> ImageInfo:
        if sniff_image_type(content) is None:
            declared = headers.get("content-type", "no Content-Type")
            raise FetchUnexpectedContent(
                f"expected an image but the body is not one (served as {declared}, "
                f"starts with {content[:16]!r})",
                url=url,
            )
        try:
            return inspect_image(
                content, max_pixels=self.policy.max_image_pixels, decode=self.policy.decode_images
            )
        except ImageTooLarge as error:
            raise FetchTooLarge(str(error), url=url) from None
        except ImageRejected as error:
            raise FetchUnexpectedContent(str(error), url=url) from None

    # -- robots.txt

    def _check_robots(self, url: str) -> float | None:
        """Raise ``FetchRefused`` when robots.txt disallows ``url``; return its Crawl-delay, if any."""
        if not self.policy.respect_robots:
            return None
        parts = urlsplit(url)
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        rules = self._robots.get(origin) or self._load_robots(origin)
        agent = self.policy.robots_user_agent
        if not rules.allows(url, agent):
            if rules.verdict == "disallow_all":
                raise FetchRefused(
                    f"robots.txt of {origin} is unavailable ({rules.note}); not crawling", url=url
                )
            raise FetchRefused(f"robots.txt disallows {parts.path or '/'} for {agent}", url=url)
        delay_s = rules.crawl_delay_s(agent)
        return min(delay_s, self.policy.max_crawl_delay_s) if delay_s else None

    def _load_robots(self, origin: str) -> RobotsRules:
        ttl_s = self.policy.robots_ttl_s
        try:
            result = self.get(f"{origin}/robots.txt", kind="robots")
            rules = RobotsRules(verdict="rules", body=result.text())
        except FetchHTTPError as error:
            if error.status == 429 or error.status >= 500:
                rules = RobotsRules(verdict="disallow_all", note=f"HTTP {error.status}")
                ttl_s = self.policy.robots_error_ttl_s
            else:
                rules = RobotsRules(verdict="allow_all", note=f"HTTP {error.status}")
        except (FetchTimeout, FetchConnectionError) as error:
            rules = RobotsRules(verdict="disallow_all", note=error.reason)
            ttl_s = self.policy.robots_error_ttl_s
        except FetchRefused:
            raise  # the origin itself is refused; the caller reports that, not robots.txt
        except FetchError as error:
            # Too large, too many redirects: Google treats these like a missing robots.txt.
            rules = RobotsRules(verdict="allow_all", note=error.reason)
        self._robots.put(origin, rules, ttl_s)
        return rules


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date; ``None`` if absent
    or unreadable. A date in the past means 0."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


__all__ = [
    "FetchConnectionError",
    "FetchError",
    "FetchHTTPError",
    "FetchKind",
    "FetchPolicy",
    "FetchRefused",
    "FetchResult",
    "FetchTimeout",
    "FetchTooLarge",
    "FetchUnexpectedContent",
    "GuardedClient",
    "Throttle",
    "address_refusal",
    "parse_retry_after",
    "resolve_public_addresses",
    "sniff_content_type",
]
