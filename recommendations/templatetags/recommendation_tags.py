"""Template tags of the recommendation widgets: ``{% load recommendation_tags %}``."""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from recommendations import cache, matching, selectors
from recommendations.conf import app_setting

register = template.Library()


@register.simple_tag
def similar_products(
    product: Any,
    limit: int | None = None,
    diversity: float = 0.0,
    title: str | None = None,
    match: str = matching.SIMILAR,
    store: str | None = None,
) -> str:
    """``{% similar_products product limit=8 %}``: the products that look most like ``product``;
    ``match="colourways"``: the same style in other colours. Each card says why it matched (``card.match``).

    ``store="any"`` recommends from every store, ``store="same"`` from the product's own; by default the
    ``SIMILAR_SAME_STORE`` setting decides. Renders ``recommendations/similar_products.html`` (override it in
    your templates folder); renders nothing when there is nothing to show. The HTML is cached per product
    until the catalog changes (``recommendations.cache``).
    """
    if match not in matching.MATCH_MODES:
        raise template.TemplateSyntaxError(
            f"similar_products: match must be one of {', '.join(matching.MATCH_MODES)}, got {match!r}"
        )
    if store not in (None, "same", "any"):
        raise template.TemplateSyntaxError(f'similar_products: store must be "same" or "any", not {store!r}')
    limit = limit or app_setting("SIMILAR_LIMIT")
    title = title or ("Other colours" if match == matching.COLOURWAYS else "Similar products")
    same_store = bool(app_setting("SIMILAR_SAME_STORE")) if store is None else store == "same"

    def render() -> str:
        result = selectors.find_similar_products(
            product=product,
            limit=limit,
            diversity=float(diversity),
            match=match,
            explain=True,
            same_store=same_store,
        )
        context = {
            "product": product,
            "cards": selectors.product_cards(result.items),
            "source": result.source,
            "match": match,
            "title": title,
        }
        return render_to_string("recommendations/similar_products.html", context)

    key = cache.entry_key(
        "similar-widget", getattr(product, "pk", product), limit, float(diversity), title, match, same_store
    )
    # The template escapes what it prints; the cache hands back its output as the str it stored.
    return mark_safe(cache.cached(key, render))


@register.inclusion_tag("recommendations/_recommended_for_you.html", takes_context=True)
def recommended_for_you(
    context: template.Context, limit: int = 8, strategy: str | None = None, title: str | None = None
) -> dict[str, Any]:
    """``{% recommended_for_you limit=8 %}``: for the current shopper, the neighbours of what they bought,
    or (without purchases) the products nearest to what they browsed; nothing for a new visitor.

    Needs the ``request`` context processor. Renders ``recommendations/_recommended_for_you.html``.
    """
    from recommendations import interactions, personalisation

    request = context.get("request")
    shopper = interactions.shopper_for_request(request, create=False) if request is not None else None
    result = personalisation.recommended_for_you(shopper=shopper, limit=int(limit), strategy=strategy)
    default_title = (
        "Inspired by your purchases" if result.basis == personalisation.PURCHASES else "Recommended for you"
    )
    return {
        "cards": selectors.product_cards(result.items),
        "basis": result.basis,
        "title": title or default_title,
    }
