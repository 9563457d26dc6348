"""Public campaign URLs: landing pages, the click counter redirect and the conversion event endpoint."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import secrets
from urllib.parse import urlencode

from django.core import signing
from django.core.cache import cache
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt

from campaigns import selectors, services, tracking
from campaigns.conf import app_setting
from campaigns.models import Campaign, CampaignEvent, Creative
from lookalike import versioned_cache
from lookalike.catalog import product_model, product_url
from lookalike.conf import base_template
from recommendations.models import EmbeddingSpace
from recommendations.ratelimit import rate_limited

# Replaced per request with the visit's UTM parameters and click ids, so one cached page serves all visits.
PASSTHROUGH_MARKER = "__lookalike_passthrough__"
MAX_EVENT_BODY_BYTES = 4096
logger = logging.getLogger(__name__)
CONVERSION_KINDS = (CampaignEvent.Kind.ADD_TO_CART, CampaignEvent.Kind.PURCHASE)


def _session_key(request: HttpRequest) -> tuple[str, bool]:
    """The anonymous session key from the first-party cookie, or a new one (True when new)."""
    existing = tracking.valid_session_key(request.COOKIES.get(app_setting("SESSION_COOKIE")))
    return (existing, False) if existing else (tracking.new_session_key(), True)


def _set_session_cookie(response: HttpResponse, request: HttpRequest, session_key: str) -> None:
    response.set_cookie(
        app_setting("SESSION_COOKIE"),
        session_key,
        max_age=app_setting("SESSION_COOKIE_MAX_AGE_S"),
        httponly=True,
        samesite="Lax",
        secure=request.is_secure(),
    )


def _no_store(response: HttpResponse) -> HttpResponse:
    # Every response counts a visit and may set a cookie: shared caches must not answer for us.
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


@rate_limited("landing", lambda: app_setting("LANDING_RATE"))
def landing(request: HttpRequest, slug: str, creative_slug: str | None = None) -> HttpResponse:
    page_keys = LandingKeys(slug=slug, creative_slug=creative_slug)
    creative, prefetched = cached_landing_creative(slug=slug, creative_slug=creative_slug, keys=page_keys)
    campaign = creative.campaign if creative else Campaign.objects.filter(slug=slug).first()
    if campaign is None:
        raise Http404("No such campaign.")
    params = tracking.passthrough_params(request.GET)
    now = timezone.now()
    if campaign.has_ended(now=now):
        fallback = campaign.fallback_url or app_setting("FALLBACK_URL")
        return _no_store(HttpResponseRedirect(tracking.append_params(fallback, params)))
    preview = not campaign.is_running(now=now)
    if preview and not (request.user.is_authenticated and request.user.is_staff):
        raise Http404("No such campaign.")
    if creative is None:
        raise Http404("No such creative.")

    session_key, new_session = _session_key(request)
    space_id = getattr(creative, "active_space_id", None)  # annotated by landing_creative
    variant = tracking.assign_variant(
        campaign_id=campaign.pk, session_key=session_key, control_share_pct=campaign.control_share_pct
    )
    if preview and request.GET.get("variant") in (tracking.VISUAL, tracking.CONTROL):
        variant = request.GET["variant"]
    if not creative.is_ready_for(space_id):
        services.requeue_stale_creative(creative, space_id=space_id)
        if variant == tracking.VISUAL:
            variant = tracking.FALLBACK

    parts = landing_html(
        campaign=campaign,
        creative=creative,
        variant=variant,
        space_id=space_id,
        preview=preview,
        keys=page_keys,
        prefetched=prefetched,
    )
    html = render_landing_page(request, parts)
    query = escape("&" + urlencode(params)) if params else ""
    response = HttpResponse(html.replace(PASSTHROUGH_MARKER, query))
    if not preview and not tracking.is_bot(request.headers.get("User-Agent")):
        services.record_event(
            campaign_id=campaign.pk,
            creative_id=creative.pk,
            variant=variant,
            kind=CampaignEvent.Kind.IMPRESSION,
            session_key=session_key,
            utm=tracking.utm_of(params),
        )
    if new_session:
        _set_session_cookie(response, request, session_key)
    return _no_store(response)


class LandingKeys:
    """Cache keys of one landing URL's pages, one per variant, and of their last stock check.

    Keyed by the URL alone (the slugs, hashed: they come from the request, so the length stays bounded), so
    the pages can be fetched in the creative lookup's round trip, before the campaign is known; each entry
    carries ``landing_validator`` and is only used when that still matches.
    """

    def __init__(self, *, slug: str, creative_slug: str | None) -> None:
        digest = hashlib.blake2b(repr((slug, creative_slug)).encode(), digest_size=16).hexdigest()
        self.creative = f"campaigns:landing-creative:{digest}"
        self._prefix = f"campaigns:landing:{digest}"
        cached_variants = (tracking.VISUAL, tracking.CONTROL)
        self.all = [services.CATALOG_VERSION_KEY] + [
            key for variant in cached_variants for key in (self.page(variant), self.checked(variant))
        ]

    def page(self, variant: str) -> str:
        return f"{self._prefix}:{variant}"

    def checked(self, variant: str) -> str:
        return f"{self._prefix}:{variant}:stock-checked"


def cached_landing_creative(
    *, slug: str, creative_slug: str | None, keys: LandingKeys | None = None
) -> tuple[Creative | None, dict | None]:
    """``selectors.landing_creative`` from the cache while no campaign, creative or space was saved (one Redis
    round trip instead of a query), at most CREATIVE_CACHE_S; with the page entries of ``keys.all`` fetched
    in the same round trip (None when the cache is off)."""
    timeout_s = app_setting("CREATIVE_CACHE_S")
    if not timeout_s:
        return selectors.landing_creative(slug=slug, creative_slug=creative_slug), None
    keys = keys or LandingKeys(slug=slug, creative_slug=creative_slug)
    return versioned_cache.cached_with(
        services.SETUP_VERSION_KEY,
        keys.creative,
        lambda: selectors.landing_creative(slug=slug, creative_slug=creative_slug),
        timeout_s=timeout_s,
        # Unknown slugs are not cached: nothing for a client to fill the cache with.
        keep=lambda creative: creative is not None,
        also=keys.all,
    )


# The cached page is the landing template's blocks, rendered for nobody in particular; the shop's layout
# around them (a basket, a signed-in user, a CSRF token) is rendered per request.
PART_SEPARATOR = "<!--lookalike:part-->"


def render_landing_page(request: HttpRequest, parts: str) -> str:
    title, head, content = parts.split(PART_SEPARATOR)
    shell = _layout_shell(base_template()) if app_setting("CACHE_LAYOUT") else None
    if shell is not None:
        # Rendering the layout was a third of a cached page's time; joining strings costs nothing.
        before_title, before_head, before_content, after = shell
        return "".join((before_title, title, before_head, head, before_content, content, after))
    return render_to_string(
        "campaigns/landing_page.html",
        {
            "base_template": base_template(),
            # Rendered by the landing template, which escapes what it shows; not request data.
            "title_html": mark_safe(title),
            "head_html": mark_safe(head),
            "content_html": mark_safe(content),
        },
        request=request,
    )


@functools.lru_cache(maxsize=8)
def _layout_shell(template_name: str) -> tuple[str, str, str, str] | None:
    """The shop's layout around the three blocks, rendered once per worker without a request (CACHE_LAYOUT):
    the text before the title, before the head block, before the content and after it. None when the layout
    does not show the three blocks once each, in that order (it is then rendered per request)."""
    markers = [f"<!--lookalike:{name}:{secrets.token_hex(8)}-->" for name in ("title", "head", "content")]
    html = render_to_string(
        "campaigns/landing_page.html",
        {
            "base_template": template_name,
            "title_html": mark_safe(markers[0]),
            "head_html": mark_safe(markers[1]),
            "content_html": mark_safe(markers[2]),
        },
    )
    pieces = re.split("|".join(markers), html)
    found = re.findall("|".join(markers), html)
    if found != markers:
        logger.warning(
            "%s does not show the title, head and content blocks in order: not cached.", template_name
        )
        return None
    before_title, before_head, before_content, after = pieces
    return before_title, before_head, before_content, after


def landing_validator(*, campaign: Campaign, creative: Creative, variant: str, space_id: int | None) -> str:
    """Changes with the campaign, the creative (and its vector), the variant and the active space. The
    catalog's stock version is stored with the page beside it."""
    updated_ms = int(creative.updated_at.timestamp() * 1000)
    return f"{campaign.pk}:{campaign.version}:{creative.pk}:{updated_ms}:{variant}:{space_id}"


