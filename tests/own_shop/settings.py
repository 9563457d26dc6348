"""An existing Django shop that installs the three plugin apps and points them at its own catalog models.

The bundled ``shop`` is not installed: what runs here is what a shop gets from following docs/plugin.md.
"""

from config.settings_test import *  # noqa: F403

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "tests.own_shop",
    "recommendations",
    "scraper",
    "campaigns",
]
ROOT_URLCONF = "tests.own_shop.urls"

LOOKALIKE = {
    "PRODUCT_MODEL": "catalogue.Item",
    "IMAGE_MODEL": "catalogue.ItemPhoto",
    "STORE_MODEL": "catalogue.Seller",
    "CATEGORY_MODEL": "catalogue.Department",
    # Roles not named here (brand, currency, description, ...) are absent: their filters are off.
    "PRODUCT_FIELDS": {
        "title": "name",
        "price": "price_incl_tax",
        "in_stock": "is_available",
        "category": "department",
        "store": "seller",
        "external_id": "sku",
    },
    "IMAGE_FIELDS": {"product": "item", "image": "original", "position": "display_order"},
    "STORE_FIELDS": {"name": "name", "base_url": "website"},
    "CATEGORY_FIELDS": {"name": "name"},
    # The plugin's pages inside this shop's own layout (tests/own_shop/templates/).
    "BASE_TEMPLATE": "own_shop/lookalike_base.html",
}
