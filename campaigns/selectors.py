"""Reads: the products of a landing page, campaign reports and recommended-URL exports.

The catalog is reached only through ``lookalike.catalog`` and the visual ranking only through
``recommendations.selectors.products_near_vector``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection, models

from campaigns import stats
from campaigns.models import Campaign, CampaignEvent, Creative
from campaigns.tracking import CONTROL, FALLBACK, VISUAL
from lookalike import catalog
from recommendations import matching
from recommendations.models import EmbeddingSpace
from recommendations.selectors import ProductFilter, products_near_vector


@dataclass(frozen=True)
class LandingItem:
    """What a landing page shows for one product."""

    product_id: int
    product: Any = field(repr=False, compare=False)
    title: str
    image_url: str
    price: Decimal | None
    currency: str
    score: float | None  # cosine similarity to the creative; None for pins and control items
    pinned: bool = False
    match: str = ""  # why it matched the creative, in a word (recommendations.matching)

    @property
    def url(self) -> str:
        """The product page (the landing page links through the click counter instead)."""
        return catalog.product_url(self.product)


def active_space() -> EmbeddingSpace | None:
    return EmbeddingSpace.objects.active().only("pk", "dimensions").first()


def landing_creative(*, slug: str, creative_slug: str | None = None) -> Creative | None:
    """The creative of a landing page with its campaign and ``active_space_id``, in one query.

    Without ``creative_slug``: the campaign's first creative. The vector and descriptor are left out (only a
    cache miss of a visual-match page needs them).
    """
    active = EmbeddingSpace.objects.active().values("pk")[:1]
    creatives = (
        Creative.objects.select_related("campaign")
        .defer("vector", "descriptor")
        .filter(campaign__slug=slug)
        .annotate(active_space_id=models.Subquery(active))
        .order_by("position", "pk")
    )
    if creative_slug:
        creatives = creatives.filter(slug=creative_slug)
    return creatives.first()


def campaign_creative(*, campaign: Campaign, creative_id: int) -> Creative | None:
    """One creative of the campaign with ``active_space_id`` (without its vector), or None."""
    active = EmbeddingSpace.objects.active().values("pk")[:1]
    return (
        Creative.objects.defer("vector", "descriptor")
        .filter(pk=creative_id, campaign=campaign)
        .annotate(active_space_id=models.Subquery(active))
        .first()
    )


def category_subtree_ids(category_ids: Sequence[int]) -> list[int]:
    """The categories and, where the category model has a materialised path, all below them."""
    return catalog.category_subtree_ids(category_ids)


def campaign_filter(
    campaign: Campaign,
    *,
    category_ids: Sequence[int] | None = None,
    exclude_ids: frozenset[int] = frozenset(),
) -> ProductFilter:
    """The campaign's product filter; ``category_ids`` replaces the campaign's own categories."""
    if category_ids is None:
        category_ids = category_subtree_ids([c.pk for c in campaign.categories.all()])
    excluded = frozenset(campaign.excluded_products.values_list("pk", flat=True))
    return ProductFilter(
        in_stock_only=campaign.in_stock_only,
        category_ids=tuple(category_ids),
        min_price=campaign.min_price,
        max_price=campaign.max_price,
        store_ids=(campaign.store_id,) if campaign.store_id else (),
        exclude_product_ids=excluded | exclude_ids,
    )


def _filtered_products(filters: ProductFilter) -> models.QuerySet:
    return catalog.products().filter(filters.product_q())


def creative_vector(creative: Creative) -> np.ndarray:
    return np.asarray(creative.vector, dtype=np.float32)


def landing_items(
    *, campaign: Campaign, creative: Creative, variant: str, space: EmbeddingSpace | None
) -> list[LandingItem]:
    """The products of one landing page, in order.

    visual: pinned products first (when in stock, if the campaign is in-stock only), then the products
    nearest to the creative under the campaign's filters. control: the category listing or the picked
    products. fallback (the creative has no vector yet): the filtered listing in the catalog's order.
    Excluded products never appear.
    """
    limit = campaign.product_count
    base = campaign_filter(campaign)
    scores: dict[int, float] = {}
    labels: dict[int, str] = {}
    pinned: list[int] = []
    if variant == VISUAL:
        if space is None or not creative.is_ready_for(space.pk):
            raise ValueError("the creative has no vector in the active space")
        pin_ids = list(campaign.pins.values_list("product_id", flat=True))
        if pin_ids:
            pin_filter = ProductFilter(
                in_stock_only=campaign.in_stock_only, exclude_product_ids=base.exclude_product_ids
            )
            allowed = set(_filtered_products(pin_filter).filter(pk__in=pin_ids).values_list("pk", flat=True))
            pinned = [pk for pk in pin_ids if pk in allowed][:limit]
        near = []
        if len(pinned) < limit:
            filters = dataclasses.replace(base, exclude_product_ids=base.exclude_product_ids | set(pinned))
            near = _near_creative(
                campaign=campaign, creative=creative, limit=limit - len(pinned), filters=filters, space=space
            )
        scores = {row.product.pk: row.score for row in near}
        labels = {row.product.pk: row.match for row in near}
        ids = pinned + [row.product.pk for row in near]
        products = {row.product.pk: row.product for row in near}
    elif variant == CONTROL:
        ids = control_product_ids(campaign=campaign, filters=base, limit=limit)
        products = {}
    elif variant == FALLBACK:
        ids = list(_filtered_products(base).values_list("pk", flat=True)[:limit])
        products = {}
    else:
        raise ValueError(f"unknown variant {variant!r}")
    missing = [pk for pk in ids if pk not in products]
    if missing:
        products.update(catalog.products(read=("title", "price", "currency")).in_bulk(missing))
    images = primary_image_urls(list(products))
    items = []
    for pk in ids:
        product = products.get(pk)
        if product is None:
            continue
        items.append(
            LandingItem(
                product_id=pk,
                product=product,
                title=str(catalog.role_value(product, "title", "") or product),
                image_url=images.get(pk, ""),
                price=catalog.role_value(product, "price"),
                currency=str(catalog.role_value(product, "currency", "") or ""),
                score=scores.get(pk),
                pinned=pk in pinned,
                match=labels.get(pk, ""),
            )
        )
    return items


def _near_creative(
    *, campaign: Campaign, creative: Creative, limit: int, filters: ProductFilter, space: EmbeddingSpace
) -> list[Any]:
    """The products nearest to the creative, each with its word (same colour / same pattern): the campaign's
    match mode picks "similar" or "other colours" than the ad's, where the space stores product colours to
    compare the ad's with."""
    vector = creative_vector(creative)
    query = creative_descriptor(creative) if matching.has_descriptors(space) else None
    if campaign.match == Campaign.Match.COLOURWAYS:
        return matching.other_colours_near_vector(
            vector=vector, query_descriptor=query, limit=limit, filters=filters, space=space
        ).items
    near = products_near_vector(vector=vector, limit=limit, filters=filters, space=space)
    if query is None:
        return near
    return matching.label_items(near, query_descriptor=query, space=space)


