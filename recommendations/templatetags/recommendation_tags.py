"""Template tags of the recommendation widgets: ``{% load recommendation_tags %}``."""

from __future__ import annotations

from typing import Any

from django import template

from recommendations import selectors
from recommendations.conf import app_setting

register = template.Library()


@register.inclusion_tag("recommendations/similar_products.html")
def similar_products(
    product: Any, limit: int | None = None, diversity: float = 0.0, title: str = "Similar products"
) -> dict[str, Any]:
    """``{% similar_products product limit=8 %}``: the products that look most like ``product``.

    Renders ``recommendations/similar_products.html`` (override it in your templates folder); renders
    nothing when there is nothing to show.
    """
    result = selectors.find_similar_products(
        product=product, limit=limit or app_setting("SIMILAR_LIMIT"), diversity=float(diversity)
    )
    return {
        "product": product,
        "cards": selectors.product_cards(result.items),
        "source": result.source,
        "title": title,
    }
