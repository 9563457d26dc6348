"""Records a "view" when a storefront product page is served, so that the shop needs no code of ours.

Add ``"recommendations.middleware.ProductViewMiddleware"`` to ``MIDDLEWARE`` after the session and
authentication middleware, and name the product page URL(s) in ``RECOMMENDATIONS["PRODUCT_PAGE_URL_NAMES"]``
(``{"shop:product": "pk"}``: URL name -> the URL kwarg that holds the product's primary key). No JavaScript:
the view is recorded server-side when the page is rendered with status 200.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from recommendations.conf import app_setting
from recommendations.interactions import record_interaction, shopper_for_request

logger = logging.getLogger(__name__)


class ProductViewMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method == "GET" and response.status_code == 200:
            self.record_view(request)
        return response

    def record_view(self, request: HttpRequest) -> None:
        match = getattr(request, "resolver_match", None)
        if match is None:
            return
        pk_kwarg = app_setting("PRODUCT_PAGE_URL_NAMES").get(match.view_name)
        if pk_kwarg is None or pk_kwarg not in match.kwargs:
            return
        shopper = shopper_for_request(request)
        assert shopper is not None
        try:
            record_interaction(
                shopper=shopper,
                product=int(match.kwargs[pk_kwarg]),
                kind="view",
                source="product-page",
                dedup_window_s=app_setting("VIEW_DEDUP_S"),
            )
        except (DatabaseError, ValueError):
            # A lost view must never break the product page the shopper asked for.
            logger.exception("could not record a product view")