def creative_descriptor(creative: Creative) -> np.ndarray | None:
    """The colour + pattern descriptor of the creative's image: stored when it was embedded (read here, on a
    page's cache miss), else made from its file (creatives embedded before descriptors were stored); None
    without a readable file."""
    if creative.descriptor is not None:
        return np.asarray(creative.descriptor, dtype=np.float32)
    if not creative.image:
        return None
    try:
        with creative.image.open("rb") as file:
            return matching.describe_photo(file.read())
    except (OSError, ValueError):
        return None


def control_product_ids(*, campaign: Campaign, filters: ProductFilter, limit: int) -> list[int]:
    """The control group's products: a picked list (minus excluded, sold-out ones) or a category listing."""
    if campaign.control_kind == Campaign.ControlKind.PRODUCTS:
        picked = list(campaign.control_picks.values_list("product_id", flat=True))
        pick_filter = ProductFilter(
            in_stock_only=campaign.in_stock_only, exclude_product_ids=filters.exclude_product_ids
        )
        allowed = set(_filtered_products(pick_filter).filter(pk__in=picked).values_list("pk", flat=True))
        return [pk for pk in picked if pk in allowed][:limit]
    if campaign.control_category_id:
        filters = campaign_filter(
            campaign,
            category_ids=category_subtree_ids([campaign.control_category_id]),
            exclude_ids=filters.exclude_product_ids,
        )
    # The catalog model's own ordering: what the store's category page shows.
    return list(_filtered_products(filters).values_list("pk", flat=True)[:limit])


def primary_image_urls(product_ids: Sequence[int]) -> dict[int, str]:
    """The URL of each product's first image, in one query."""
    return {pk: file.url for pk, file in catalog.primary_images(list(product_ids)).items()}


def available_count(product_ids: Sequence[int], *, in_stock_only: bool) -> int:
    """How many of these products still exist (and are in stock, when asked and the catalog tracks stock)."""
    qs = catalog.products().filter(pk__in=list(product_ids))
    in_stock = catalog.role_lookup("in_stock")
    if in_stock_only and in_stock:
        qs = qs.filter(**{in_stock: True})
    return qs.count()


# --- Reports ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    creative_id: int | None
    creative_name: str
    variant: str
    visitors: int  # sessions with at least one impression
    impressions: int
    clicks: int
    ctr: stats.Proportion  # visitors who clicked a product / visitors
    add_to_cart: stats.Proportion  # visitors who added to cart / visitors
    conversion: stats.Proportion  # visitors who bought / visitors

    @property
    def rates(self) -> tuple[stats.Proportion, stats.Proportion, stats.Proportion]:
        return self.ctr, self.add_to_cart, self.conversion


@dataclass(frozen=True)
class LiftRow:
    creative_name: str  # "All creatives" for the campaign as a whole
    metric: str
    visual: stats.Proportion
    control: stats.Proportion
    lift: stats.Lift | None


