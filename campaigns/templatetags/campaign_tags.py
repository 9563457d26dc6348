"""Template tags for Django stores that take part in campaign tracking.

``{% campaign_event "add_to_cart" product %}`` on the page shown after a product was added to the cart,
``{% campaign_event "purchase" product order_id=order.number %}`` on the order confirmation page: each
records the event for a shopper who came from a campaign (nothing otherwise) and outputs nothing.
``{% campaign_token %}`` outputs the shopper's attribution token (empty when none) for pages that report
events from JavaScript to ``/c/events/``. The ``percent`` filter formats report rates (0.0523 → "5.23 %").
"""

from __future__ import annotations

from typing import Any

from django import template

from campaigns.conf import app_setting
from campaigns.services import record_conversion

register = template.Library()


@register.simple_tag(takes_context=True)
def campaign_event(context: template.Context, kind: str, product: Any = None, order_id: str = "") -> str:
    request = context.get("request")
    if request is not None:
        record_conversion(request=request, kind=kind, product=product, order_id=str(order_id))
    return ""


@register.simple_tag(takes_context=True)
def campaign_token(context: template.Context) -> str:
    request = context.get("request")
    return request.COOKIES.get(app_setting("ATTRIBUTION_COOKIE"), "") if request is not None else ""


@register.filter
def percent(value: float | None, sign: str = "") -> str:
    """0.0523 → "5.23 %"; with ``"+"``, positive values get a sign (for lifts)."""
    if value is None:
        return "—"
    return f"{value * 100:{'+' if sign == '+' else ''}.2f} %"
