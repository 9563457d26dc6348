"""Cached storefront listings are stale once a product, an image or a category is saved (after commit)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from shop import storefront_cache
from shop.models import Category, Product, ProductImage


def catalog_changed(sender: Any, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        transaction.on_commit(storefront_cache.bump_version)


for _model in (Product, ProductImage, Category):
    post_save.connect(catalog_changed, sender=_model, dispatch_uid=f"shop.stale.{_model._meta.label}")
