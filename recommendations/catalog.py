"""The narrow interface through which the recommendation apps reach a shop's catalog.

A shop points ``RECOMMENDATIONS_PRODUCT_MODEL`` and ``RECOMMENDATIONS_IMAGE_MODEL`` at its own models
(default: the bundled ``shop.Product`` / ``shop.ProductImage``) and, where its field names differ, maps them
in ``RECOMMENDATIONS["CATALOG_FIELDS"]`` / ``["IMAGE_FIELDS"]``. Nothing else in these apps imports ``shop``.
See docs/plugin.md.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models

from recommendations.conf import app_setting

PRODUCT_MODEL_SETTING = "RECOMMENDATIONS_PRODUCT_MODEL"
IMAGE_MODEL_SETTING = "RECOMMENDATIONS_IMAGE_MODEL"


def product_model_label() -> str:
    return getattr(settings, PRODUCT_MODEL_SETTING, "shop.Product")


def image_model_label() -> str:
    return getattr(settings, IMAGE_MODEL_SETTING, "shop.ProductImage")


def product_model() -> type[models.Model]:
    return apps.get_model(product_model_label(), require_ready=False)


def image_model() -> type[models.Model]:
    return apps.get_model(image_model_label(), require_ready=False)


def product_field(role: str) -> str | None:
    """The product model's field name for a role (title, price, in_stock, category, brand, store, url)."""
    return app_setting("CATALOG_FIELDS").get(role)


def image_field(role: str) -> str | None:
    """The image model's field name for a role (product, image, position, status, failure_reason)."""
    return app_setting("IMAGE_FIELDS").get(role)


def product_value(product: models.Model, role: str, default: Any = None) -> Any:
    name = product_field(role)
    return getattr(product, name, default) if name else default


def product_url(product: models.Model) -> str:
    name = product_field("url")
    if name and getattr(product, name, None):
        return str(getattr(product, name))
    return product.get_absolute_url()  # type: ignore[attr-defined]


def product_image_file(product: models.Model) -> Any:
    """The file of the product's first image, or None (uses a prefetched ``ordered_images`` when present)."""
    primary = getattr(product, "primary_image", None)
    if primary is None:
        product_fk = image_field("product") or "product"
        qs = image_model()._default_manager.filter(**{product_fk: product})
        position = image_field("position")
        primary = qs.order_by(*([position] if position else []), "pk").first()
    return getattr(primary, image_field("image") or "image", None) if primary else None


def has_field(model: type[models.Model], name: str | None) -> bool:
    if not name:
        return False
    try:
        model._meta.get_field(name)
    except Exception:
        return False
    return True
