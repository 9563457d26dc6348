"""An existing Django shop that installs ``recommendations`` and points it at its own catalog models.

Neither ``shop`` nor ``scraper`` nor ``campaigns`` is installed: what runs here is what a shop gets from
following docs/plugin.md.
"""

from config.settings_test import *  # noqa: F403
from config.settings_test import RECOMMENDATIONS

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
]
ROOT_URLCONF = "tests.own_shop.urls"

RECOMMENDATIONS_PRODUCT_MODEL = "catalogue.Item"
RECOMMENDATIONS_IMAGE_MODEL = "catalogue.ItemPhoto"
RECOMMENDATIONS = {
    **RECOMMENDATIONS,
    "CATALOG_FIELDS": {
        "title": "name",
        "price": "price_incl_tax",
        "in_stock": "is_available",
        "category": "department",
        "brand": None,
        "store": None,
        "url": None,
    },
    "IMAGE_FIELDS": {
        "product": "item",
        "image": "original",
        "position": "display_order",
        "sha256": None,
        "status": None,
        "failure_reason": None,
    },
}
