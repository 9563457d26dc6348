"""The ``LOOKALIKE`` settings dict: which models are the shop's catalog and which fields play which role.

Read by models and migrations at import time (foreign keys to the catalog), so nothing here touches the app
registry; ``lookalike.catalog`` resolves the models. Roles a model lacks are ``None`` (their features are
off). A role is a field name, a related path (``"stockrecords__partner"``), a query expression
(``Exists(...)``, ``Subquery(...)``) or a function of no arguments returning one (called once the apps are
loaded, so it may import the shop's models). See docs/plugin.md.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

SETTING = "LOOKALIKE"

# The bundled ``shop`` app's catalog, used when PRODUCT_MODEL is not set.
DEFAULTS: dict[str, Any] = {
    "PRODUCT_MODEL": "shop.Product",
    "IMAGE_MODEL": "shop.ProductImage",
    "STORE_MODEL": "shop.Store",
    "CATEGORY_MODEL": "shop.Category",
    "PRODUCT_FIELDS": {
        "title": "title",
        "description": "description",
        "price": "price",
        "currency": "currency",
        "in_stock": "in_stock",
        # One foreign key or a many-to-many path; filters match any of a product's categories.
        "category": "category",
        "brand": "brand",
        "store": "store",
        # The product page: None uses get_absolute_url().
        "url": None,
        # The page in the source store an import came from (the scraper's writer).
        "source_url": "url",
        "external_id": "external_id",
        "attributes": "attributes",
        # A variant's parent product: variants are not recommended themselves.
        "parent": None,
        # A design group (style code, item group id): its products are one style's colourways. None reads a
        # design key from the attributes instead (RECOMMENDATIONS["ADAPT_GROUP_ATTRIBUTES"]).
        "group": None,
    },
    "IMAGE_FIELDS": {
        "product": "product",
        "image": "image",
        # Images are ordered by this; the first is the product's primary image.
        "position": "position",
        # Optional: a digest of the file; a change queues the image for embedding again.
        "sha256": "sha256",
        "source_url": "source_url",
        "width": "width",
        "height": "height",
        # Optional: where embedding and download failures are reported back ("stored" / "failed").
        "status": "status",
        "failure_reason": "failure_reason",
    },
    "STORE_FIELDS": {"name": "name", "base_url": "base_url", "currency": "currency"},
    # ``path``: a materialised path, so that a category's subtree is ``path__startswith``.
    "CATEGORY_FIELDS": {"name": "name", "path": "path"},
    # The template the plugin's full pages (for-you page, preference game, search by photo, landing pages)
    # extend. They fill the blocks ``title``, ``head`` and ``content``; map them onto your layout's blocks
    # in a small template of your own (docs/plugin.md).
    "BASE_TEMPLATE": "base.html",
}

MODEL_KEYS = ("PRODUCT_MODEL", "IMAGE_MODEL", "STORE_MODEL", "CATEGORY_MODEL")
FIELD_KEYS = {
    "PRODUCT_FIELDS": "PRODUCT_MODEL",
    "IMAGE_FIELDS": "IMAGE_MODEL",
    "STORE_FIELDS": "STORE_MODEL",
    "CATEGORY_FIELDS": "CATEGORY_MODEL",
}

# Settings of earlier versions, moved into LOOKALIKE in one step (a system check names the new place).
REMOVED_SETTINGS = {
    "RECOMMENDATIONS_PRODUCT_MODEL": "LOOKALIKE['PRODUCT_MODEL']",
    "RECOMMENDATIONS_IMAGE_MODEL": "LOOKALIKE['IMAGE_MODEL']",
    "CAMPAIGNS_STORE_MODEL": "LOOKALIKE['STORE_MODEL']",
    "CAMPAIGNS_CATEGORY_MODEL": "LOOKALIKE['CATEGORY_MODEL']",
    "RECOMMENDATIONS['CATALOG_FIELDS']": "LOOKALIKE['PRODUCT_FIELDS']",
    "RECOMMENDATIONS['IMAGE_FIELDS']": "LOOKALIKE['IMAGE_FIELDS']",
    "SCRAPER['PRODUCT_MODEL']": "LOOKALIKE['PRODUCT_MODEL']",
    "SCRAPER['IMAGE_MODEL']": "LOOKALIKE['IMAGE_MODEL']",
    "SCRAPER['STORE_MODEL']": "LOOKALIKE['STORE_MODEL']",
    "SCRAPER['PRODUCT_FIELDS']": "LOOKALIKE['PRODUCT_FIELDS']",
    "SCRAPER['IMAGE_FIELDS']": "LOOKALIKE['IMAGE_FIELDS']",
}


def user_settings() -> dict[str, Any]:
    return dict(getattr(settings, SETTING, None) or {})


def lookalike_setting(name: str) -> Any:
    """One key of ``LOOKALIKE`` with its default.

    The field maps default to the bundled shop's only while its model is the bundled one: a shop that
    names its own model declares every role its model has, and the others are absent.
    """
    user = user_settings()
    if name in FIELD_KEYS:
        model_key = FIELD_KEYS[name]
        own_model = user.get(model_key, DEFAULTS[model_key]) != DEFAULTS[model_key]
        base = {} if own_model else DEFAULTS[name]
        roles = dict.fromkeys(DEFAULTS[name]) if own_model else {}
        return {**roles, **base, **(user.get(name) or {})}
    return user.get(name, DEFAULTS[name])


def base_template() -> str:
    return str(lookalike_setting("BASE_TEMPLATE"))


def model_label(key: str) -> str:
    """``"app_label.ModelName"`` of PRODUCT_MODEL, IMAGE_MODEL, STORE_MODEL or CATEGORY_MODEL."""
    return str(lookalike_setting(key))