@dataclass(frozen=True)
class CampaignReport:
    campaign: Campaign
    rows: list[ReportRow]
    lifts: list[LiftRow]


# One row per (creative, variant, session), then summed: a visitor counts once per outcome. Outcomes of
# sessions without an impression (cookies refused between page and click) are left out of the rates.
_REPORT_SQL = """
WITH sessions AS (
    SELECT creative_id, variant, session_key,
           COUNT(*) FILTER (WHERE kind = 'impression') AS impressions,
           COUNT(*) FILTER (WHERE kind = 'click') AS clicks,
           BOOL_OR(kind = 'click') AS clicked,
           BOOL_OR(kind = 'add_to_cart') AS carted,
           BOOL_OR(kind = 'purchase') AS bought
    FROM {table}
    WHERE campaign_id = %s
    GROUP BY creative_id, variant, session_key
)
SELECT creative_id, variant,
       COUNT(*) FILTER (WHERE impressions > 0),
       COALESCE(SUM(impressions), 0),
       COALESCE(SUM(clicks), 0),
       COUNT(*) FILTER (WHERE impressions > 0 AND clicked),
       COUNT(*) FILTER (WHERE impressions > 0 AND carted),
       COUNT(*) FILTER (WHERE impressions > 0 AND bought)
FROM sessions
GROUP BY creative_id, variant
ORDER BY creative_id NULLS LAST, variant
"""

_METRICS = (("ctr", "CTR"), ("add_to_cart", "Add-to-cart rate"), ("conversion", "Conversion rate"))


def campaign_report(*, campaign: Campaign) -> CampaignReport:
    """Per creative and variant: visitors, impressions, clicks and the three rates with 95 % intervals,
    plus the lift of visual match over control per creative and for the whole campaign."""
    with connection.cursor() as cursor:
        cursor.execute(_REPORT_SQL.format(table=CampaignEvent._meta.db_table), [campaign.pk])
        raw = cursor.fetchall()
    names = {c.pk: str(c) for c in campaign.creatives.all()}
    rows = [
        ReportRow(
            creative_id=creative_id,
            creative_name=names.get(creative_id, "(deleted creative)"),
            variant=variant,
            visitors=visitors,
            impressions=int(impressions),
            clicks=int(clicks),
            ctr=stats.proportion(clickers, visitors),
            add_to_cart=stats.proportion(carters, visitors),
            conversion=stats.proportion(buyers, visitors),
        )
        for creative_id, variant, visitors, impressions, clicks, clickers, carters, buyers in raw
    ]
    lifts: list[LiftRow] = []
    by_creative: dict[int | None, dict[str, ReportRow]] = {}
    for row in rows:
        by_creative.setdefault(row.creative_id, {})[row.variant] = row
    groups: list[tuple[str, list[ReportRow], list[ReportRow]]] = [
        (variants[VISUAL].creative_name, [variants[VISUAL]], [variants[CONTROL]])
        for variants in by_creative.values()
        if VISUAL in variants and CONTROL in variants
    ]
    if len(groups) > 1:
        groups.append(
            (
                "All creatives",
                [r for r in rows if r.variant == VISUAL],
                [r for r in rows if r.variant == CONTROL],
            )
        )
    for name, visual_rows, control_rows in groups:
        for attribute, label in _METRICS:
            visual = _pooled(visual_rows, attribute)
            control = _pooled(control_rows, attribute)
            lift = stats.rate_ratio_lift(visual.successes, visual.trials, control.successes, control.trials)
            lifts.append(LiftRow(creative_name=name, metric=label, visual=visual, control=control, lift=lift))
    return CampaignReport(campaign=campaign, rows=rows, lifts=lifts)


def _pooled(rows: list[ReportRow], attribute: str) -> stats.Proportion:
    successes = sum(getattr(row, attribute).successes for row in rows)
    trials = sum(getattr(row, attribute).trials for row in rows)
    return stats.proportion(successes, trials)


# --- Exports ------------------------------------------------------------------------------------------


def recommended_product_rows(*, campaigns: Sequence[Campaign]) -> Iterator[dict[str, Any]]:
    """For each creative: its visual-match products with URLs and scores (the bulk export).

    A creative without a vector in the active space yields one row saying so.
    """
    space = active_space()
    for campaign in campaigns:
        for creative in campaign.creatives.all():
            base = {
                "campaign": campaign.slug,
                "creative": creative.slug,
                "landing_url": creative.get_absolute_url(),
            }
            if space is None or not creative.is_ready_for(space.pk):
                empty = dict.fromkeys(["rank", "product_id", "title", "product_url", "score"], "")
                yield {**base, **empty, "note": creative.embedding_error or "creative not embedded yet"}
                continue
            items = landing_items(campaign=campaign, creative=creative, variant=VISUAL, space=space)
            for rank, item in enumerate(items, start=1):
                yield {
                    **base,
                    "rank": rank,
                    "product_id": item.product_id,
                    "title": item.title,
                    "product_url": item.url,
                    "score": "" if item.score is None else f"{item.score:.4f}",
                    "note": "pinned" if item.pinned else "",
                }
