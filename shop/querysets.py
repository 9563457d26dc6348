"""Chainable filters for the catalog models."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from shop.models import Category, Store


class CategoryQuerySet(models.QuerySet):
    def subtree(self, category: Category) -> CategoryQuerySet:
        """The category and all its descendants (materialised path prefix match: one indexed query)."""
        return self.filter(path__startswith=category.path)


class ProductQuerySet(models.QuerySet):
    def in_stock(self) -> ProductQuerySet:
        return self.filter(in_stock=True)

    def for_store(self, store: Store | int) -> ProductQuerySet:
        return self.filter(store=store)

    def in_category(self, category: Category) -> ProductQuerySet:
        """Products in the category or any of its sub-categories."""
        return self.filter(category__path__startswith=category.path)

    def price_between(
        self, min_price: Decimal | None = None, max_price: Decimal | None = None
    ) -> ProductQuerySet:
        qs = self
        if min_price is not None:
            qs = qs.filter(price__gte=min_price)
        if max_price is not None:
            qs = qs.filter(price__lte=max_price)
        return qs

    def with_primary_image(self) -> ProductQuerySet:
        """Attach the first image in one extra query for the whole page (no N+1)."""
        from shop.models import ProductImage

        return self.prefetch_related(
            models.Prefetch(
                "images", queryset=ProductImage.objects.order_by("position", "pk"), to_attr="ordered_images"
            )
        )


class ProductImageQuerySet(models.QuerySet):
    def stored(self) -> ProductImageQuerySet:
        return self.filter(status="stored")
