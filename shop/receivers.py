"""Cached storefront listings are stale once a product, an image or a category is saved (after commit)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

from lookalike import versioned_cache
from shop import storefront_cache
from shop.models import Category, Product, ProductImage


def catalog_changed(sender: Any, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        versioned_cache.bump_after_commit(storefront_cache.VERSION_KEY)


for _model in (Product, ProductImage, Category):
    post_save.connect(catalog_changed, sender=_model, dispatch_uid=f"shop.stale.{_model._meta.label}")
