"""Lookalike in a django-oscar store: the catalog description and a writer for catalog imports.

In the store's settings (docs/plugin.md, "django-oscar")::

    from lookalike.oscar import OSCAR_CATALOG
    LOOKALIKE = {**OSCAR_CATALOG, "BASE_TEMPLATE": "lookalike_base.html"}
    SCRAPER = {"CATALOG_WRITER": "lookalike.oscar_writer.OscarWriter"}

Oscar keeps prices and stock on partner ``StockRecord`` rows, of the product itself (standalone) or of its
child variants (parent products), and categories as a many-to-many. The roles below read them in SQL:
a product's price is that of its cheapest stock record with stock (else of its cheapest record), it is in
stock when any of its records (or its variants' records) has stock, and its store is the partner of that
record. Variants themselves are not recommended (``parent``). Importing this module (from settings.py)
imports neither Oscar nor the plugin's apps: the expressions are built once the apps are loaded. The
writer of catalog imports is ``lookalike.oscar_writer.OscarWriter``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models
from django.db.models.functions import Coalesce


def _stock_records_of_product(*, available: bool) -> models.QuerySet:
    """Stock records of the outer product or of its variants, cheapest first (only those with stock to sell
    when ``available``)."""
    stock_record = apps.get_model("partner", "StockRecord")
    records = stock_record._default_manager.filter(
        models.Q(product=models.OuterRef("pk")) | models.Q(product__parent=models.OuterRef("pk"))
    )
    if available:
        records = records.filter(num_in_stock__gt=Coalesce(models.F("num_allocated"), 0))
    return records.order_by("price", "pk")


def _cheapest(column: str, output_field: models.Field) -> Coalesce:
    """``column`` of the cheapest record with stock, else of the cheapest record (a sold-out product still
    has a price and a store, as Oscar's product page shows)."""
    return Coalesce(
        models.Subquery(_stock_records_of_product(available=True).values(column)[:1]),
        models.Subquery(_stock_records_of_product(available=False).values(column)[:1]),
        output_field=output_field,
    )


def oscar_price() -> Coalesce:
    return _cheapest("price", models.DecimalField())


def oscar_currency() -> Coalesce:
    return _cheapest("price_currency", models.CharField())


def oscar_store() -> Coalesce:
    return _cheapest("partner_id", models.IntegerField())


def oscar_in_stock() -> models.Exists:
    return models.Exists(_stock_records_of_product(available=True))


OSCAR_CATALOG: dict[str, Any] = {
    "PRODUCT_MODEL": "catalogue.Product",
    "IMAGE_MODEL": "catalogue.ProductImage",
    "STORE_MODEL": "partner.Partner",
    "CATEGORY_MODEL": "catalogue.Category",
    "PRODUCT_FIELDS": {
        "title": "title",
        "description": "description",
        "price": oscar_price,
        "currency": oscar_currency,
        "in_stock": oscar_in_stock,
        "category": "categories",
        "store": oscar_store,
        "parent": "parent",
        # The partner's SKU is the imported product's id (OscarWriter); upc stays the shop's own.
        "external_id": "stockrecords__partner_sku",
    },
    "IMAGE_FIELDS": {"product": "product", "image": "original", "position": "display_order"},
    "STORE_FIELDS": {"name": "name"},
    # Oscar's categories are a django-treebeard materialised path tree.
    "CATEGORY_FIELDS": {"name": "name", "path": "path"},
}