def landing_html(
    *,
    campaign: Campaign,
    creative: Creative,
    variant: str,
    space_id: int | None,
    preview: bool,
    keys: LandingKeys,
    prefetched: dict | None = None,
) -> str:
    """The page's blocks (``render_landing_page`` puts them in the shop's layout), from the cache when the
    catalog's stock has not changed since and its products are all still available; fallback pages and
    previews are never cached (they change as soon as the creative is embedded, or as the marketer edits).
    ``prefetched``: the entries of ``keys.all``, when the caller has fetched them already."""
    cacheable = not preview and variant != tracking.FALLBACK
    validator = landing_validator(campaign=campaign, creative=creative, variant=variant, space_id=space_id)
    version = None
    if cacheable:
        page_key, checked_key = keys.page(variant), keys.checked(variant)
        found = prefetched if prefetched is not None else cache.get_many(keys.all)
        version = found.get(services.CATALOG_VERSION_KEY)
        cached = found.get(page_key)
        if version is None:
            version = services.catalog_version()
        elif cached is not None and cached[:2] == (validator, version):
            _, _, html, product_ids = cached
            if found.get(checked_key) == (validator, version):
                return html
            # Bulk stock updates send no signals: ad traffic must not land on sold-out or deleted products
            # for longer than STOCK_RECHECK_S. The query was most of a cached page's cost, so all workers
            # share one check per page and window.
            available = selectors.available_count(product_ids, in_stock_only=campaign.in_stock_only)
            if available == len(set(product_ids)):
                recheck_s = app_setting("STOCK_RECHECK_S")
                if recheck_s:
                    cache.set(checked_key, (validator, version), timeout=recheck_s)
                return html
    space = EmbeddingSpace.objects.filter(pk=space_id).first() if space_id else None
    if variant == tracking.VISUAL:
        creative.vector = Creative.objects.values_list("vector", flat=True).get(pk=creative.pk)
    items = selectors.landing_items(campaign=campaign, creative=creative, variant=variant, space=space)
    html = render_to_string(
        "campaigns/landing.html",
        {
            "campaign": campaign,
            "creative": creative,
            "variant": variant,
            "items": items,
            "headline": creative.headline or campaign.headline or campaign.name,
            "preview": preview,
            "passthrough": PASSTHROUGH_MARKER,
            "home_url": app_setting("FALLBACK_URL"),
            "base_template": "campaigns/_landing_parts.html",
        },
    )
    if cacheable:
        value = (validator, version, html, [item.product_id for item in items])
        cache.set(keys.page(variant), value, timeout=app_setting("CACHE_TIMEOUT_S"))
    return html


