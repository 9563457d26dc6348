"""Catalog imports into a django-oscar store (docs/plugin.md)::

SCRAPER = {"CATALOG_WRITER": "lookalike.oscar_writer.OscarWriter"}  # with LOOKALIKE from lookalike.oscar
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models

from scraper.catalog import CatalogWriter, Outcome
from scraper.parsers import ScrapedProduct


class OscarWriter(CatalogWriter):
    """Writes imported products the Oscar way: a standalone ``Product`` of the product class
    ``SCRAPER_OSCAR_PRODUCT_CLASS`` (default "Imported"), a ``StockRecord`` of the import's partner holding
    the price, currency and stock (``partner_sku`` is the source's product id), categories from the
    source's path (``create_from_breadcrumbs``) and ``ProductImage`` rows in the source's order.

    Rows are saved one by one through ``Model.save()`` (Oscar fills slugs there) rather than in bulk.
    Oscar's image model has no column for a photo's source URL, so a second import downloads the photos
    again; the catalog has no stock column either, so products a source no longer lists are left as
    they are.
    """

    required_product_roles = ("title",)

    def __init__(self, *, store: models.Model) -> None:
        super().__init__(store=store)
        self.stock_record_model = apps.get_model("partner", "StockRecord")
        self.default_currency = self.default_currency or str(
            getattr(settings, "OSCAR_DEFAULT_CURRENCY", "GBP")
        )
        # Only the product's own text columns are written from the role map; the rest is done below.
        self.p = {role: field for role, field in self.p.items() if role in ("title", "description")}
        self._product_class: Any = None

    @contextlib.contextmanager
    def batched_writes(self) -> Iterator[None]:
        # Every row through Model.save(): Oscar fills slugs there, which bulk_create() would skip.
        yield

    def write_pending(self) -> None:
        return None

    @property
    def product_class(self) -> Any:
        if self._product_class is None:
            model = apps.get_model("catalogue", "ProductClass")
            name = getattr(settings, "SCRAPER_OSCAR_PRODUCT_CLASS", "Imported")
            self._product_class, _ = model._default_manager.get_or_create(
                name=name, defaults={"requires_shipping": True, "track_stock": True}
            )
        return self._product_class

    def existing_products(self, external_ids: list[str]) -> dict[str, models.Model]:
        if not external_ids:
            return {}
        records = self.stock_record_model._default_manager.filter(
            partner=self.store, partner_sku__in=external_ids
        ).select_related("product")
        return {record.partner_sku: record.product for record in records}

    def _upsert(self, record: ScrapedProduct, existing: models.Model | None) -> tuple[Outcome, models.Model]:
        sku_limit = self.stock_record_model._meta.get_field("partner_sku").max_length
        if sku_limit and len(record.external_id) > sku_limit:
            raise ValueError(f"external id is longer than {sku_limit} characters")
        values = self.product_values(record, is_new=existing is None)
        outcome: Outcome = "unchanged"
        if existing is None:
            product = self.product_model(
                structure="standalone", product_class=self.product_class, is_public=True, **values
            )
            product.save()
            outcome = "created"
        else:
            product = existing
            changed = [name for name, value in values.items() if getattr(product, name) != value]
            if changed:
                for name in changed:
                    setattr(product, name, values[name])
                product.save()
                outcome = "updated"
        if self._write_stock_record(product, record) and outcome == "unchanged":
            outcome = "updated"
        categorised = bool(record.category_path) and self._add_category(product, record.category_path)
        if categorised and outcome == "unchanged":
            outcome = "updated"
        return outcome, product

    def _write_stock_record(self, product: Any, record: ScrapedProduct) -> bool:
        stock, created = self.stock_record_model._default_manager.get_or_create(
            product=product, partner=self.store, defaults={"partner_sku": record.external_id}
        )
        wanted: dict[str, Any] = {"partner_sku": record.external_id}
        if record.price is not None:
            wanted["price"] = record.price.quantize(Decimal("0.01"))
            wanted["price_currency"] = (record.currency or self.default_currency).upper()[:12]
        if record.in_stock is not None or created:
            wanted["num_in_stock"] = 0 if record.in_stock is False else max(1, stock.num_in_stock or 0)
        changed = [name for name, value in wanted.items() if getattr(stock, name) != value]
        for name in changed:
            setattr(stock, name, wanted[name])
        if changed:
            stock.save()
        return created or bool(changed)

    def _add_category(self, product: Any, path: list[str]) -> bool:
        from oscar.apps.catalogue.categories import create_from_sequence

        key = tuple(name.strip()[:255] for name in path if name.strip())
        if not key:
            return False
        if key not in self._categories:
            self._categories[key] = create_from_sequence(list(key))[-1].pk
        link = apps.get_model("catalogue", "ProductCategory")
        _, created = link._default_manager.get_or_create(product=product, category_id=self._categories[key])
        return created
