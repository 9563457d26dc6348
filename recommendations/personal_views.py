"""Storefront pages shaped by the shopper: /for-you/ and the preference game. They work without JavaScript.

Every form is a plain POST with a CSRF token that redirects back (post/redirect/get), so reloading a page
never records anything twice.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from lookalike.catalog import product_model, product_url
from lookalike.conf import base_template
from recommendations import interactions, personalisation, profiles
from recommendations.conf import app_setting
from recommendations.ratelimit import rate_limited
from recommendations.selectors import ScoredProduct, product_cards

FEEDBACK_KINDS = ("like", "dislike")


def _bad_request(message: str) -> HttpResponse:
    """A 400 in plain text: the message may quote the request's own parameters, which must never be read as
    HTML on the shop's (and the admin's) origin."""
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


def _strategy(request: HttpRequest) -> str | None:
    """The ``?strategy=`` of the request (None: the setting); ValueError when it names no strategy."""
    strategy = request.GET.get("strategy") or request.POST.get("strategy") or None
    if strategy is not None and strategy not in profiles.STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}: use one of {', '.join(profiles.STRATEGIES)}.")
    return strategy


def _with_strategy(url: str, strategy: str | None) -> str:
    return f"{url}?strategy={strategy}" if strategy else url


def _cards(page: personalisation.PersonalPage) -> list[dict[str, Any]]:
    cards = product_cards([ScoredProduct(product=product, score=0.0) for product in page.products])
    return [{"card": card, "role": page.role(card.product.pk)} for card in cards]


@rate_limited("personal", lambda: app_setting("PERSONAL_RATE"))
@require_http_methods(["GET", "POST"])
def for_you(request: HttpRequest) -> HttpResponse:
    """GET: a fresh page of products (exploit + explore), remembered as shown.

    POST ``restart``: forget them, so that the catalog can be shown again.
    """
    try:
        strategy = _strategy(request)
    except ValueError as error:
        return _bad_request(str(error))
    shopper = interactions.shopper_for_request(request)
    assert shopper is not None
    if request.method == "POST":
        if "restart" in request.POST:
            interactions.forget_shown(session_key=shopper.session_key, page=personalisation.FOR_YOU_PAGE)
        return HttpResponseRedirect(_with_strategy(reverse("recommendations:for-you"), strategy))
    page = personalisation.for_you_page(shopper=shopper, strategy=strategy)
    interactions.record_shown(
        session_key=shopper.session_key,
        page=personalisation.FOR_YOU_PAGE,
        product_ids=[product.pk for product in page.products],
        round=interactions.next_round_number(
            session_key=shopper.session_key, page=personalisation.FOR_YOU_PAGE
        ),
    )
    return render(
        request,
        "recommendations/for_you.html",
        {
            "page": page,
            "items": _cards(page),
            "strategy": strategy or "",
            "strategies": profiles.STRATEGIES,
            "source": personalisation.FOR_YOU_PAGE,
            "base_template": base_template(),
        },
    )


@rate_limited("personal", lambda: app_setting("PERSONAL_RATE"))
@require_POST
def feedback(request: HttpRequest) -> HttpResponse:
    """A like or dislike button (a form: ``product``, ``kind``, ``next``); redirects back to ``next``."""
    kind = request.POST.get("kind")
    product_id = request.POST.get("product", "")
    if kind not in FEEDBACK_KINDS or not product_id.isdigit():
        return _bad_request("Expected kind=like|dislike and a product id.")
    product = get_object_or_404(product_model()._default_manager.all(), pk=int(product_id))
    shopper = interactions.shopper_for_request(request)
    assert shopper is not None
    interactions.record_interaction(
        shopper=shopper,
        product=product,
        kind=kind,
        source=request.POST.get("source", "").replace("\x00", "")[:64],
    )
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("recommendations:for-you")
    return HttpResponseRedirect(target)


@rate_limited("personal", lambda: app_setting("PERSONAL_RATE"))
@require_GET
def go(request: HttpRequest, product_id: int) -> HttpResponse:
    """A recommended product's link: records the click, then redirects to the product page."""
    product = get_object_or_404(product_model()._default_manager.all(), pk=product_id)
    shopper = interactions.shopper_for_request(request)
    assert shopper is not None
    interactions.record_interaction(
        shopper=shopper,
        product=product,
        kind="click",
        source=request.GET.get("source", "").replace("\x00", "")[:64],
    )
    return HttpResponseRedirect(product_url(product))


@rate_limited("personal", lambda: app_setting("PERSONAL_RATE"))
@require_http_methods(["GET", "POST"])
def game(request: HttpRequest) -> HttpResponse:
    """The preference game: "pick your favourite of these" in rounds that never repeat a product.

    GET shows the current round (making one when the last was answered). POST ``pick`` + ``round`` records
    the pick as a like; POST ``restart`` starts a new game.
    """
    try:
        strategy = _strategy(request)
    except ValueError as error:
        return _bad_request(str(error))
    shopper = interactions.shopper_for_request(request)
    assert shopper is not None
    here = _with_strategy(reverse("recommendations:game"), strategy)
    state = personalisation.game_state(shopper=shopper)
    if request.method == "POST":
        if "restart" in request.POST:
            interactions.forget_shown(session_key=shopper.session_key, page=personalisation.GAME_PAGE)
        else:
            _record_pick(request, shopper=shopper, state=state)
        return HttpResponseRedirect(here)

    reason = ""
    if not state.awaiting_pick:
        page = personalisation.next_game_round(shopper=shopper, state=state, strategy=strategy)
        if page.products:
            interactions.record_shown(
                session_key=shopper.session_key,
                page=personalisation.GAME_PAGE,
                product_ids=[product.pk for product in page.products],
                round=(state.current_round or 0) + 1,
            )
            state = personalisation.game_state(shopper=shopper)
        else:
            reason = page.reason  # everything shown (or no embeddings yet): no round to play
    number = state.current_round if not reason else None
    ids = state.rounds.get(number, []) if number is not None else []
    products = {p.pk: p for p in product_model()._default_manager.filter(pk__in=ids)}
    cards = product_cards([ScoredProduct(product=products[pk], score=0.0) for pk in ids if pk in products])
    picks = [pk for _, pk in sorted(state.picks.items())]
    picked = {p.pk: p for p in product_model()._default_manager.filter(pk__in=picks)}
    return render(
        request,
        "recommendations/game.html",
        {
            "round": number,
            "cards": cards,
            "picks": [picked[pk] for pk in picks if pk in picked],
            "base_template": base_template(),
            "strategy": strategy or "",
            "strategies": profiles.STRATEGIES,
            "reason": reason,
        },
    )


def _record_pick(
    request: HttpRequest, *, shopper: interactions.Shopper, state: personalisation.GameState
) -> None:
    """Only a product of the round on screen counts; a stale form (back button, double submit) is ignored."""
    product_id, number = request.POST.get("pick", ""), request.POST.get("round", "")
    if not (product_id.isdigit() and number.isdigit()):
        return
    if not state.awaiting_pick or int(number) != state.current_round:
        return
    if int(product_id) not in state.rounds[state.current_round]:
        return
    interactions.record_interaction(
        shopper=shopper, product=int(product_id), kind="like", source=personalisation.GAME_SOURCE
    )
