"""Small tracking rules: who counts, which variant a session sees, which parameters travel, attribution.

No database here. The attribution token is signed with ``SECRET_KEY`` (``django.core.signing``), so a
store can hand it back to the event endpoint without being able to forge one for another campaign.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core import signing

from campaigns.conf import app_setting

VISUAL = "visual"
CONTROL = "control"
FALLBACK = "fallback"
VARIANTS = (VISUAL, CONTROL, FALLBACK)

_TOKEN_SALT = "campaigns.attribution"
_ASSIGNMENT_SALT = "campaigns.assignment"
_SESSION_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_MAX_PARAM_CHARS = 500
_MAX_PARAMS = 20
# Buckets per campaign: the control share is honoured to 0.01 %.
_BUCKETS = 10_000


@functools.cache
def _bot_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def is_bot(user_agent: str | None) -> bool:
    """Crawlers, ad-review fetchers, link previews, headless browsers and scripts; an empty agent too."""
    if not user_agent or not user_agent.strip():
        return True
    return bool(_bot_pattern(app_setting("BOT_USER_AGENT_PATTERN")).search(user_agent))


def new_session_key() -> str:
    """A random anonymous id: 22 URL-safe characters, nothing derived from the shopper."""
    return secrets.token_urlsafe(16)


def valid_session_key(value: str | None) -> str | None:
    return value if value and _SESSION_KEY_PATTERN.match(value) else None


def assignment_bucket(*, campaign_id: int, session_key: str) -> int:
    """A stable number in [0, 10000) for this session in this campaign (independent across campaigns).

    Keyed with SECRET_KEY: a session key is chosen by whoever sends the cookie, and with a public hash one
    could pick keys that all fall into the control group and click for it.
    """
    key = f"{_ASSIGNMENT_SALT}:{settings.SECRET_KEY}".encode()
    digest = hmac.new(key, f"{campaign_id}:{session_key}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def assign_variant(*, campaign_id: int, session_key: str, control_share_pct: int) -> str:
    """ "control" for ``control_share_pct`` % of sessions, else "visual"; a session always gets the same one.

    Deterministic, so nothing is stored: raising the share moves only visual sessions into control.
    """
    if control_share_pct <= 0:
        return VISUAL
    bucket = assignment_bucket(campaign_id=campaign_id, session_key=session_key)
    return CONTROL if bucket < min(control_share_pct, 100) * (_BUCKETS // 100) else VISUAL


def passthrough_params(query: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The UTM parameters and ad click ids of a request, in their order, to carry onto product links."""
    items = query.items() if isinstance(query, Mapping) else query
    click_ids = set(app_setting("CLICK_ID_PARAMS"))
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in items:
        if name in seen or not (name.startswith("utm_") or name in click_ids):
            continue
        if len(name) > 64 or not value or "\x00" in value:  # PostgreSQL stores no NUL characters
            continue
        seen.add(name)
        kept.append((name, str(value)[:_MAX_PARAM_CHARS]))
        if len(kept) >= _MAX_PARAMS:
            break
    return kept


def utm_of(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The utm_* values worth storing with an event (click ids are per-click noise, not stored)."""
    return {name: value[:200] for name, value in params if name.startswith("utm_")}


def append_params(url: str, params: Iterable[tuple[str, str]]) -> str:
    """``url`` with ``params`` merged into its query string (a given name replaces the URL's own)."""
    params = list(params)
    if not params:
        return url
    parts = urlsplit(url)
    names = {name for name, _ in params}
    query = [(n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n not in names] + params
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def is_other_host(url: str, *, host: str) -> bool:
    netloc = urlsplit(url).netloc.lower()
    return bool(netloc) and netloc != host.lower()


@dataclass(frozen=True)
class Attribution:
    """Which campaign, creative and variant a session's later add-to-cart or purchase belongs to."""

    campaign_id: int
    creative_id: int | None
    variant: str
    session_key: str


def make_attribution_token(attribution: Attribution) -> str:
    payload = [attribution.campaign_id, attribution.creative_id, attribution.variant, attribution.session_key]
    return signing.dumps(payload, salt=_TOKEN_SALT, compress=False)


def read_attribution_token(token: str, *, max_age_s: float | None = None) -> Attribution:
    """Raises ``signing.BadSignature`` (``SignatureExpired`` when older than the attribution window)."""
    max_age_s = app_setting("ATTRIBUTION_MAX_AGE_S") if max_age_s is None else max_age_s
    payload = signing.loads(token, salt=_TOKEN_SALT, max_age=timedelta(seconds=max_age_s))
    try:
        campaign_id, creative_id, variant, session_key = payload
        if variant not in VARIANTS or not valid_session_key(session_key):
            raise ValueError(variant)
        return Attribution(
            campaign_id=int(campaign_id),
            creative_id=int(creative_id) if creative_id is not None else None,
            variant=variant,
            session_key=session_key,
        )
    except (TypeError, ValueError):
        raise signing.BadSignature("malformed attribution token") from None


def conversions_key(attribution: Attribution, kind: str) -> str:
    """The counter of ``kind`` events credited to one click's attribution (CAMPAIGNS["MAX_CONVERSIONS"])."""
    raw = f"{attribution.campaign_id}|{attribution.creative_id}|{attribution.session_key}|{kind}"
    return "campaigns:conversions:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def dedup_key(
    *, session_key: str, creative_id: int | None, kind: str, product_id: int | None, extra: str = ""
) -> str:
    """The cache key under which the first of a burst of identical events is remembered."""
    raw = f"{session_key}|{creative_id}|{kind}|{product_id}|{extra}"
    return "campaigns:seen:" + hashlib.sha256(raw.encode()).hexdigest()[:40]