@rate_limited("click", lambda: app_setting("CLICK_RATE"))
def go(request: HttpRequest, slug: str, product_id: int) -> HttpResponse:
    """Count a product click and redirect to the product page, keeping UTM parameters and click ids."""
    campaign = Campaign.objects.filter(slug=slug).first()
    if campaign is None:
        raise Http404("No such campaign.")
    params = tracking.passthrough_params(request.GET)
    product = product_model()._default_manager.filter(pk=product_id).first()
    if product is None:
        return _no_store(HttpResponseRedirect(tracking.append_params(campaign.get_absolute_url(), params)))
    destination = tracking.append_params(product_url(product), params)

    session_key, new_session = _session_key(request)
    creative_param = request.GET.get("cr", "")
    creative = (
        selectors.campaign_creative(campaign=campaign, creative_id=int(creative_param))
        if creative_param.isdigit()
        else None
    )
    creative_id = creative.pk if creative else None
    # The variant is the session's own (keyed) assignment, as on the landing page, never a URL parameter:
    # the visual variant falls back while the creative has no vector in the active space.
    variant = tracking.assign_variant(
        campaign_id=campaign.pk, session_key=session_key, control_share_pct=campaign.control_share_pct
    )
    space_id = getattr(creative, "active_space_id", None)  # annotated by campaign_creative
    if variant == tracking.VISUAL and creative and not creative.is_ready_for(space_id):
        variant = tracking.FALLBACK
    attribution_cookie = None
    if creative_id and campaign.is_running() and not tracking.is_bot(request.headers.get("User-Agent")):
        services.record_event(
            campaign_id=campaign.pk,
            creative_id=creative_id,
            variant=variant,
            kind=CampaignEvent.Kind.CLICK,
            session_key=session_key,
            product_id=product.pk,
            utm=tracking.utm_of(params),
        )
        attribution_cookie = tracking.make_attribution_token(
            tracking.Attribution(
                campaign_id=campaign.pk, creative_id=creative_id, variant=variant, session_key=session_key
            )
        )
        token_param = app_setting("TOKEN_PARAM")
        if token_param and tracking.is_other_host(destination, host=request.get_host()):
            destination = tracking.append_params(destination, [(token_param, attribution_cookie)])
    response = HttpResponseRedirect(destination)
    if new_session:
        _set_session_cookie(response, request, session_key)
    if attribution_cookie:
        response.set_cookie(
            app_setting("ATTRIBUTION_COOKIE"),
            attribution_cookie,
            max_age=app_setting("ATTRIBUTION_MAX_AGE_S"),
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    return _no_store(response)


def _cors(response: HttpResponse) -> HttpResponse:
    # The token is the credential (no cookies are read), so any store origin may post.
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type"
    response["Access-Control-Max-Age"] = "86400"
    return response


@csrf_exempt
@rate_limited("events", lambda: app_setting("EVENTS_RATE"))
def events(request: HttpRequest) -> HttpResponse:
    """``POST /c/events/`` with JSON ``{"token", "kind", "product_id"?, "order_id"?}``.

    ``kind`` is "add_to_cart" or "purchase".

    The token is the attribution token from the click (the ``lk_token`` URL parameter, or the
    ``{% campaign_token %}`` tag). 201 recorded, 200 duplicate (``recorded: false``), 400 bad request,
    403 bad or expired token. No CSRF: the signed token is the credential and no cookie is used.
    """
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204))
    if request.method != "POST":
        return _cors(HttpResponseNotAllowed(["POST", "OPTIONS"]))
    if len(request.body) > MAX_EVENT_BODY_BYTES:
        return _cors(JsonResponse({"error": "body too large"}, status=413))
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return _cors(JsonResponse({"error": "the body must be JSON"}, status=400))
    if not isinstance(data, dict):
        return _cors(JsonResponse({"error": "the body must be a JSON object"}, status=400))
    kind = data.get("kind")
    if kind not in CONVERSION_KINDS:
        return _cors(JsonResponse({"error": "kind must be add_to_cart or purchase"}, status=400))
    try:
        attribution = tracking.read_attribution_token(str(data.get("token") or ""))
    except signing.SignatureExpired:
        return _cors(JsonResponse({"error": "the token has expired"}, status=403))
    except signing.BadSignature:
        return _cors(JsonResponse({"error": "invalid token"}, status=403))
    product_id = data.get("product_id")
    if product_id is not None:
        if (
            isinstance(product_id, bool)
            or not isinstance(product_id, int | str)
            or not str(product_id).isdigit()
        ):
            return _cors(JsonResponse({"error": "product_id must be an integer"}, status=400))
        product_id = int(product_id)
    try:
        recorded = services.record_attributed_event(
            attribution=attribution,
            kind=kind,
            product_id=product_id,
            order_id=str(data.get("order_id") or ""),
        )
    except services.UnknownProduct:
        return _cors(JsonResponse({"error": "unknown product"}, status=400))
    return _cors(JsonResponse({"recorded": recorded}, status=201 if recorded else 200))
