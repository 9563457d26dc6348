"""Reads: products ranked by visual similarity.

Everything here queries the active embedding space only, so vectors of different encoders never meet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import models
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, HalfVectorField

from recommendations.catalog import product_field, product_model
from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace, ProductEmbedding


@dataclass(frozen=True)
class ProductFilter:
    """Restrictions on which products may be recommended. Empty means "no restriction"."""

    in_stock_only: bool = True
    category_ids: Sequence[int] = ()  # only these categories (and not their sub-categories)
    exclude_category_ids: Sequence[int] = ()
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    store_ids: Sequence[int] = ()
    brands: Sequence[str] = ()
    exclude_product_ids: frozenset[int] = field(default_factory=frozenset)

    def product_q(self, prefix: str = "") -> models.Q:
        """The filter as a Q object on the product model (``prefix`` e.g. "product__" from a related model)."""
        q = models.Q()

        def name(role: str) -> str | None:
            field_name = product_field(role)
            return f"{prefix}{field_name}" if field_name else None

        if self.in_stock_only and name("in_stock"):
            q &= models.Q(**{name("in_stock"): True})
        if self.category_ids and name("category"):
            q &= models.Q(**{f"{name('category')}__in": list(self.category_ids)})
        if self.exclude_category_ids and name("category"):
            q &= ~models.Q(**{f"{name('category')}__in": list(self.exclude_category_ids)})
        if self.min_price is not None and name("price"):
            q &= models.Q(**{f"{name('price')}__gte": self.min_price})
        if self.max_price is not None and name("price"):
            q &= models.Q(**{f"{name('price')}__lte": self.max_price})
        if self.store_ids and name("store"):
            q &= models.Q(**{f"{name('store')}__in": list(self.store_ids)})
        if self.brands and name("brand"):
            q &= models.Q(**{f"{name('brand')}__in": list(self.brands)})
        if self.exclude_product_ids:
            q &= ~models.Q(**{f"{prefix}pk__in": list(self.exclude_product_ids)})
        return q


@dataclass(frozen=True)
class ScoredProduct:
    product: Any
    score: float  # cosine similarity, 1 = identical


def active_space() -> EmbeddingSpace | None:
    return EmbeddingSpace.objects.active().first()


def product_vectors(product_ids: Iterable[int], *, space: EmbeddingSpace | None = None) -> dict[int, np.ndarray]:
    """The query vectors of these products in the active space (products without one are left out)."""
    space = space or active_space()
    if space is None:
        return {}
    rows = ProductEmbedding.objects.filter(space=space, product_id__in=list(product_ids)).values_list(
        "product_id", "vector"
    )
    return {pk: np.asarray(vector, dtype=np.float32) for pk, vector in rows}


def products_near_vector(
    *,
    vector: np.ndarray,
    limit: int | None = None,
    filters: ProductFilter | None = None,
    space: EmbeddingSpace | None = None,
) -> list[ScoredProduct]:
    """The products whose vectors are nearest (cosine) to ``vector``, best first, one row per product."""
    space = space or active_space()
    if space is None:
        return []
    limit = limit or app_setting("SIMILAR_LIMIT")
    filters = filters or ProductFilter()
    distance = CosineDistance(Cast("vector", HalfVectorField(dimensions=space.dimensions)), np.asarray(vector))
    rows = list(
        ProductEmbedding.objects.filter(space=space)
        .filter(filters.product_q(prefix="product__"))
        .annotate(distance=distance)
        .order_by("distance")
        .values_list("product_id", "distance")[:limit]
    )
    products = product_model()._default_manager.in_bulk([pk for pk, _ in rows])
    return [ScoredProduct(product=products[pk], score=1.0 - float(d)) for pk, d in rows if pk in products]


def similar_products(
    *, product: Any, limit: int | None = None, filters: ProductFilter | None = None, diversity: float = 0.0
) -> list[ScoredProduct]:
    """Products that look like ``product``, excluding the product itself."""
    space = active_space()
    vectors = product_vectors([product.pk], space=space)
    if product.pk not in vectors:
        return []
    filters = filters or ProductFilter()
    filters = ProductFilter(**{**filters.__dict__, "exclude_product_ids": filters.exclude_product_ids | {product.pk}})
    return products_near_vector(vector=vectors[product.pk], limit=limit, filters=filters, space=space)
